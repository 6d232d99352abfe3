#!/usr/bin/env python3
"""Cross-check `ctigate decode` against the independent asn1tools oracle.

    python3 tests/oracle/crosscheck.py --bin target/release/ctigate [--count 5] [--seed 1]

Three checks, each printed as a line `ok - ...` / `FAIL - ...`, then `N passed, N failed`:
 1. differential round trip: random valid PDUs of every operation, result, event, error,
    reject and ACSE APDU, generated from the ASN.1 by gen_random.py through the oracle,
    must decode in our codec with the same apdu kind, operation and event names and the
    same value as the oracle's decoding (field for field, strings as strings), and our
    canonical re-encoding must be byte-identical for at least 97% of them (the rest must
    differ only where BER allows: the oracle's decoding of our bytes equals its decoding
    of the original);
 2. fixtures: every fixtures/valid/*.hex decodes here and, where the oracle can decode it,
    to the same value; every fixtures/invalid/*.hex fails with the error code its name says;
 3. malformed input: truncations, lying lengths, deep nesting and junk derived from the
    valid PDUs give exactly one JSON line each (an error line where the input is invalid),
    exit status 0 or 1, never a crash, in well under a minute.
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
PROBLEMS = {
    'general': ['unrecognizedPDU', 'mistypedPDU', 'badlyStructuredPDU'],
    'invoke': ['duplicateInvocation', 'unrecognizedOperation', 'mistypedArgument', 'resourceLimitation',
               'releaseInProgress', 'unrecognizedLinkedId', 'linkedResponseUnexpected',
               'unexpectedLinkedOperation'],
    'returnResult': ['unrecognizedInvocation', 'resultResponseUnexpected', 'mistypedResult'],
    'returnError': ['unrecognizedInvocation', 'errorResponseUnexpected', 'unrecognizedError', 'unexpectedError',
                    'mistypedParameter'],
}
STUBBED = {'mediaAttachmentEvents', 'physicalDeviceFeatureEvents', 'voiceUnitEvents'}
results = []


def check(name, cond, detail=''):
    results.append(bool(cond))
    print('%s - %s%s' % ('ok' if cond else 'FAIL', name, '' if cond else ': %s' % (detail,)), flush=True)


def run_decode(binary, lines, timeout=120):
    t0 = time.monotonic()
    p = subprocess.run([binary, 'decode', '--hex'], input='\n'.join(lines) + '\n', capture_output=True,
                       text=True, timeout=timeout)
    out = [json.loads(x) for x in p.stdout.splitlines()]
    return p.returncode, out, time.monotonic() - t0, p.stderr


def oracle_view(apdu):
    """(kind, operation name or None, event or None, value) from the oracle's decode_apdu form."""
    (kind, body), = apdu.items()
    if kind == 'acse':
        return body['$choice'], None, None, body['$value']
    if kind == 'invoke':
        ev = None
        if body.get('opcode') == 21:
            ev = body['argument']['eventSpecificInfo']['$value']['$choice']
        return 'invoke', body['opcode'], ev, body.get('argument')
    if kind == 'returnResult':
        return 'result', body.get('opcode'), None, body.get('result')
    if kind == 'returnError':
        return 'error', None, None, body.get('parameter')
    prob = body['problem']
    return 'reject', None, None, prob


def ours_comparable(o):
    v = o.get('value')
    if o.get('apdu') == 'reject' and isinstance(v, dict):
        names = PROBLEMS.get(v['$choice'], [])
        val = v['$value']
        v = {'$choice': v['$choice'], '$value': names.index(val) if val in names else val}
    return v


def diff(a, b, path=''):
    """First difference between two JSON values, as text, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k == '$extensions' and k not in b:
                continue  # unknown elements we keep; the oracle skips them
            if k not in a or k not in b:
                return '%s.%s only in %s' % (path, k, 'ours' if k in a else 'oracle')
            d = diff(a[k], b[k], path + '.' + k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return '%s: %d vs %d items' % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, '%s[%d]' % (path, i))
            if d:
                return d
        return None
    return None if a == b else '%s: ours %r, oracle %r' % (path, a, b)


def differential(binary, count, seed, opnames, db, oracle):
    gen = subprocess.run([sys.executable, os.path.join(HERE, 'gen_random.py'), '--count', str(count), '--seed',
                          str(seed)], capture_output=True, text=True, timeout=600)
    rows = [line.split('\t') for line in gen.stdout.splitlines() if line.strip()]
    check('generator produced %d PDUs (%s)' % (len(rows), gen.stderr.strip().splitlines()[-1:] or ''),
          gen.returncode == 0 and len(rows) > 100, gen.stderr[-500:])
    rc, out, secs, err = run_decode(binary, [r[2] for r in rows])
    check('one output line per PDU (%d PDUs in %.2fs)' % (len(rows), secs), len(out) == len(rows), err[-300:])
    failed, mismatched, names_bad, identical, equivalent = [], [], [], 0, 0
    kinds = {}
    for (kind, name, hx, js), o in zip(rows, out):
        ref = json.loads(js)
        okind, op, ev, val = oracle_view(ref)
        kinds.setdefault(kind, [0, 0])[1] += 1
        if 'error' in o:
            failed.append((kind, name, o['error'], hx[:120]))
            continue
        kinds[kind][0] += 1
        want_op = opnames.get(op) if op is not None else None
        if o['apdu'] != okind or o.get('operation') != want_op or o.get('event') != ev:
            names_bad.append((kind, name, o['apdu'], o.get('operation'), o.get('event')))
        stub = o.get('family') in STUBBED
        if not stub:
            d = diff(ours_comparable(o), val)
            if d:
                mismatched.append((kind, name, d))
        if o['reencoded'] == hx:
            identical += 1
        else:
            again = oracle.decode_apdu(db, bytes.fromhex(o['reencoded']))
            if again == ref or stub:
                equivalent += 1
            else:
                mismatched.append((kind, name, 'our re-encoding decodes differently in the oracle: %s' % o['reencoded']))
    check('every generated PDU decodes (%s)' % ', '.join('%s %d/%d' % (k, a, b) for k, (a, b) in sorted(kinds.items())),
          not failed and rc == 0, failed[:5])
    check('apdu kind, operation and event names agree with the oracle', not names_bad, names_bad[:5])
    check('every decoded value equals the oracle\'s value field for field', not mismatched, mismatched[:5])
    pct = 100.0 * identical / max(1, len(rows))
    check('re-encoding byte-identical for %.1f%% (%d/%d), the rest BER-equivalent (%d)' % (
        pct, identical, len(rows), equivalent), pct >= 97.0 and identical + equivalent == len(rows) - len(failed))
    return [bytes.fromhex(r[2]) for r in rows]


def read_fixture(path):
    hexs, expect, canon = [], {}, None
    for line in open(path, encoding='utf-8'):
        s = line.strip()
        if s.startswith('#'):
            body = s[1:].strip()
            if body.startswith('expect:'):
                expect = dict(kv.split('=', 1) for kv in body[7:].split() if '=' in kv)
            elif body.startswith('canonical:'):
                canon = body[10:].strip().replace(' ', '')
            continue
        hexs.append(s.split('#', 1)[0])
    return bytes.fromhex(''.join(hexs).replace(' ', '').replace(':', '')), expect, canon


def fixtures(binary, opnames, db, oracle):
    valid = sorted(glob.glob(os.path.join(ROOT, 'fixtures', 'valid', '*.hex')))
    invalid = sorted(glob.glob(os.path.join(ROOT, 'fixtures', 'invalid', '*.hex')))
    if not valid:
        check('fixtures present', False, 'no fixtures/valid/*.hex')
        return
    pdus = [read_fixture(p) for p in valid]
    rc, out, _, err = run_decode(binary, [b.hex() or '00' for b, _, _ in pdus])
    bad, vals, oracle_skipped = [], 0, 0
    for path, (b, exp, canon), o in zip(valid, pdus, out):
        name = os.path.basename(path)
        if 'error' in o:
            bad.append((name, o['error']))
            continue
        if exp.get('apdu') and exp['apdu'] != o['apdu']:
            bad.append((name, 'apdu %s, expected %s' % (o['apdu'], exp['apdu'])))
        for key in ('operation', 'event'):
            if exp.get(key, '-') != '-' and exp[key] != o.get(key):
                bad.append((name, '%s %s, expected %s' % (key, o.get(key), exp[key])))
        want = canon if canon else b.hex()
        if exp.get('canonical') == 'yes' and o['reencoded'] != b.hex():
            bad.append((name, 'not canonical: %s' % o['reencoded']))
        elif canon and o['reencoded'] != canon:
            bad.append((name, 'canonical form %s, expected %s' % (o['reencoded'], want)))
        try:
            ref = oracle.decode_apdu(db, b)
        except Exception:  # hand-built vendor data, unknown elements, stubbed families
            oracle_skipped += 1
            continue
        if o.get('family') in STUBBED:
            continue
        d = diff(ours_comparable(o), oracle_view(ref)[3])
        if d:
            bad.append((name, d))
        vals += 1
    check('%d valid fixtures decode as annotated; %d compared with the oracle value for value (%d the oracle cannot read)'
          % (len(valid), vals, oracle_skipped), not bad and len(out) == len(valid), bad[:6])
    pdus = [read_fixture(p) for p in invalid]
    lines = [(b.hex() if b else '') for b, _, _ in pdus]
    # an empty PDU cannot be written as a hex line (a blank line is skipped): tests/golden.rs
    # checks that one
    wrong = []
    nonempty = [(p, x, ln) for p, x, ln in zip(invalid, pdus, lines) if ln]
    rc, out, _, err = run_decode(binary, [ln for _, _, ln in nonempty])
    for (path, (b, exp, _), _), o in zip(nonempty, out):
        want = exp.get('error') or os.path.basename(path).split('--')[0]
        if o.get('code') != want:
            wrong.append((os.path.basename(path), o.get('code'), o.get('error', 'decoded')))
    check('%d invalid fixtures give the error their name says' % len(invalid),
          invalid and not wrong and len(out) == len(nonempty) and rc == 1, wrong[:6])


def malformed(binary, valid_pdus, seed):
    rnd = random.Random(seed)
    cases = []
    sample = rnd.sample(valid_pdus, min(120, len(valid_pdus)))
    for b in sample:
        cut = rnd.randrange(1, len(b))
        cases.append(('truncated', b[:cut]))
        lie = bytearray(b)
        if lie[1] < 0x7f:
            lie[1] = min(0x7f, lie[1] + rnd.randrange(1, 20))
            cases.append(('lying length', bytes(lie)))
        cases.append(('length 0x84 ffffffff', b[:1] + b'\x84\xff\xff\xff\xff' + b[2:]))
        cases.append(('trailing junk', b + bytes([rnd.randrange(256)])))
    for depth in (33, 40, 200, 1000):
        cases.append(('nesting %d' % depth, b'\xa1\x80' * depth + b'\x00\x00' * depth))
        cases.append(('nesting %d definite' % depth, nested(depth)))
    for _ in range(150):
        cases.append(('junk', bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 60)))))
    t0 = time.monotonic()
    rc, out, secs, err = run_decode(binary, [b.hex() for _, b in cases])
    errors = sum(1 for o in out if 'error' in o)
    must_fail = [c for c, o in zip(cases, out) if c[0] != 'junk' and 'error' not in o]
    check('%d malformed inputs: %d JSON lines, %d errors, exit %d, %.2fs' % (len(cases), len(out), errors, rc, secs),
          len(out) == len(cases) and rc in (0, 1) and not must_fail and secs < 60 and 'panicked' not in err,
          (must_fail[:3], err[-300:]))


def nested(depth):
    b = b'\x05\x00'
    for _ in range(depth):
        n = len(b)
        hdr = bytes([n]) if n < 128 else (b'\x81' + bytes([n]) if n < 256 else b'\x82' + n.to_bytes(2, 'big'))
        b = b'\x30' + hdr + b
    return b'\xa1' + (bytes([len(b)]) if len(b) < 128 else b'\x82' + len(b).to_bytes(2, 'big')) + b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bin', default=os.path.join(ROOT, 'target', 'release', 'ctigate'))
    ap.add_argument('--count', type=int, default=5)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--spec', default=os.path.join(ROOT, '..', 'shared', 'spec'))
    a = ap.parse_args()
    sys.path.insert(0, a.spec)
    import oracle
    db = oracle.load()
    opnames = oracle.operation_names()
    pdus = differential(a.bin, a.count, a.seed, opnames, db, oracle)
    fixtures(a.bin, opnames, db, oracle)
    malformed(a.bin, pdus, a.seed)
    print('%d passed, %d failed' % (sum(results), len(results) - sum(results)))
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
