"""Shared helpers for the glint client-compatibility scripts.

Stdlib only. Each ``test_*.py`` next to this file imports it (the script's own
directory is first on ``sys.path``), so every script stays runnable on its own:

    GLINT_ENDPOINT=http://127.0.0.1:9292 GLINT_SCRATCH=/tmp/x \
        .venv-compat/bin/python loadtest/compat/test_sdk.py

Output: one line per check, ``ok   <suite>: <what>`` or ``FAIL <suite>: <what>:
<why>``; the first failed check ends the script with exit code 1 (after a
best-effort cleanup of the images it created). Exit code 2 means the script
could not start (environment missing).
"""

import hashlib
import os
import sys
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_VENV = os.path.join(REPO, '.venv-compat')

MiB = 1024 * 1024


class CheckFailed(Exception):
    pass


def ensure_venv(modules):
    """Re-exec under $REPO/.venv-compat if ``modules`` are not importable here.

    Lets ``python3 loadtest/compat/test_x.py`` work from a bare interpreter once
    ``scripts/compat-venv.sh`` has run. Never loops: the re-exec'd process
    carries GLINT_COMPAT_REEXEC=1.
    """
    missing = []
    for mod in modules:
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if not missing:
        return
    venv_py = os.path.join(os.environ.get('GLINT_COMPAT_VENV', DEFAULT_VENV), 'bin', 'python')
    if os.environ.get('GLINT_COMPAT_REEXEC') != '1' and os.access(venv_py, os.X_OK):
        os.environ['GLINT_COMPAT_REEXEC'] = '1'
        os.execv(venv_py, [venv_py] + sys.argv)
    sys.stderr.write(
        'compat: python modules %s are missing in %s; create the venv with '
        'scripts/compat-venv.sh and run this script with its python\n'
        % (', '.join(missing), sys.executable))
    sys.exit(2)


def env_config():
    """Return (endpoint, scratch_dir) from GLINT_ENDPOINT / GLINT_SCRATCH."""
    endpoint = os.environ.get('GLINT_ENDPOINT', '').rstrip('/')
    if not endpoint:
        sys.stderr.write('compat: set GLINT_ENDPOINT (e.g. http://127.0.0.1:9292)\n')
        sys.exit(2)
    scratch = os.environ.get('GLINT_SCRATCH', '')
    if not scratch:
        sys.stderr.write('compat: set GLINT_SCRATCH to a writable scratch directory\n')
        sys.exit(2)
    os.makedirs(scratch, exist_ok=True)
    return endpoint, scratch


def unique_name(suite):
    return 'compat-%s-%s' % (suite, uuid.uuid4().hex[:12])


def make_random_file(path, size):
    """Write ``size`` random bytes to ``path``; return (md5_hex, sha512_hex)."""
    md5 = hashlib.md5()
    sha = hashlib.sha512()
    left = size
    with open(path, 'wb') as f:
        while left:
            chunk = os.urandom(min(left, MiB))
            md5.update(chunk)
            sha.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return md5.hexdigest(), sha.hexdigest()


def file_hashes(path):
    """Return (size, md5_hex, sha512_hex) of a file."""
    md5 = hashlib.md5()
    sha = hashlib.sha512()
    size = 0
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(MiB)
            if not chunk:
                break
            size += len(chunk)
            md5.update(chunk)
            sha.update(chunk)
    return size, md5.hexdigest(), sha.hexdigest()


def files_equal(a, b):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        while True:
            ca = fa.read(MiB)
            cb = fb.read(MiB)
            if ca != cb:
                return False
            if not ca:
                return True


class Checker:
    """Prints one line per check; raises CheckFailed on the first failure."""

    def __init__(self, suite):
        self.suite = suite
        self.passed = 0
        self.cleanups = []

    def ok(self, what):
        self.passed += 1
        print('ok   %s: %s' % (self.suite, what), flush=True)

    def fail(self, what, why):
        print('FAIL %s: %s: %s' % (self.suite, what, why), flush=True)
        raise CheckFailed('%s: %s' % (what, why))

    def check(self, cond, what, why=''):
        if cond:
            self.ok(what)
        else:
            self.fail(what, why or 'condition is false')

    def equal(self, got, want, what):
        if got == want:
            self.ok(what)
        else:
            self.fail(what, 'got %r, want %r' % (got, want))

    def step(self, what, fn, *args, **kwargs):
        """Run ``fn``; an exception fails the check ``what``. Returns fn's result."""
        try:
            res = fn(*args, **kwargs)
        except CheckFailed:
            raise
        except Exception as e:  # noqa: BLE001 - any client error is a failed check
            self.fail(what, '%s: %s' % (type(e).__name__, e))
        self.ok(what)
        return res

    def on_exit(self, fn, *args):
        """Register a best-effort cleanup run when the script ends."""
        self.cleanups.append((fn, args))

    def run(self, body):
        """Run ``body(self)``; exit 0 if it completes, 1 on the first failure."""
        rc = 0
        try:
            body(self)
            print('%s: all %d checks passed' % (self.suite, self.passed), flush=True)
        except CheckFailed:
            rc = 1
        except Exception as e:  # noqa: BLE001 - bug in the script or client
            print('FAIL %s: unexpected %s: %s' % (self.suite, type(e).__name__, e), flush=True)
            rc = 1
        for fn, args in reversed(self.cleanups):
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - cleanup is best effort
                pass
        sys.exit(rc)
