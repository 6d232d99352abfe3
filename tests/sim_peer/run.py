#!/usr/bin/env python3
"""Cross-check `ctigate sim` against cstapeer.py, a CSTA client we did not write.

    python3 tests/sim_peer/run.py --bin target/release/ctigate [--python PY]
                                  [--peer ../shared/spec/cstapeer.py] [-v] [CASE ...]

For every case (tests/sim_peer/cases/*.json, or the CASE names / paths given) this starts a
fresh `ctigate sim --listen 127.0.0.1:0 --control 127.0.0.1:0 [sim_args] [--scenario FILE]`,
runs `PY cstapeer.py client HOST:PORT SCRIPT [client_args]` against the printed CSTA port
(at most --timeout seconds, 30 by default and at most), stops the simulator and prints
`ok - name` or `FAIL - name: message` (plus the end of cstapeer's output), then
`N passed, M failed`. Exit status 1 when a case failed, 2 on a usage error, 130 on Ctrl-C.

A case file is one JSON object:
  name, about          what the case checks
  sim_args             extra `ctigate sim` arguments (never --listen / --control / --scenario)
  scenario             control-port commands the simulator runs at start (--scenario file)
  client               the cstapeer client script (a list of steps)
  client_args          extra cstapeer arguments, e.g. ["--context", "1.2.3"]
  expect               "pass" (default) or "fail": cstapeer must then exit 1 ...
  expect_message       ... with a final message matching this regular expression
  event_sequences      {"00000001": ["serviceInitiated", ...]}: the exact list of events that
                       arrived on that monitor cross-reference, in order, over the whole run
  log_min              {"undecodable": 1, "acse.abrt": 1, "invoke.systemStatus": 2}: at least
                       this many inbound PDUs of that kind in cstapeer's PDU log
  max_events_per_s     no 1-second window of cstapeer's receive times holds more than this many event
                       reports (+1 for jitter): the switch paces its events
  timeout              seconds for cstapeer (default and maximum 30)
Every scenario command must answer ok; a failing one fails the case.
"""
import argparse
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from peer_common import CaseError, children, find_cases, kill, run_main, strip_ansi  # noqa: E402
REPO = os.path.dirname(os.path.dirname(HERE))
MAX_TIMEOUT = 30.0
START_TIMEOUT = 10.0
LISTEN_RE = re.compile(r'^ctigate sim listening: csta (\S+) control (\S+)')
CASE_KEYS = {'name', 'about', 'sim_args', 'scenario', 'client', 'client_args', 'expect',
             'expect_message', 'event_sequences', 'log_min', 'max_events_per_s', 'timeout'}
RESERVED_SIM_ARGS = ('--listen', '--control', '--scenario', '--exit-after-scenario')
ROSE_OPS = {21: 'cSTAEventReport', 211: 'systemStatus'}


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    children.append(p)
    return p


def load_case(path):
    with open(path) as f:
        case = json.load(f)
    if not isinstance(case, dict):
        raise CaseError('%s: a case is a JSON object' % path)
    unknown = set(case) - CASE_KEYS
    if unknown:
        raise CaseError('%s: unknown keys %s (allowed: %s)' % (path, sorted(unknown), sorted(CASE_KEYS)))
    for k in ('name', 'client'):
        if k not in case:
            raise CaseError('%s: missing %r' % (path, k))
    if not isinstance(case['client'], list):
        raise CaseError('%s: "client" must be a list of cstapeer steps' % path)
    for a in case.get('sim_args', []):
        if a.split('=')[0] in RESERVED_SIM_ARGS:
            raise CaseError('%s: sim_args must not contain %s (the runner sets it)' % (path, a))
    if case.get('expect', 'pass') not in ('pass', 'fail'):
        raise CaseError('%s: "expect" is "pass" or "fail"' % path)
    if case.get('expect') == 'fail':
        if not case.get('expect_message'):
            raise CaseError('%s: "expect": "fail" needs "expect_message" (a regular expression)' % path)
        re.compile(case['expect_message'])
    case['_path'] = path
    return case


class Sim:
    """One `ctigate sim` process: its CSTA address and what it printed."""

    def __init__(self, binary, args, tmp):
        self.err_path = os.path.join(tmp, 'sim.stderr')
        self.err = open(self.err_path, 'w')
        self.proc = spawn([binary, 'sim', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0'] + args,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err, text=True, bufsize=1)
        self.lines, self.lock = [], threading.Lock()
        first = self._first_line()
        m = LISTEN_RE.match(first)
        if not m:
            raise CaseError('simulator did not start: first line %r%s' % (first, self.stderr_tail()))
        self.csta, self.control = m.group(1), m.group(2)
        host = self.csta.rsplit(':', 1)[0]
        if host not in ('127.0.0.1', '[::1]'):
            raise CaseError('simulator listens on %s, not on loopback' % self.csta)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _first_line(self):
        end = time.monotonic() + START_TIMEOUT
        buf = ''
        fd = self.proc.stdout
        while time.monotonic() < end:
            if self.proc.poll() is not None and not select.select([fd], [], [], 0)[0]:
                return buf or '<exited with status %s>' % self.proc.returncode
            if select.select([fd], [], [], 0.1)[0]:
                line = fd.readline()
                if not line:
                    return buf or '<stdout closed>'
                return line.rstrip('\n')
        return '<nothing within %.0f s>' % START_TIMEOUT

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip('\n'))

    def scenario_results(self):
        out = []
        with self.lock:
            lines = list(self.lines)
        for line in lines:
            if line.startswith('{'):
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if isinstance(v, dict) and 'scenario_line' in v:
                    out.append(v)
        return out

    def stderr_tail(self, n=8):
        try:
            self.err.flush()
            with open(self.err_path, errors='replace') as f:
                lines = f.read().splitlines()[-n:]
        except OSError:
            return ''
        return ''.join('\n    sim: ' + strip_ansi(x) for x in lines)

    def stop(self):
        exited = self.proc.poll()
        kill(self.proc)
        if self.proc in children:
            children.remove(self.proc)
        self.err.close()
        return exited


def parse_log(text):
    recs = []
    for line in text.splitlines():
        if line.startswith('{'):
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    return recs


def inbound_kinds(recs):
    """Kinds of the PDUs cstapeer received: 'undecodable', 'acse.abrt', 'invoke.systemStatus', ..."""
    kinds = []
    for r in recs:
        if r.get('dir') != 'in':
            continue
        if 'error' in r:
            kinds.append('undecodable')
            continue
        pdu = r.get('pdu') or {}
        for k, body in pdu.items():
            if k == 'acse':
                kinds.append('acse.' + body.get('$choice', '?'))
            elif k == 'invoke':
                kinds.append('invoke')
                kinds.append('invoke.' + ROSE_OPS.get(body.get('opcode'), str(body.get('opcode'))))
            else:
                kinds.append(k)
    return kinds


def events_by_xref(recs):
    seqs = {}
    for r in recs:
        if r.get('dir') != 'in' or 'pdu' not in r:
            continue
        inv = r['pdu'].get('invoke')
        if not inv or inv.get('opcode') != 21:
            continue
        arg = inv.get('argument') or {}
        xref = (arg.get('crossRefIdentifier') or {}).get('$hex')
        ev = ((arg.get('eventSpecificInfo') or {}).get('$value') or {}).get('$choice')
        seqs.setdefault(xref, []).append(ev)
    return seqs


def run_case(case, args):
    """Returns (ok, message, peer output)."""
    timeout = min(float(case.get('timeout', MAX_TIMEOUT)), MAX_TIMEOUT)
    with tempfile.TemporaryDirectory(prefix='sim_peer.') as tmp:
        sim_args = list(case.get('sim_args', []))
        scenario = case.get('scenario') or []
        if scenario:
            sp = os.path.join(tmp, 'scenario.ndjson')
            with open(sp, 'w') as f:
                f.writelines(json.dumps(c) + '\n' for c in scenario)
            sim_args += ['--scenario', sp]
        script = os.path.join(tmp, 'client.json')
        with open(script, 'w') as f:
            json.dump(case['client'], f)
        sim = None
        peer_out = ''
        try:
            sim = Sim(args.bin, sim_args, tmp)
            cmd = [args.python, args.peer, 'client', sim.csta, script] + list(case.get('client_args', []))
            peer = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                peer_out, _ = peer.communicate(timeout=timeout)
                rc = peer.returncode
            except subprocess.TimeoutExpired:
                kill(peer)
                peer_out = peer.communicate()[0] or ''
                rc = None
            finally:
                kill(peer)
                if peer in children:
                    children.remove(peer)
            recs = parse_log(peer_out)
            final = [r for r in recs if 'result' in r and 'message' in r]
            msg = final[-1]['message'] if final else (peer_out.strip().splitlines() or ['no output'])[-1]
            # the simulator's side: every scenario step answered ok, the process still running
            n_steps = len(scenario)
            end = time.monotonic() + (2.0 if rc is not None else 0.2)
            while len(sim.scenario_results()) < n_steps and time.monotonic() < end and sim.proc.poll() is None:
                time.sleep(0.05)
            res = sim.scenario_results()
            bad = [r for r in res if (r.get('result') or {}).get('ok') is not True]
            sim_problem = None
            if bad:
                sim_problem = 'scenario step %s failed: %s' % (bad[0]['scenario_line'], json.dumps(bad[0]['result']))
            elif len(res) < n_steps:
                sim_problem = 'scenario incomplete: %d of %d steps answered' % (len(res), n_steps)
            elif sim.proc.poll() is not None:
                sim_problem = 'simulator exited (status %s) during the case' % sim.proc.returncode
            serious = bad or sim.proc.poll() is not None  # worth naming next to a client failure
            also = ' [also: %s]%s' % (sim_problem, sim.stderr_tail()) if serious else ''
            if rc is None:
                return False, 'cstapeer did not finish within %.0f s%s' % (timeout, also), peer_out
            if case.get('expect', 'pass') == 'fail':
                if rc == 0:
                    return False, 'expected cstapeer to fail, it passed: %s%s' % (msg, also), peer_out
                if rc != 1 or not re.search(case['expect_message'], msg):
                    return False, 'expected a failure matching %r, got (exit %s): %s%s' % (
                        case['expect_message'], rc, msg, also), peer_out
            elif rc != 0:
                return False, msg + also, peer_out
            if sim_problem is not None:
                return False, sim_problem + sim.stderr_tail(), peer_out
            # checks on cstapeer's PDU log
            seqs = events_by_xref(recs)
            for xref, want in (case.get('event_sequences') or {}).items():
                got = seqs.get(xref, [])
                if got != want:
                    return False, 'events on monitor %s: got %s, expected %s' % (xref, got, want), peer_out
            kinds = inbound_kinds(recs)
            for kind, n in (case.get('log_min') or {}).items():
                if kinds.count(kind) < n:
                    return False, 'expected at least %d inbound %s PDU(s), got %d' % (n, kind, kinds.count(kind)), peer_out
            limit = case.get('max_events_per_s')
            if limit is not None:
                times = sorted(r.get('t', 0) for r in recs if r.get('dir') == 'in'
                               and ((r.get('pdu') or {}).get('invoke') or {}).get('opcode') == 21)
                worst = max((sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times)), default=0)
                if worst > limit + 1:
                    return False, '%d event reports arrived within one second (limit %s/s)' % (worst, limit), peer_out
            return True, msg, peer_out
        except CaseError as e:
            return False, str(e), peer_out
        finally:
            if sim is not None:
                sim.stop()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--bin', required=True, help='the ctigate binary (target/release/ctigate)')
    ap.add_argument('--python', default=sys.executable, help='interpreter for cstapeer (Python 3.11 + asn1tools)')
    ap.add_argument('--peer', default=os.path.join(REPO, '..', 'shared', 'spec', 'cstapeer.py'),
                    help='cstapeer.py (default: ../shared/spec/cstapeer.py from the repository root)')
    ap.add_argument('--timeout', type=float, default=MAX_TIMEOUT, help='seconds per case (at most 30)')
    ap.add_argument('-v', '--verbose', action='store_true', help="print cstapeer's whole output on failure")
    ap.add_argument('--trace', action='store_true', help='print every PDU of every case (decoded, one line each)')
    ap.add_argument('cases', nargs='*', help='case names (file names in cases/, .json optional) or paths')
    args = ap.parse_args(argv)
    args.bin = os.path.abspath(args.bin)
    args.peer = os.path.abspath(args.peer)
    for what, p in (('--bin', args.bin), ('--peer', args.peer)):
        if not os.path.isfile(p):
            print('run.py: %s %s: no such file' % (what, p), file=sys.stderr)
            return 2
    try:
        cases = [load_case(p) for p in find_cases(os.path.join(HERE, 'cases'), args.cases)]
    except (CaseError, ValueError, OSError) as e:
        print('run.py: %s' % e, file=sys.stderr)
        return 2
    if not cases:
        print('run.py: no cases', file=sys.stderr)
        return 2
    passed = failed = 0
    for case in cases:
        if args.timeout < MAX_TIMEOUT:
            case['timeout'] = min(float(case.get('timeout', MAX_TIMEOUT)), args.timeout)
        t0 = time.monotonic()
        ok, msg, out = run_case(case, args)
        took = time.monotonic() - t0
        if args.trace:
            for r in parse_log(out):
                if 'dir' in r:
                    print('    %7.3f %-3s %s' % (r.get('t', 0), r['dir'], json.dumps(
                        r.get('pdu', r.get('error', r.get('raw'))), separators=(',', ':'))), flush=True)
        if ok:
            passed += 1
            print('ok - %s' % case['name'] + (' (%.1f s)' % took if args.verbose else ''), flush=True)
        else:
            failed += 1
            print('FAIL - %s: %s' % (case['name'], msg), flush=True)
            lines = out.rstrip('\n').splitlines()
            for line in lines if args.verbose else lines[-15:]:
                print('    | ' + (line if len(line) <= 2000 or args.verbose else line[:2000] + ' ...'), flush=True)
    print('%d passed, %d failed' % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    run_main(main)
