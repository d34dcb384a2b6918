"""TLS and login for the scale scripts, from the CLI's environment:
MIDO_CA (the CA of an https:// API) and MIDO_USER / MIDO_PASSWORD (a
`--auth static` server's user). Standard library only."""
import base64
import json
import os
import ssl
import urllib.request


def context():
    """An SSL context trusting MIDO_CA, or None for the defaults."""
    ca = os.environ.get("MIDO_CA")
    return ssl.create_default_context(cafile=ca) if ca else None


def headers(base):
    """The X-Auth-Token header of a login as MIDO_USER (none without one)."""
    user = os.environ.get("MIDO_USER")
    if not user:
        return {}
    cred = base64.b64encode(("%s:%s" % (user, os.environ.get("MIDO_PASSWORD", ""))).encode()).decode()
    req = urllib.request.Request(base.rstrip("/") + "/login", data=b"", method="POST",
                                 headers={"Authorization": "Basic " + cred})
    with urllib.request.urlopen(req, timeout=10, context=context()) as r:
        return {"X-Auth-Token": json.loads(r.read())["key"]}
