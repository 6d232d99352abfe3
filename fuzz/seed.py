#!/usr/bin/env python3
"""Build the seed corpora of the fuzz targets: fuzz/corpus/<target>/<sha1 of content>.

Deterministic and re-runnable: the same sources give the same files (named like libFuzzer
names its units, so re-seeding after `cargo fuzz cmin` adds no duplicates). Existing files
are kept unless --clean is given.

Sources (unframed PDUs):
  * ../shared/spec/captures/vectors.tsv, column 3 (hex)           (--spec DIR to override)
  * fixtures/valid/*.hex, if any: `#` comment lines, hex lines with an optional trailing
    `# comment`, one PDU per file; fixtures/invalid/*.hex (same format) as is, to seed
    the error paths of the decode targets
  * tests/oracle/gen_random.py --count 1 --seed 1 (one valid PDU per operation, event,
    error, reject and ACSE kind, made by the asn1tools oracle), if it runs; --no-random
    skips it

Per target:
  acse       the ACSE PDUs (first octet 0x60..0x7f)
  apdu       every PDU
  roundtrip  every PDU
  hot_event  every invoke (first octet 0xa1)
  all three also get, per PDU, two non-canonical but valid BER re-encodings: every
  constructed value with the indefinite length form, and every length in a non-minimal
  long form (the canonical encoder must turn both back into the original).
  frame      first octet = mode (bit 0: `P` handshake expected, bits 1-4: smaller max,
             bits 5-7: log2 of the piece size), then the PDUs with a 2-octet big-endian length
             prefix, a few per file; plus CSTA-XML 8-octet-header frames.

Usage: python3 fuzz/seed.py [--clean] [--no-random] [--spec DIR]
"""
import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def vectors(spec):
    out = []
    path = os.path.join(spec, 'captures', 'vectors.tsv')
    for line in open(path):
        if line.startswith('#') or not line.strip():
            continue
        cols = line.rstrip('\n').split('\t')
        out.append((cols[0], bytes.fromhex(cols[2])))
    return out


def fixtures(kind='valid'):
    out = []
    for f in sorted(glob.glob(os.path.join(ROOT, 'fixtures', kind, '*.hex'))):
        hx = ''
        for line in open(f):
            line = line.split('#', 1)[0].strip()
            hx += ''.join(line.split())
        if hx:
            out.append((os.path.basename(f)[:-4], bytes.fromhex(hx)))
    return out


def random_pdus(spec):
    gen = os.path.join(ROOT, 'tests', 'oracle', 'gen_random.py')
    if not os.path.isfile(gen):
        return []
    try:
        r = subprocess.run([sys.executable, gen, '--count', '1', '--seed', '1', '--spec', spec],
                           capture_output=True, text=True, check=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as e:
        print('seed: gen_random.py skipped (%s)' % e, file=sys.stderr)
        return []
    out = []
    for line in r.stdout.splitlines():
        kind, name, hx = line.split('\t')[:3]
        out.append(('%s_%s' % (kind, name), bytes.fromhex(hx)))
    return out


# ---- BER re-encodings ---------------------------------------------------------------------
def parse(b, i=0, end=None):
    """[(identifier octets, constructed, content or children)] of the definite-length TLVs
    in b[i:end]; raises ValueError on anything else."""
    end = len(b) if end is None else end
    out = []
    while i < end:
        j = i + 1
        if b[i] & 0x1f == 0x1f:
            while b[j] & 0x80:
                j += 1
            j += 1
        ident = b[i:j]
        n = b[j]
        j += 1
        if n == 0x80:
            raise ValueError('indefinite')
        if n & 0x80:
            k = n & 0x7f
            n = int.from_bytes(b[j:j + k], 'big')
            j += k
        if j + n > end:
            raise ValueError('truncated')
        constructed = bool(ident[0] & 0x20)
        out.append((ident, constructed, parse(b, j, j + n) if constructed else b[j:j + n]))
        i = j + n
    return out


def length(n, form):
    if form == 'long':
        return bytes([0x82]) + n.to_bytes(2, 'big')
    if n < 0x80:
        return bytes([n])
    k = (n.bit_length() + 7) // 8
    return bytes([0x80 | k]) + n.to_bytes(k, 'big')


def emit(tlvs, form):
    out = b''
    for ident, constructed, body in tlvs:
        content = emit(body, form) if constructed else body
        if form == 'indefinite' and constructed:
            out += ident + b'\x80' + content + b'\x00\x00'
        else:
            out += ident + length(len(content), form) + content
    return out


def variants(pdu):
    try:
        tree = parse(pdu)
    except (ValueError, IndexError):
        return [pdu]
    vs = [pdu]
    for form in ('indefinite', 'long'):
        v = emit(tree, form)
        if v not in vs and len(v) <= 65535:
            vs.append(v)
    return vs


# ---- frames -------------------------------------------------------------------------------
def hipath_framed(pdus):
    # Siemens HiPath: 0x26, 0x80 | length-high, length-low before each PDU
    return b''.join(bytes([0x26, 0x80 | (len(p) >> 8), len(p) & 0xff]) + p for p in pdus)


def framed(pdus):
    return b''.join(len(p).to_bytes(2, 'big') + p for p in pdus)


def xml_frame(invoke_id, body):
    return b'\x00\x00' + (len(body) + 8).to_bytes(2, 'big') + b'%04d' % invoke_id + body


XML = [
    (1, b'<?xml version="1.0" encoding="UTF-8"?><MakeCall xmlns="http://www.ecma-international.org/'
        b'standards/ecma-323/csta/ed3"><callingDevice>201</callingDevice><calledDirectoryNumber>'
        b'0891234567</calledDirectoryNumber></MakeCall>'),
    (9999, b'<DeliveredEvent><monitorCrossRefID>1</monitorCrossRefID></DeliveredEvent>'),
    (42, b''),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--spec', default=os.path.join(ROOT, '..', 'shared', 'spec'))
    ap.add_argument('--clean', action='store_true', help='empty the corpus dirs first')
    ap.add_argument('--no-random', action='store_true', help='do not run tests/oracle/gen_random.py')
    args = ap.parse_args()

    base = vectors(args.spec) + fixtures()
    extra = [] if args.no_random else random_pdus(args.spec)
    pdus = base + extra
    corpus = {t: [] for t in ('frame', 'acse', 'apdu', 'roundtrip', 'hot_event')}
    for _, bad in fixtures('invalid'):
        corpus['apdu'].append(bad)
        corpus['roundtrip'].append(bad)
        if bad and 0x60 <= bad[0] <= 0x7f:
            corpus['acse'].append(bad)
    for _, pdu in pdus:
        vs = variants(pdu)
        corpus['apdu'] += vs
        corpus['roundtrip'] += vs
        if pdu and pdu[0] == 0xa1:
            corpus['hot_event'] += vs
        if pdu and 0x60 <= pdu[0] <= 0x7f:
            corpus['acse'] += vs

    # frame: the base PDUs in groups of 4, under a few modes
    groups = [[p for _, p in base[i:i + 4]] for i in range(0, len(base), 4)]
    for n, g in enumerate(groups):
        corpus['frame'].append(bytes([[0x00, 0xe0, 0x40][n % 3]]) + framed(g))
    corpus['frame'].append(b'\x01P' + framed([p for _, p in base[:3]]))       # handshake first
    corpus['frame'].append(b'\x01P')                                          # handshake only
    corpus['frame'].append(b'\x02' + framed([p for _, p in base[:6]]))       # max 23: stops early
    corpus['frame'].append(b'\x00' + framed([b'', b'\xa1\x00']) + b'\x00')   # empty frame, half frame
    corpus['frame'].append(b'\x00' + b''.join(xml_frame(i, b) for i, b in XML))
    corpus['frame'].append(b'\x20' + xml_frame(*XML[0])[:20])                 # half an XML frame
    corpus['frame'].append(b'\x00' + hipath_framed([p for _, p in base[:4]]))  # HiPath 26 8x xx
    corpus['frame'].append(b'\x40' + hipath_framed([b'', b'\xa1\x00']) + b'\x26\x00')  # then no high bit

    for t, items in corpus.items():
        d = os.path.join(HERE, 'corpus', t)
        if args.clean and os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d, exist_ok=True)
        new = 0
        for data in items:
            f = os.path.join(d, hashlib.sha1(data).hexdigest())
            if not os.path.exists(f):
                with open(f, 'wb') as fh:
                    fh.write(data)
                new += 1
        total = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        print('seed: %-9s %4d inputs (%d new), dir %d files / %d bytes'
              % (t, len(set(items)), new, len(os.listdir(d)), total))
    print('seed: %d PDUs (%d vectors/fixtures, %d from gen_random)' % (len(pdus), len(base), len(extra)))


if __name__ == '__main__':
    main()
