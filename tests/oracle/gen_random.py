#!/usr/bin/env python3
"""Deterministic generator of random VALID CSTA link PDUs, built only with the oracle.

  python3 tests/oracle/gen_random.py --count N --seed S [--spec DIR] > out.tsv

Prints TSV lines  kind<TAB>name<TAB>hex<TAB>json  where hex = oracle.encode_apdu(db, apdu)
(unframed) and json = json.dumps(oracle.decode_apdu(db, bytes)) (compact).  kinds:
invoke / result (name = operation), event (name = EventSpecificInfo alternative),
error (name = UniversalFailure category), reject (name = problem choice), acse
(name = aarq/aare/rlrq/rlre/abrt).  Values are random walks over the compiled asn1tools
BER types, in parallel with asn1tools' constraints-checker tree (SIZE / value ranges).
Every sample is encoded, decoded and re-encoded by the oracle; samples that fail are
regenerated and counted (stderr).
"""
import argparse, datetime, json, os, random, string, sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STUB_FAMILIES_HANDFUL = 2          # stubbed-family alternatives emitted per stubbed family
MAX_DEPTH = 6
ALNUM = string.ascii_letters + string.digits
PRINTABLE_STR = ALNUM + " '()+,-./:=?"


class Unsupported(Exception):
    pass


class Gen:
    def __init__(self, ber, rng, max_depth=MAX_DEPTH):
        self.B, self.rng, self.max_depth = ber, rng, max_depth
        self.unsupported = Counter()

    @staticmethod
    def bounds(cc, lo, hi):
        """Clamp the default range [lo, hi] to the constraints-checker range of cc."""
        mn, mx = getattr(cc, 'minimum', 'MIN'), getattr(cc, 'maximum', 'MAX')
        mn, mx = (lo if mn == 'MIN' else mn), (hi if mx == 'MAX' else mx)
        a, b = max(lo, mn), min(hi, mx)
        return (a, b) if a <= b else (mn, mx)            # default range outside the constraint

    @staticmethod
    def sub(cc, name):
        """Constraints-checker node of member `name` (None if unknown)."""
        if type(cc).__name__ == 'Recursive':
            cc = cc.inner
        if hasattr(cc, 'name_to_member'):
            return cc.name_to_member.get(name)
        return next((m for m in getattr(cc, 'members', None) or [] if m.name == name), None)

    def chars(self, t, n, cc):
        r, B = self.rng, self.B
        alpha = getattr(cc, 'permitted_alphabet', None)   # only a FROM(...) constraint
        if alpha and alpha != getattr(type(cc), 'PERMITTED_ALPHABET', None):
            return ''.join(r.choice(alpha) for _ in range(n))
        if isinstance(t, B.IA5String):
            return ''.join(r.choice(string.digits) if r.random() < 0.8
                           else r.choice(string.ascii_letters + '*#') for _ in range(n))
        if isinstance(t, B.NumericString):
            return ''.join(r.choice(string.digits) for _ in range(n))
        pool = PRINTABLE_STR if isinstance(t, B.PrintableString) else ALNUM + ' -'
        return ''.join(r.choice(pool) for _ in range(n))

    def members(self, t, cc, depth):
        """Value (dict) of a SEQUENCE / SET type."""
        r, out = self.rng, {}

        def one(m):
            opt = m.optional or m.has_default()
            if opt and (depth >= self.max_depth or r.random() < 0.5):
                return
            if opt and isinstance(m, (self.B.Any, self.B.AnyDefinedBy)) and r.random() < 0.5:
                return
            try:
                out[m.name] = self.value(m, self.sub(cc, m.name), depth + 1, m.name)
            except Unsupported as e:
                if not opt:
                    raise
                self.unsupported[str(e)] += 1               # leave the optional member out

        for m in t.root_members:
            one(m)
        for a in t.additions or []:
            if depth >= self.max_depth or r.random() < 0.5:
                continue
            for m in (a if isinstance(a, list) else [a]):
                one(m)
        return out

    def value(self, t, cc, depth=0, where=''):
        B, r = self.B, self.rng
        where = where or t.name or type(t).__name__
        if isinstance(t, (B.ExplicitTag, B.Recursive)):
            return self.value(t.inner, getattr(cc, 'inner', cc) if isinstance(t, B.Recursive) else cc,
                              depth, where)
        if isinstance(t, (B.Sequence, B.Set)):
            return self.members(t, cc, depth)
        if isinstance(t, (B.SequenceOf, B.SetOf)):
            lo, hi = self.bounds(cc, 1, 1 if depth >= self.max_depth else 3)
            el_cc = getattr(cc, 'element_type', None)
            return [self.value(t.element_type, el_cc, depth + 1, where + '[]')
                    for _ in range(r.randint(lo, hi))]
        if isinstance(t, B.Choice):
            for m in r.sample(t.members, len(t.members)):
                try:
                    return (m.name, self.value(m, self.sub(cc, m.name), depth + 1, m.name))
                except Unsupported as e:
                    self.unsupported[str(e)] += 1           # try another alternative
            raise Unsupported('%s (no alternative can be generated)' % where)
        if isinstance(t, B.Boolean):
            return r.random() < 0.5
        if isinstance(t, B.Null):
            return None
        if isinstance(t, B.Integer):
            return r.randint(*self.bounds(cc, -300, -1 if r.random() < 0.1 else 300))
        if isinstance(t, B.Real):
            return r.randint(-400, 400) / 4
        if isinstance(t, B.Enumerated):
            return r.choice(list(t.data_to_value))
        if isinstance(t, B.BitString):
            n = r.randint(*self.bounds(cc, 1, 24))
            data = bytearray(r.getrandbits(8) for _ in range((n + 7) // 8))
            if n % 8:
                data[-1] &= (0xff << (8 - n % 8)) & 0xff
            return (bytes(data), n)
        if isinstance(t, B.OctetString):
            return bytes(r.getrandbits(8) for _ in range(r.randint(*self.bounds(cc, 1, 8))))
        if isinstance(t, B.StringType):                   # incl. ObjectDescriptor
            return self.chars(t, r.randint(*self.bounds(cc, 1, 12)), cc)
        if isinstance(t, B.ObjectIdentifier):
            if r.random() < 0.5:
                return '1.3.12.0.285.%d' % r.randint(0, 400)
            first = r.randint(0, 2)
            # second arc < 40 even under arc 2: asn1tools decodes a first subidentifier >= 120
            # as divmod(x, 40) (e.g. 2.143 -> 5.23), against X.690 8.19.4; our codec is right
            arcs = [first, r.randint(0, 39)]
            return '.'.join(str(x) for x in arcs + [r.randint(0, 500) for _ in range(r.randint(1, 4))])
        if isinstance(t, (B.GeneralizedTime, B.UTCTime)):
            y = r.randint(2000, 2037 if isinstance(t, B.GeneralizedTime) else 2049)
            # seconds never 0: asn1tools would then drop the seconds field (YYYYMMDDhhmmZ)
            return datetime.datetime(y, r.randint(1, 12), r.randint(1, 28), r.randint(0, 23),
                                     r.randint(0, 59), r.randint(1, 59), tzinfo=datetime.timezone.utc)
        if isinstance(t, (B.Any, B.AnyDefinedBy)):
            if isinstance(t, B.AnyDefinedBy) and t.choices:
                raise Unsupported('%s (ANY DEFINED BY with choices)' % where)
            s = self.chars(B.IA5String(''), r.randint(1, 8), None).encode()
            return r.choice([bytes([0x02, 0x01, r.randint(0, 127)]),   # a small, valid TLV:
                             bytes([0x16, len(s)]) + s,                 # INTEGER, IA5String
                             bytes([0x04, 2, r.getrandbits(8), r.getrandbits(8)])])  # OCTET STR
        raise Unsupported('%s (%s)' % (where, type(t).__name__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--count', type=int, default=5)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--spec', default=os.path.join(ROOT, '..', 'shared', 'spec'))
    ap.add_argument('--max-depth', type=int, default=MAX_DEPTH,
                    help='no optional members / extra list elements beyond this nesting depth')
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.spec, 'oracle.py')):
        sys.exit('gen_random: no oracle.py in --spec %s' % args.spec)
    sys.path.insert(0, os.path.abspath(args.spec))
    import oracle
    from asn1tools.codecs import ber as B
    db, rng = oracle.load(), random.Random(args.seed)
    g, names = Gen(B, rng, args.max_depth), oracle.operation_names()
    skips, failed, lines = Counter(), {}, 0

    def cc_of(tname):
        return db.types[tname].constraints_checker.type

    def gen(tname):
        return g.value(db.types[tname].type, cc_of(tname), 0, tname)

    def emit(kind, name, make):
        """make() -> (apdu json, [(type name, python value)] to constraint-check)."""
        nonlocal lines
        for _ in range(25):
            try:
                apdu, checks = make()
                for tname, v in checks:
                    db.types[tname].check_constraints(v)
                data = oracle.encode_apdu(db, apdu)
                dec = oracle.decode_apdu(db, data)
                js = json.dumps(dec, separators=(',', ':'))
                if oracle.encode_apdu(db, json.loads(js)) != data:
                    raise ValueError('re-encoding of the decoded value differs')
            except Unsupported as e:
                failed[str(e)] = failed.get(str(e), 0) + 1
                return
            except Exception as e:                         # encode / decode / constraint
                skips['%s %s: %s' % (kind, name, type(e).__name__)] += 1
                continue
            print('%s\t%s\t%s\t%s' % (kind, name, data.hex(), js))
            lines += 1
            return
        failed['%s %s (25 attempts failed)' % (kind, name)] = 1

    def iid():
        return rng.randint(0, 32767) if rng.random() < 0.95 else rng.randint(-128, -1)

    def invoke(op, arg, argt):
        body = {'invokeId': iid(), 'opcode': op, 'argument': oracle.to_json(arg)}
        if rng.random() < 0.1:
            body['linkedId'] = ({'$choice': 'present', '$value': rng.randint(0, 300)}
                                if rng.random() < 0.8 else {'$choice': 'absent', '$value': None})
        return {'invoke': body}, [(argt, arg)]

    # operations: invokes (except cSTAEventReport) and results
    for op, (argt, rest) in sorted(oracle.OPS.items()):
        if op == 21:
            continue
        for _ in range(args.count):
            emit('invoke', names[op], lambda: invoke(op, gen(argt), argt))
        if rest:
            for _ in range(args.count):
                def res():
                    v = gen(rest)
                    return ({'returnResult': {'invokeId': iid(), 'opcode': op,
                                              'result': oracle.to_json(v)}}, [(rest, v)])
                emit('result', names[op], res)

    # events: every alternative of every defined family; a handful of the stubbed ones
    ert = 'CSTAEventReportArgument'
    esi = db.types['EventSpecificInfo'].type
    esi_cc = cc_of('EventSpecificInfo')
    for fam in esi.members:
        choice = fam.inner if isinstance(fam, B.ExplicitTag) else fam
        alts = choice.members
        stub = all(isinstance(getattr(a, 'inner', a), B.Sequence) and not getattr(a, 'inner', a).root_members
                   for a in alts)
        chosen = rng.sample(alts, min(STUB_FAMILIES_HANDFUL, len(alts))) if stub else alts
        fam_cc = Gen.sub(esi_cc, fam.name)
        for alt in chosen:
            for _ in range(1 if stub else args.count):
                def ev():
                    arg = gen(ert)
                    body = {} if stub else g.value(alt, Gen.sub(fam_cc, alt.name), 2, alt.name)
                    arg['eventSpecificInfo'] = (fam.name, (alt.name, body))
                    return invoke(21, arg, ert)
                emit('event', alt.name, ev)

    # returnError universalFailure: every category
    for cat in db.types['UniversalFailure'].type.members:
        for _ in range(args.count):
            def err():
                v = (cat.name, g.value(cat, Gen.sub(cc_of('UniversalFailure'), cat.name), 1, cat.name))
                return ({'returnError': {'invokeId': iid(), 'errcode': 1,
                                         'parameter': oracle.to_json(v)}}, [('UniversalFailure', v)])
            emit('error', cat.name, err)

    # reject: every problem choice, values among the named numbers of oracle.ROSE_MODULE
    for prob, hi in (('general', 2), ('invoke', 7), ('returnResult', 2), ('returnError', 4)):
        for _ in range(args.count):
            emit('reject', prob, lambda: ({'reject': {'invokeId': iid(), 'problem': {
                '$choice': prob, '$value': rng.randint(0, hi)}}}, []))

    # ACSE
    acse = {m.name: m for m in db.types['ACSE-apdu'].type.members}
    acse_cc = cc_of('ACSE-apdu')

    def user_info():
        ui = gen('ACSEUserInformationForCSTA')
        db.types['ACSEUserInformationForCSTA'].check_constraints(ui)
        return [{'direct-reference': '1.3.12.0.285.200',
                 'encoding': ('single-ASN1-type', db.encode('ACSEUserInformationForCSTA', ui))}]

    def acse_pdu(name, variant=None):
        def make():
            v = g.value(acse[name], Gen.sub(acse_cc, name), 1, name)
            if name in ('aarq', 'aare'):
                v['aSO-context-name'] = '1.3.12.0.218'
                if variant != 'rejected' or rng.random() < 0.5:
                    v['user-information'] = user_info()
                else:
                    v.pop('user-information', None)
            if variant == 'accepted':
                v['result'], v['result-source-diagnostic'] = 0, ('service-user', 0)
            elif variant == 'rejected':
                v['result'] = rng.randint(1, 2)
                v['result-source-diagnostic'] = rng.choice(
                    [('service-user', rng.randint(1, 14)), ('service-provider', rng.randint(1, 2))])
            if name in ('rlrq', 'rlre') and 'reason' in v:
                v['reason'] = rng.choice([0, 1, 30])
            if name == 'abrt':
                v['abort-source'] = rng.randint(0, 1)
            return {'acse': oracle.to_json((name, v))}, [('ACSE-apdu', (name, v))]
        return make

    for name, variant in (('aarq', None), ('aare', 'accepted'), ('aare', 'rejected'),
                          ('rlrq', None), ('rlre', None), ('abrt', None)):
        for _ in range(args.count):
            emit('acse', name, acse_pdu(name, variant))

    sys.stdout.flush()
    print('gen_random: %d PDUs, %d skipped samples' % (lines, sum(skips.values())), file=sys.stderr)
    for what, d in (('skipped', skips), ('could not generate, left out', g.unsupported),
                    ('could not generate, PDU dropped', failed)):
        for k, n in sorted(d.items()):
            print('  %s (%d): %s' % (what, n, k), file=sys.stderr)


if __name__ == '__main__':
    main()
