#!/usr/bin/env python3
"""Check `ctigate run` against a CSTA switch we did not write (cstapeer.py, switch role).

    python3 tests/gateway_peer/run.py --bin target/release/ctigate [--python PY]
                                      [--peer ../shared/spec/cstapeer.py] [-v] [CASE ...]

For every case (tests/gateway_peer/cases/*.json, or the CASE names / paths given) this starts
`PY cstapeer.py switch --listen 127.0.0.1:0 SWITCH.json [switch_args]`, reads the switch's
port from its first line, starts `ctigate run --config FILE` with the minimal configuration
(api.listen on a loopback port, one [[link]] "pbx1" at the switch), connects a small NDJSON
client (the first line must be `hello`) and runs the client steps while cstapeer runs its
script. A case passes when every client step held, cstapeer exited 0 with "result": "pass",
and ctigate is still running at the end. At most --timeout seconds a case (30, the maximum);
every process is killed at the end, on failure, on Ctrl-C and on SIGTERM.
Prints `ok - NAME` or `FAIL - NAME: why` (+ the last lines of cstapeer's, ctigate's and the
client's logs), then `N passed, M failed`. Exit status 1 when a case failed, 2 on a usage
error, 130 when interrupted.

A case file is one JSON object:
  name, about     what the case checks
  switch          the cstapeer switch script (a list of steps, see cstapeer.py's docstring)
  switch_args     extra cstapeer arguments, e.g. ["--reject"]
  link            extra keys for the [[link]] table (default none: the minimal config)
  switch_invokes  {"snapshotDevice": 1, "answerCall": 0}: exactly this many invokes of each
                  named operation reached the switch from ctigate over the whole case (read
                  from cstapeer's PDU log; names as in the ECMA-285 modules next to cstapeer)
  client          the NDJSON client's steps (below)
  timeout         seconds for the case (default and maximum 30)

Client steps (one key names the kind; "$name" anywhere in a string value that is exactly
"$name" is replaced by a value saved earlier):
  {"send": {request without id}, "expect": {"ok": true, "match": {subset of result}},
   "save": {"name": "dotted.path in result (or error)"}, "timeout": 10}
      ok false: "match" is a subset of `error`, e.g. {"kind": "switch", "code": "..."}
  {"expect_event": {"event": "call.offering", "device": "201", "match": {subset of the
   whole event line}, "save": {"id": "call.id"}, "timeout": 10}}
      takes the first event not taken yet that matches (events of other kinds stay queued)
  {"expect_no_event": {"event", "device", "match", "seconds": 1}}
      waits `seconds`, then fails if an event not taken yet matches (use 0 after a barrier:
      a marker event the switch sends once it got a request, see README.md)
  {"wait_status": {"match": {subset of the status result}, "seconds": 10}}
      sends `status` every 0.2 s until its result matches
  {"hello": {"match": {subset of hello}}}
      opens a new client connection (the old one is closed) and checks its hello line
  {"sleep": 0.5}
Subset matching: a dict must have the pattern's keys with matching values; a list must have
the same length and matching elements; anything else must be equal.
"""
import argparse
import glob
import json
import os
import re
import socket
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
CASE_KEYS = {'name', 'about', 'switch', 'switch_args', 'link', 'switch_invokes', 'client', 'timeout'}
STEP_KINDS = ('send', 'expect_event', 'expect_no_event', 'wait_status', 'hello', 'sleep')
GW_LISTEN_RE = re.compile(r'ctigate run: NDJSON port (\S+)')


def spawn(cmd, log_path):
    f = open(log_path, 'w')
    try:
        p = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT)
    finally:
        f.close()
    children.append(p)
    return p


def read_text(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def wait_line(proc, path, pattern, what, end):
    """The first match of `pattern` in the process's log, polling until `end`."""
    while time.monotonic() < end:
        m = pattern.search(read_text(path))
        if m:
            return m
        if proc.poll() is not None:
            m = pattern.search(read_text(path))
            if m:
                return m
            raise CaseError('%s exited (status %s) before it listened' % (what, proc.returncode))
        time.sleep(0.05)
    raise CaseError('%s printed no listening line within %.0f s' % (what, START_TIMEOUT))


def tail(path, n, prefix):
    lines = strip_ansi(read_text(path)).rstrip('\n').splitlines()[-n:]
    return ''.join('\n    %s| %s' % (prefix, x if len(x) <= 1500 else x[:1500] + ' ...') for x in lines)


# ---- matching ---------------------------------------------------------------------------
def matches(pat, v):
    if isinstance(pat, dict):
        return isinstance(v, dict) and all(k in v and matches(p, v[k]) for k, p in pat.items())
    if isinstance(pat, list):
        return isinstance(v, list) and len(v) == len(pat) and all(map(matches, pat, v))
    return pat == v


def subst(v, env):
    if isinstance(v, str) and v.startswith('$') and v[1:] in env:
        return env[v[1:]]
    if isinstance(v, dict):
        return {k: subst(x, env) for k, x in v.items()}
    if isinstance(v, list):
        return [subst(x, env) for x in v]
    return v


def get_path(v, path):
    for k in path.split('.') if path else []:
        v = v[int(k)] if isinstance(v, list) else v[k]
    return v


def short(v, n=600):
    s = json.dumps(v, separators=(',', ':'))
    return s if len(s) <= n else s[:n] + ' ...'


# ---- the NDJSON client ------------------------------------------------------------------
class Client:
    """One NDJSON connection: a reader thread files responses by id and queues events."""

    def __init__(self, addr, log, end):
        host, port = addr.rsplit(':', 1)
        self.log = log
        self.sock = socket.create_connection((host, int(port)), timeout=max(0.5, end - time.monotonic()))
        self.sock.settimeout(None)
        self.cond = threading.Condition()
        self.hello, self.responses, self.events, self.closed = None, {}, [], False
        self.taken = set()  # indexes into events already taken by expect_event
        self.next_id = 1
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if self._wait(lambda: self.hello, end) is None:
            raise CaseError('no hello line from ctigate' + (' (connection closed)' if self.closed else ''))
        if self.hello.get('type') != 'hello':
            raise CaseError('the first line is not a hello: %s' % short(self.hello))

    def _read(self):
        buf = b''
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    self._line(line.decode('utf-8', 'replace'))
        except OSError:
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _line(self, text):
        self.log('in  ' + text)
        try:
            v = json.loads(text)
        except ValueError:
            v = {'type': 'unparsable', 'text': text}
        with self.cond:
            if self.hello is None:
                self.hello = v
            elif v.get('type') == 'response':
                self.responses[json.dumps(v.get('id'))] = v
            else:
                self.events.append(v)
            self.cond.notify_all()

    def _wait(self, fn, end):
        with self.cond:
            while True:
                r = fn()
                if r is not None or self.closed:
                    return r
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def request(self, req, end):
        with self.cond:
            rid = self.next_id
            self.next_id += 1
        line = json.dumps(dict({'id': rid}, **req), separators=(',', ':'))
        self.log('out ' + line)
        self.sock.sendall(line.encode() + b'\n')
        return self._wait(lambda: self.responses.pop(json.dumps(rid), None), end)

    def _find(self, pred):
        for i, e in enumerate(self.events):
            if i not in self.taken and pred(e):
                return i
        return None

    def take_event(self, pred, end):
        i = self._wait(lambda: self._find(pred), end)
        if i is None:
            return None
        with self.cond:
            self.taken.add(i)
            return self.events[i]

    def pending(self, pred):
        with self.cond:
            return [e for i, e in enumerate(self.events) if i not in self.taken and pred(e)]

    def summary(self):
        with self.cond:
            return ['%s@%s' % (e.get('event'), e.get('device', '-')) for i, e in enumerate(self.events)
                    if i not in self.taken]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(2)


def event_pred(spec):
    def pred(e):
        return (e.get('type') == 'event' and spec.get('event') in (None, e.get('event'))
                and spec.get('device') in (None, e.get('device'))
                and matches(spec.get('match', {}), e))
    return pred


def describe(spec):
    return '%s at %s%s' % (spec.get('event', 'any event'), spec.get('device', 'any device'),
                           ' matching %s' % short(spec['match']) if 'match' in spec else '')


def run_client(case, addr, log, end):
    """Run the client steps; raises CaseError naming the failed step."""
    env = {}
    cl = Client(addr, log, end)
    try:
        for n, raw in enumerate(case['client'], 1):
            st = subst(raw, env)
            kind = next(k for k in STEP_KINDS if k in st)
            log('step %d: %s' % (n, short(st, 300)))

            def fail(msg):
                raise CaseError('client step %d (%s): %s' % (n, kind, msg))

            def deadline(spec, default=10.0):
                return min(end, time.monotonic() + float(spec.get('timeout', default)))

            def save(saves, v):
                for name, path in (saves or {}).items():
                    try:
                        env[name] = get_path(v, path)
                    except (KeyError, IndexError, TypeError, ValueError):
                        fail('cannot save %s from %r in %s' % (name, path, short(v)))

            if kind == 'send':
                want = st.get('expect', {'ok': True})
                r = cl.request(st['send'], deadline(st))
                if r is None:
                    fail('no response to %s%s' % (short(st['send']), ' (connection closed)' if cl.closed else ''))
                ok = r.get('ok')
                body = r.get('result') if ok else r.get('error')
                if ok is not want.get('ok', True) or not matches(want.get('match', {}), body):
                    fail('sent %s, got %s, expected ok=%s %s' % (
                        short(st['send']), short(r), want.get('ok', True), short(want.get('match', {}))))
                save(st.get('save'), body)
            elif kind == 'expect_event':
                spec = st['expect_event']
                e = cl.take_event(event_pred(spec), deadline(spec))
                if e is None:
                    near = cl.pending(event_pred({'event': spec.get('event'), 'device': spec.get('device')}))
                    fail('no %s%s; not taken: %s%s' % (
                        describe(spec), ' (connection closed)' if cl.closed else '', cl.summary(),
                        ''.join('\n      same kind: %s' % short(x, 1500) for x in near[:3])))
                save(spec.get('save'), e)
            elif kind == 'expect_no_event':
                spec = st['expect_no_event']
                time.sleep(max(0.0, min(float(spec.get('seconds', 1)), end - time.monotonic())))
                extra = cl.pending(event_pred(spec))
                if extra:
                    fail('unexpected %s: %s' % (describe(spec), short(extra[0], 1500)))
            elif kind == 'wait_status':
                spec = st['wait_status']
                stop = min(end, time.monotonic() + float(spec.get('seconds', 10)))
                last = None
                while True:
                    last = cl.request({'op': 'status'}, stop)
                    if last and last.get('ok') and matches(spec.get('match', {}), last.get('result')):
                        break
                    if time.monotonic() >= stop or cl.closed:
                        fail('status never matched %s; last: %s' % (short(spec.get('match', {})), short(last)))
                    time.sleep(0.2)
            elif kind == 'hello':
                spec = st['hello']
                cl.close()
                cl = Client(addr, log, end)
                if not matches(spec.get('match', {}), cl.hello):
                    fail('hello %s, expected %s' % (short(cl.hello), short(spec.get('match', {}))))
            elif kind == 'sleep':
                time.sleep(max(0.0, min(float(st['sleep']), end - time.monotonic())))
            if time.monotonic() > end:
                fail('the case ran out of time')
    finally:
        cl.close()


def operation_names(spec_dir):
    """{local opcode: operation name} from the `x OPERATION ::= {... CODE local: n}` objects of
    the ECMA-285 modules beside cstapeer (as oracle.operation_names, without asn1tools)."""
    out = {}
    for f in glob.glob(os.path.join(spec_dir, 'asn1', '*.asn1')):
        with open(f, encoding='utf-8') as fh:
            t = re.sub(r'--[^\n]*', '', fh.read())
        for m in re.finditer(r'\b([a-z][A-Za-z0-9-]*)\s+OPERATION\s*::=\s*\{(?:[^{}]|\{[^{}]*\})*?'
                             r'\bCODE\s+local\s*:\s*(\d+)', t):
            out[int(m.group(2))] = m.group(1)
    return out


def switch_invokes(log_text, names):
    """Operation names of the invokes the switch received, in order."""
    out = []
    for line in log_text.splitlines():
        if not line.startswith('{'):
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        inv = (r.get('pdu') or {}).get('invoke') if r.get('dir') == 'in' else None
        if inv:
            out.append(names.get(inv.get('opcode'), str(inv.get('opcode'))))
    return out


# ---- cases ------------------------------------------------------------------------------
def load_case(path):
    with open(path) as f:
        case = json.load(f)
    if not isinstance(case, dict):
        raise CaseError('%s: a case is a JSON object' % path)
    unknown = set(case) - CASE_KEYS
    if unknown:
        raise CaseError('%s: unknown keys %s (allowed: %s)' % (path, sorted(unknown), sorted(CASE_KEYS)))
    for k in ('name', 'switch', 'client'):
        if not isinstance(case.get(k), str if k == 'name' else list):
            raise CaseError('%s: %r missing or of the wrong type' % (path, k))
    for n, st in enumerate(case['client'], 1):
        if not isinstance(st, dict) or sum(k in st for k in STEP_KINDS) != 1:
            raise CaseError('%s: client step %d needs exactly one of %s' % (path, n, ', '.join(STEP_KINDS)))
    for a in case.get('switch_args', []):
        if a.split('=')[0] == '--listen':
            raise CaseError('%s: switch_args must not contain --listen (the runner sets it)' % path)
    if not isinstance(case.get('link', {}), dict) or {'name', 'address'} & set(case.get('link', {})):
        raise CaseError('%s: "link" is a table of extra [[link]] keys (not name / address)' % path)
    case['_path'] = path
    return case


def toml_value(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return '[' + ', '.join(toml_value(x) for x in v) + ']'
    return json.dumps(str(v))


def run_case(case, args, tmp):
    """Returns (ok, message)."""
    timeout = min(float(case.get('timeout', MAX_TIMEOUT)), args.timeout, MAX_TIMEOUT)
    end = time.monotonic() + timeout
    paths = {k: os.path.join(tmp, k) for k in ('switch.json', 'switch.log', 'ctigate.toml', 'ctigate.log', 'client.log')}
    with open(paths['switch.json'], 'w') as f:
        json.dump(case['switch'], f)
    client_log = open(paths['client.log'], 'w')
    t0 = time.monotonic()

    def log(line):
        client_log.write('%7.3f %s\n' % (time.monotonic() - t0, line))
        client_log.flush()

    peer = gw = None
    try:
        peer = spawn([args.python, args.peer, 'switch', '--listen', '127.0.0.1:0', paths['switch.json']]
                     + list(case.get('switch_args', [])), paths['switch.log'])
        m = wait_line(peer, paths['switch.log'], re.compile(r'\{"listening":\s*"([^"]+)"\}'), 'cstapeer',
                      min(end, time.monotonic() + START_TIMEOUT))
        switch_addr = m.group(1)
        if not switch_addr.startswith('127.0.0.1:'):
            raise CaseError('cstapeer listens on %s, not on loopback' % switch_addr)
        conf = ['[api]', 'listen = "127.0.0.1:0"', '', '[[link]]', 'name = "pbx1"', 'address = "%s"' % switch_addr]
        conf += ['%s = %s' % (k, toml_value(v)) for k, v in case.get('link', {}).items()]
        with open(paths['ctigate.toml'], 'w') as f:
            f.write('\n'.join(conf) + '\n')
        gw = spawn([args.bin, 'run', '--config', paths['ctigate.toml']], paths['ctigate.log'])
        api = wait_line(gw, paths['ctigate.log'], GW_LISTEN_RE, 'ctigate run', min(end, time.monotonic() + START_TIMEOUT)).group(1)
        if not api.startswith('127.0.0.1:'):
            raise CaseError('ctigate listens on %s, not on loopback' % api)
        client_problem = None
        try:
            run_client(case, api, log, end)
        except (CaseError, OSError) as e:
            client_problem = str(e) if isinstance(e, CaseError) else 'client: %s: %s' % (type(e).__name__, e)
        # the switch's verdict (it may still be running its last steps)
        while peer.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        peer_rc = peer.poll()
        finals = [json.loads(x) for x in read_text(paths['switch.log']).splitlines()
                  if x.startswith('{"result"')]
        peer_msg = finals[-1].get('message', '') if finals else 'no result line'
        problems = []
        if client_problem:
            problems.append(client_problem)
        if peer_rc is None:
            problems.append('cstapeer did not finish within the case time (%.0f s)' % timeout)
        elif peer_rc != 0 or not finals or finals[-1].get('result') != 'pass':
            problems.append('switch script failed (exit %s): %s' % (peer_rc, peer_msg))
        want = case.get('switch_invokes') or {}
        if want:
            got = switch_invokes(read_text(paths['switch.log']), args.op_names)
            for op, n in want.items():
                if got.count(op) != n:
                    problems.append('the switch received %d %s invoke(s), expected %d (all invokes: %s)' % (
                        got.count(op), op, n, got))
        if gw.poll() is not None:
            problems.append('ctigate exited (status %s) during the case' % gw.returncode)
        if problems:
            return False, '; '.join(problems)
        return True, peer_msg
    except CaseError as e:
        return False, str(e)
    finally:
        kill(gw)
        kill(peer)
        for p in (gw, peer):
            if p in children:
                children.remove(p)
        client_log.close()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--bin', required=True, help='the ctigate binary (target/release/ctigate)')
    ap.add_argument('--python', default=sys.executable, help='interpreter for cstapeer (Python 3.11 + asn1tools)')
    ap.add_argument('--peer', default=os.path.join(REPO, '..', 'shared', 'spec', 'cstapeer.py'),
                    help='cstapeer.py (default: ../shared/spec/cstapeer.py from the repository root)')
    ap.add_argument('--timeout', type=float, default=MAX_TIMEOUT, help='seconds per case (at most 30)')
    ap.add_argument('-v', '--verbose', action='store_true', help='whole logs on failure, and times')
    ap.add_argument('--keep', metavar='DIR', help='keep each case\'s logs and config in DIR/NAME/')
    ap.add_argument('cases', nargs='*', help='case names (file names in cases/, .json optional) or paths')
    args = ap.parse_args(argv)
    args.bin = os.path.abspath(args.bin)
    args.peer = os.path.abspath(args.peer)
    for what, p in (('--bin', args.bin), ('--peer', args.peer)):
        if not os.path.isfile(p):
            print('run.py: %s %s: no such file' % (what, p), file=sys.stderr)
            return 2
    args.op_names = operation_names(os.path.dirname(args.peer))
    try:
        cases = [load_case(p) for p in find_cases(os.path.join(HERE, 'cases'), args.cases)]
        for c in cases:
            bad = set(c.get('switch_invokes') or {}) - set(args.op_names.values())
            if bad:
                raise CaseError('%s: switch_invokes names unknown operations %s' % (c['_path'], sorted(bad)))
    except (CaseError, ValueError, OSError) as e:
        print('run.py: %s' % e, file=sys.stderr)
        return 2
    if not cases:
        print('run.py: no cases', file=sys.stderr)
        return 2
    passed = failed = 0
    for case in cases:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix='gateway_peer.') as tmp:
            ok, msg = run_case(case, args, tmp)
            took = time.monotonic() - t0
            if ok:
                passed += 1
                print('ok - %s' % case['name'] + (' (%.1f s)' % took if args.verbose else ''), flush=True)
            else:
                failed += 1
                print('FAIL - %s: %s' % (case['name'], msg), flush=True)
                n = 10 ** 6 if args.verbose else 15
                print(tail(os.path.join(tmp, 'switch.log'), n, 'switch  ').lstrip('\n'), flush=True)
                print(tail(os.path.join(tmp, 'ctigate.log'), n, 'ctigate ').lstrip('\n'), flush=True)
                print(tail(os.path.join(tmp, 'client.log'), n, 'client  ').lstrip('\n'), flush=True)
            if args.keep:
                dest = os.path.join(args.keep, case['name'])
                os.makedirs(dest, exist_ok=True)
                for fn in os.listdir(tmp):
                    with open(os.path.join(tmp, fn), 'rb') as src, open(os.path.join(dest, fn), 'wb') as dst:
                        dst.write(src.read())
    print('%d passed, %d failed' % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    run_main(main)
