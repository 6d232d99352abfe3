"""What the two peer cross-check runners share (tests/sim_peer/run.py, tests/gateway_peer/run.py):
case lookup, the child processes they must kill whatever happens, and the main wrapper that
turns Ctrl-C / SIGTERM / SIGHUP into a clean stop."""
import glob
import os
import re
import signal
import subprocess
import sys

children = []  # processes to kill whatever happens


class CaseError(Exception):
    pass


def kill(p):
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGKILL)  # own session: the process and anything it started
    except (ProcessLookupError, PermissionError):
        p.kill()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def kill_all():
    while children:
        kill(children.pop())


def strip_ansi(s):
    return re.sub(r'\x1b\[[0-9;]*m', '', s)


def find_cases(cases_dir, names):
    """Case files: all of `cases_dir`, or the named ones (file names, .json optional, or paths)."""
    all_paths = sorted(glob.glob(os.path.join(cases_dir, '*.json')))
    if not names:
        return all_paths
    out = []
    for n in names:
        if os.path.isfile(n):
            out.append(n)
            continue
        hits = [p for p in all_paths if os.path.basename(p) in (n, n + '.json')]
        if not hits:
            raise CaseError('no case %r (cases are in %s)' % (n, cases_dir))
        out.extend(hits)
    return out


def _on_term(signum, frame):
    raise KeyboardInterrupt


def run_main(main):
    """sys.exit(main(argv)), killing every child on the way out."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_term)  # also when started with SIGINT ignored (background job)
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        kill_all()
        print('interrupted', file=sys.stderr)
        code = 130
    finally:
        kill_all()
    sys.exit(code)
