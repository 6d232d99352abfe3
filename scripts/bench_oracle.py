#!/usr/bin/env python3
"""Time the asn1tools oracle (../shared/spec/oracle.py, decode_apdu) on the PDUs of
benches/codec.rs, for the ours/oracle ratio in BENCHMARKS.md.

Per PDU: timeit, best of --repeat (5) runs of N decodes (N chosen so one run takes about
--target seconds, or --number). Prints one JSON object:
  {"tool": "asn1tools-oracle", "asn1tools": "0.169.0", "python": "3.x.y",
   "pdus": {"delivered_event": {"octets": 74, "iterations": N, "best_s": t,
            "ns_per_decode": ..., "decodes_per_s": ...}, ...}}

Usage: python3 scripts/bench_oracle.py [--spec DIR] [--repeat 5] [--number N] [--target 0.5]
"""
import argparse
import json
import os
import platform
import sys
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the same bytes as PDUS in benches/codec.rs (see the comments there for their origin)
PDUS = {
    'delivered_event':
        'a1480201090201153040550400000001a038a4366b0f300d80020042a10730058003323032630730058003'
        '323032610730058003323031620730058003323032640287004e01020a0116',
    'make_call_invoke':
        'a11d02010102010a301530058003323031300c800a30383931323334353637',
    'transferred_event_3conn':
        'a181ab02010c0201153081a2550400000001a08199b181966b0f300d80020042a10730058003323031a00f'
        '300d80020043a10730058003323031630730058003323031630730058003323033a15a301ca0116b0f300d'
        '80020044a10730058003323032a20730058003323032301ca0116b0f300d80020045a10730058003323033'
        'a20730058003323033301ca0116b0f300d80020046a10730058003323034a207300580033230344e01030a'
        '0120',
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--spec', default=os.path.join(ROOT, '..', 'shared', 'spec'))
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--number', type=int, default=0, help='decodes per run (default: auto)')
    ap.add_argument('--target', type=float, default=0.5, help='seconds per run when auto')
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.spec))
    import asn1tools
    import oracle

    db = oracle.load()
    out = {}
    for name, hx in PDUS.items():
        data = bytes.fromhex(hx)
        v = oracle.decode_apdu(db, data)  # must decode (and warms up)
        assert 'invoke' in v, (name, v)
        t = timeit.Timer(lambda: oracle.decode_apdu(db, data))
        n = args.number
        if not n:
            n, _ = t.autorange()
            one = t.timeit(n) / n
            n = max(1, int(args.target / one))
        best = min(t.repeat(repeat=args.repeat, number=n))
        out[name] = {
            'octets': len(data),
            'iterations': n,
            'best_s': round(best, 6),
            'ns_per_decode': round(best / n * 1e9, 1),
            'decodes_per_s': round(n / best, 1),
        }
    print(json.dumps({'tool': 'asn1tools-oracle', 'asn1tools': asn1tools.__version__,
                      'python': platform.python_version(), 'repeat': args.repeat,
                      'pdus': out}, indent=1))


if __name__ == '__main__':
    main()
