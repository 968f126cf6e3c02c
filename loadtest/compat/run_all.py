#!/usr/bin/env python3
"""Run every client-compatibility script in this directory against one glint.

    GLINT_ENDPOINT=http://127.0.0.1:9292 GLINT_SCRATCH=/tmp/compat \
        .venv-compat/bin/python loadtest/compat/run_all.py [sdk glanceclient osc]

Each script runs as a child process with this interpreter and its own scratch
subdirectory; its output is passed through. Ends with the line
``compat: N passed, N failed`` (one unit per script) and exits non-zero if
any script failed.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ALL = ['glanceclient', 'sdk', 'osc']


def main():
    wanted = sys.argv[1:] or ALL
    unknown = [w for w in wanted if w not in ALL]
    if unknown:
        sys.stderr.write('compat: unknown suite(s) %s; choose from %s\n' % (unknown, ALL))
        return 2
    if not os.environ.get('GLINT_ENDPOINT') or not os.environ.get('GLINT_SCRATCH'):
        sys.stderr.write('compat: set GLINT_ENDPOINT and GLINT_SCRATCH\n')
        return 2
    scratch = os.environ['GLINT_SCRATCH']
    passed, failed = [], []
    for suite in wanted:
        env = dict(os.environ, GLINT_SCRATCH=os.path.join(scratch, suite))
        start = time.monotonic()
        rc = subprocess.call([sys.executable, os.path.join(HERE, 'test_%s.py' % suite)],
                             env=env)
        took = time.monotonic() - start
        print('compat: %s %s in %.1fs (rc=%d)' % (suite, 'passed' if rc == 0 else 'FAILED',
                                                  took, rc), flush=True)
        (passed if rc == 0 else failed).append(suite)
    if failed:
        print('compat: failed: %s' % ', '.join(failed))
    print('compat: %d passed, %d failed' % (len(passed), len(failed)), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
