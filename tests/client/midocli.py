"""Run the unmodified midonet-cli 5.2.0 on Python 3.

The script is Python 2 source. We translate a private copy with fissix
(lib2to3's maintained fork), apply the same run-time shim as the library
(midoshim) plus `inspect.getargspec` (removed in 3.11), and execute it as
__main__. Nothing changes on the wire. Usage: python midocli.py ARGS...
"""
import collections
import hashlib
import inspect
import os
import runpy
import shutil
import sys
import tempfile

import midoshim  # noqa: F401  (side effects)


def _getargspec(func):
    s = inspect.getfullargspec(func)
    ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")
    return ArgSpec(s.args, s.varargs, s.varkw, s.defaults)


inspect.getargspec = _getargspec


def translated_cli():
    src = shutil.which("midonet-cli") or os.path.join(os.path.dirname(sys.executable), "midonet-cli")
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), "midonet-cli-py3-" + digest + ".py")
    if not os.path.exists(cache):
        from fissix.main import main as fissix_main

        tmp = cache + ".tmp.py"
        shutil.copyfile(src, tmp)
        with open(os.devnull, "w") as devnull:
            old = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = devnull
            try:
                rc = fissix_main("fissix.fixes", ["-w", "-n", "--no-diffs", tmp])
            finally:
                sys.stdout, sys.stderr = old
        if rc != 0:
            raise SystemExit("could not translate midonet-cli to Python 3")
        os.replace(tmp, cache)
    return cache


if __name__ == "__main__":
    path = translated_cli()
    sys.argv = ["midonet-cli"] + sys.argv[1:]
    runpy.run_path(path, run_name="__main__")
