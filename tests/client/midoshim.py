"""Run the unmodified midonetclient 5.2.0 (Python 2 code) on Python 3.

Nothing here changes what goes on the wire: it only supplies the Python 2
behaviour the library expects (implicit relative imports, urllib.urlencode,
str-based base64, eager map). Import this module before midonetclient.
"""
import base64 as _b64
import sys
import types
import urllib
import urllib.parse

import midonetclient
from midonetclient import vendor_media_type as _vmt

# 1. `from vendor_media_type import ...` (a py2 implicit relative import).
sys.modules.setdefault("vendor_media_type", _vmt)

# 2. api_lib calls urllib.urlencode for ?tenant_id= queries.
urllib.urlencode = urllib.parse.urlencode

from midonetclient import auth_lib, resource_base  # noqa: E402

# 3. auth_lib base64-encodes a str.
auth_lib.base64 = types.SimpleNamespace(
    b64encode=lambda s: _b64.b64encode(s.encode() if isinstance(s, str) else s).decode()
)

# 4. get_children returns a lazy map; callers use len() and indexing.
_orig_get_children = resource_base.ResourceBase.get_children


def _get_children(self, *a, **kw):
    return list(_orig_get_children(self, *a, **kw))


resource_base.ResourceBase.get_children = _get_children


def reset_token():
    """The token is a module global shared by every MidonetApi."""
    auth_lib._token = None
