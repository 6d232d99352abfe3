#!/usr/bin/env python3
"""Generate codecs/model/src/schema/generated.rs (the ECMA-285 abstract syntax of the
wire-neutral model crate) from the ASN.1 modules in codecs/csta/asn1/.

    python3 codecs/csta/gen/gen_schema.py          # rewrites the generated file
    python3 codecs/csta/gen/gen_schema.py --check  # exits 1 when the committed file is stale

Needs asn1tools==0.169.0 (its *parser* only: tag resolution, type layout and every table
below are computed here). The output is a flat table of type nodes that the schema-driven
BER codec in `codecs/csta/src/codec.rs` and the typed layer of `codecs/model` walk; nothing
in it is hand-edited.

Edits to the ASN.1 text, in memory only (the .asn1 files stay verbatim):
  * X.880 information objects (`name OPERATION ::= {...}`, `name ERROR ::= {...}`) are
    removed before parsing (asn1tools cannot parse WITH SYNTAX objects); their ARGUMENT,
    RESULT, ERRORS and `CODE local: n` are read here by regex to build the operation table.
  * imports of OPERATION/ERROR/universalFailure and of Remote-Operations-* are dropped.
  * imported types whose modules were not copied (media-attachment, physical-device and
    voice-unit events) become opaque nodes: they decode as raw content and re-encode
    byte-identically. ServiceCrossRefID is OCTET STRING (as in ECMA-285); X.501 Name is
    SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }.
"""
import glob
import os
import re
import subprocess
import sys

import asn1tools

HERE = os.path.dirname(os.path.abspath(__file__))
ASN1 = os.path.join(HERE, '..', 'asn1')
OUT = os.path.join(HERE, '..', '..', 'model', 'src', 'schema', 'generated.rs')

OBJ = re.compile(r'\b([a-z][A-Za-z0-9-]*)\s+(OPERATION|ERROR)\s*::=\s*\{')
IMP = re.compile(r'(.*?)\bFROM\s+([A-Za-z][A-Za-z0-9-]*)\s*(\{[^}]*\})?', re.S)
UNIVERSAL = {
    'BOOLEAN': 1, 'INTEGER': 2, 'BIT STRING': 3, 'OCTET STRING': 4, 'NULL': 5,
    'OBJECT IDENTIFIER': 6, 'ObjectDescriptor': 7, 'EXTERNAL': 8, 'REAL': 9, 'ENUMERATED': 10,
    'UTF8String': 12, 'SEQUENCE': 16, 'SEQUENCE OF': 16, 'SET': 17, 'SET OF': 17,
    'NumericString': 18, 'PrintableString': 19, 'TeletexString': 20, 'IA5String': 22,
    'UTCTime': 23, 'GeneralizedTime': 24, 'GraphicString': 25, 'VisibleString': 26,
    'GeneralString': 27,
}
STRINGS = {'IA5String', 'PrintableString', 'NumericString', 'VisibleString', 'GraphicString',
           'UTF8String', 'GeneralString', 'TeletexString', 'ObjectDescriptor'}


def strip_objects(text):
    """Remove `x OPERATION ::= {...}` / `x ERROR ::= {...}` blocks; return (text, objects)."""
    objs = []
    while True:
        m = OBJ.search(text)
        if not m:
            return text, objs
        depth, j = 0, m.end() - 1
        while True:
            depth += {'{': 1, '}': -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        objs.append((m.group(1), m.group(2), text[m.end():j]))
        text = text[:m.start()] + text[j + 1:]


def fix_imports(text, wanted):
    m = re.search(r'\bIMPORTS\b(.*?);', text, re.S)
    if not m:
        return text
    kept = []
    for syms, mod, oid in IMP.findall(re.sub(r'--[^\n]*', '', m.group(1))):
        names = [s.strip() for s in syms.split(',') if s.strip()
                 and s.strip() not in ('OPERATION', 'ERROR', 'universalFailure')]
        if names and not mod.startswith('Remote-Operations'):
            kept.append('%s FROM %s %s' % (', '.join(names), mod, oid or ''))
            wanted.setdefault(mod, set()).update(names)
    return text[:m.start()] + ('IMPORTS\n' + '\n'.join(kept) + ';' if kept else '') + text[m.end():]


def load():
    wanted, texts, have, objects, files = {}, [], set(), [], {}
    paths = sorted(glob.glob(os.path.join(ASN1, '*.asn1'))) + [os.path.join(ASN1, 'wireshark-acse.asn')]
    for f in paths:
        raw = open(f, encoding='utf-8').read()
        t, objs = strip_objects(raw)
        mod = re.search(r'^\s*([A-Za-z][A-Za-z0-9-]*)\s', re.sub(r'--[^\n]*', '', raw)).group(1)
        objects += [(mod, name, kind, body) for name, kind, body in objs]
        files[mod] = os.path.basename(f)
        texts.append(fix_imports(t, wanted))
        have.add(mod)
    opaque = set()
    for mod, names in sorted(wanted.items()):
        if mod in have:
            continue
        body = []
        for n in sorted(names):
            if n == 'ServiceCrossRefID':
                body.append('%s ::= OCTET STRING' % n)
            elif mod == 'InformationFramework':
                body.append({'Name': 'Name ::= SEQUENCE OF RelativeDistinguishedName',
                             'RelativeDistinguishedName': 'RelativeDistinguishedName ::= '
                             'SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }'}[n])
            else:
                body.append('%s ::= SEQUENCE { ... }' % n)
                opaque.add((mod, n))
        texts.append('%s DEFINITIONS ::= BEGIN\n%s\nEND\n' % (mod, '\n'.join(body)))
        files[mod] = '(not copied: %s)' % mod
    return asn1tools.parse_string('\n'.join(texts)), objects, opaque, files


class Gen:
    def __init__(self, parsed, opaque, files):
        self.p, self.opaque, self.files = parsed, opaque, files
        self.nodes = []          # [(name, kind_rust)]
        self.named = {}          # (module, type) -> node id
        self.resolving = set()
        self.meta = {}           # node id -> ('tag', class, number) | ('univ', n) | ('choice', [ids]) | ('any',) | ('none',)

    def new(self, name):
        self.nodes.append([name, None])
        return len(self.nodes) - 1

    def lookup(self, mod, name):
        """(module, type name) that `name` refers to inside module `mod`."""
        m = self.p[mod]
        if name in m['types']:
            return mod, name
        for imod, syms in m.get('imports', {}).items():
            if name in syms:
                return self.lookup(imod, name)
        raise KeyError('%s: unresolved type %s' % (mod, name))

    def spec_of(self, mod, t):
        """Follow plain references to the defining spec: (module, spec)."""
        seen = 0
        while t['type'] not in UNIVERSAL and t['type'] not in ('CHOICE', 'ANY', 'ANY DEFINED BY') \
                and t.get('tag') is None:
            mod, name = self.lookup(mod, t['type'])
            if (mod, name) in self.opaque:
                return mod, {'type': '$OPAQUE'}
            t = self.p[mod]['types'][name]
            seen += 1
            if seen > 50:
                raise ValueError('reference loop')
        return mod, t

    def is_untagged_choice_or_any(self, mod, t):
        """True when the type (after references, ignoring tags on t itself) is a CHOICE/ANY."""
        t2 = dict(t)
        t2.pop('tag', None)
        while True:
            if t2['type'] in ('CHOICE', 'ANY', 'ANY DEFINED BY'):
                return True
            if t2['type'] in UNIVERSAL:
                return False
            mod, name = self.lookup(mod, t2['type'])
            if (mod, name) in self.opaque:
                return False
            t2 = self.p[mod]['types'][name]
            if t2.get('tag') is not None:
                return False

    def named_type(self, mod, name):
        mod, name = self.lookup(mod, name)
        key = (mod, name)
        if key in self.named:
            return self.named[key]
        if key in self.opaque:
            nid = self.new(name)
            self.named[key] = nid
            self.nodes[nid][1] = 'Kind::Opaque'
            self.meta[nid] = ('none',)
            return nid
        t = self.p[mod]['types'][name]
        if t.get('tag') is None and t['type'] not in UNIVERSAL and t['type'] not in (
                'CHOICE', 'ANY', 'ANY DEFINED BY'):
            # pure alias: T ::= U
            nid = self.named_type(mod, t['type'])
            self.named[key] = nid
            return nid
        nid = self.new(name)
        self.named[key] = nid
        self.build_into(nid, mod, t, name)
        return nid

    def type_node(self, mod, t, path):
        """Node id for an inline type spec (member type)."""
        if t.get('tag') is None and t['type'] not in UNIVERSAL and t['type'] not in (
                'CHOICE', 'ANY', 'ANY DEFINED BY'):
            return self.named_type(mod, t['type'])
        nid = self.new(path)
        self.build_into(nid, mod, t, path)
        return nid

    def build_into(self, nid, mod, t, path):
        tag = t.get('tag')
        if tag is not None:
            inner_t = dict(t)
            inner_t.pop('tag')
            inner = self.type_node(mod, inner_t, path)
            cls = {'APPLICATION': 'Application', 'UNIVERSAL': 'Universal', 'PRIVATE': 'Private'}.get(
                tag.get('class'), 'Context')
            kind = tag.get('kind')
            default = (self.p[mod].get('tags') or 'EXPLICIT')
            explicit = kind == 'EXPLICIT' or (kind is None and default == 'EXPLICIT')
            if self.is_untagged_choice_or_any(mod, inner_t):
                explicit = True
            self.nodes[nid][1] = 'Kind::Tagged { tag: Tag::new(Class::%s, %d), explicit: %s, inner: %d }' % (
                cls, tag['number'], 'true' if explicit else 'false', inner)
            self.meta[nid] = ('tag', cls, tag['number'])
            return
        typ = t['type']
        if typ in UNIVERSAL:
            self.meta[nid] = ('univ', UNIVERSAL[typ])
        if typ in ('SEQUENCE', 'SET'):
            fields = []
            for m in t.get('members') or []:
                if m is None or m == '...' or isinstance(m, list):
                    continue
                fty = self.type_node(mod, m, '%s.%s' % (path, m['name']))
                opt = bool(m.get('optional'))
                dflt = 'None'
                if 'default' in m:
                    dflt = 'Some(%s)' % self.default(mod, m, m['default'])
                fields.append('Field { name: %s, ty: %d, optional: %s, default: %s }' % (
                    rs(m['name']), fty, 'true' if opt or 'default' in m else 'false', dflt))
            self.nodes[nid][1] = 'Kind::%s(&[%s])' % ('Sequence' if typ == 'SEQUENCE' else 'Set', ', '.join(fields))
        elif typ in ('SEQUENCE OF', 'SET OF'):
            el = self.type_node(mod, t['element'], path + '[]')
            self.nodes[nid][1] = 'Kind::%s(%d)' % ('SequenceOf' if typ == 'SEQUENCE OF' else 'SetOf', el)
        elif typ == 'CHOICE':
            alts = []
            for m in t.get('members') or []:
                if m is None or m == '...' or isinstance(m, list):
                    continue
                aty = self.type_node(mod, m, '%s.%s' % (path, m['name']))
                alts.append('Alt { name: %s, ty: %d }' % (rs(m['name']), aty))
            self.nodes[nid][1] = 'Kind::Choice(&[%s])' % ', '.join(alts)
            self.meta[nid] = ('choice', [int(a.split('ty: ')[1].rstrip(' }')) for a in alts])
        elif typ in ('ANY', 'ANY DEFINED BY'):
            self.nodes[nid][1] = 'Kind::Any'
            self.meta[nid] = ('any',)
        elif typ == 'INTEGER':
            nn = t.get('named-numbers') or {}
            self.nodes[nid][1] = 'Kind::Integer(&[%s])' % ', '.join(
                '(%s, %d)' % (rs(k), v) for k, v in nn.items())
        elif typ == 'ENUMERATED':
            vals, nxt = [], 0
            for v in t['values']:
                if v is None or v == '...':
                    continue
                if isinstance(v, tuple) or isinstance(v, list):
                    vals.append((v[0], int(v[1])))
                    nxt = int(v[1]) + 1
                else:
                    vals.append((v, nxt))
                    nxt += 1
            self.nodes[nid][1] = 'Kind::Enumerated(&[%s])' % ', '.join('(%s, %d)' % (rs(k), v) for k, v in vals)
        elif typ == 'BIT STRING':
            nb = t.get('named-bits') or []
            self.nodes[nid][1] = 'Kind::BitString(&[%s])' % ', '.join('(%s, %d)' % (rs(k), int(v)) for k, v in nb)
        elif typ == 'BOOLEAN':
            self.nodes[nid][1] = 'Kind::Boolean'
        elif typ == 'NULL':
            self.nodes[nid][1] = 'Kind::Null'
        elif typ == 'OCTET STRING':
            self.nodes[nid][1] = 'Kind::OctetString'
        elif typ == 'OBJECT IDENTIFIER':
            self.nodes[nid][1] = 'Kind::ObjectIdentifier'
        elif typ in STRINGS:
            self.nodes[nid][1] = 'Kind::String(StringKind::%s)' % typ.replace(' ', '')
        elif typ in ('GeneralizedTime', 'UTCTime'):
            self.nodes[nid][1] = 'Kind::Time(TimeKind::%s)' % typ
        else:
            raise ValueError('%s: unsupported type %s' % (path, typ))

    def first_tags(self, nid, seen=()):
        """(sorted tag codes a value of this node can start with, open?)"""
        m = self.meta[nid]
        if m[0] == 'tag':
            return [tag_code(m[1], m[2])], False
        if m[0] == 'univ':
            return [tag_code('Universal', m[1])], False
        if m[0] == 'any':
            return [], True
        if m[0] == 'choice':
            tags, open_ = set(), False
            for a in m[1]:
                if a in seen:
                    continue
                t, o = self.first_tags(a, seen + (nid,))
                tags.update(t)
                open_ = open_ or o
            return sorted(tags), open_
        return [], False

    def default(self, mod, m, d):
        _, spec = self.spec_of(mod, dict(m, tag=None) if False else {k: v for k, v in m.items() if k != 'tag'})
        typ = spec['type']
        if typ == 'BOOLEAN':
            return 'DefaultValue::Boolean(%s)' % ('true' if d else 'false')
        if typ == 'INTEGER':
            return 'DefaultValue::Integer(%d)' % int(d)
        if typ == 'ENUMERATED':
            vals, nxt = {}, 0
            for v in spec['values']:
                if v is None or v == '...':
                    continue
                if isinstance(v, (tuple, list)):
                    vals[v[0]] = int(v[1])
                    nxt = int(v[1]) + 1
                else:
                    vals[v] = nxt
                    nxt += 1
            return 'DefaultValue::Enumerated(%d)' % vals[d]
        if typ == 'BIT STRING':
            named = {k: int(v) for k, v in spec.get('named-bits') or []}
            bits = sorted(named[x] for x in d)
            return 'DefaultValue::Bits(&[%s])' % ', '.join(str(b) for b in bits)
        raise ValueError('unsupported DEFAULT of %s' % typ)


CLASS_BITS = {'Universal': 0, 'Application': 1, 'Context': 2, 'Private': 3}


def tag_code(cls, number):
    """A tag as one integer: class in bits 32-33, number below (schema::Tag::code)."""
    return (CLASS_BITS[cls] << 32) | number


def rs(s):
    return '"%s"' % s


def operations(objects):
    """[(code, name, argument type, result type or None, module)] from the OPERATION objects."""
    ops = []
    for mod, name, kind, body in objects:
        if kind != 'OPERATION':
            continue
        body = re.sub(r'--[^\n]*', '', body)
        code = re.search(r'\bCODE\s+local\s*:\s*(-?\d+)', body)
        arg = re.search(r'\bARGUMENT\s+([A-Za-z][A-Za-z0-9-]*)', body)
        res = re.search(r'\bRESULT\s+([A-Za-z][A-Za-z0-9-]*)', body)
        ops.append((int(code.group(1)), name, arg.group(1), res.group(1) if res else None, mod))
    return sorted(ops)


def main():
    parsed, objects, opaque, files = load()
    g = Gen(parsed, opaque, files)
    ops = operations(objects)
    roots = {}
    # every type of every module, so the table is complete and the typed layer can name any
    for mod in sorted(parsed):
        for name in sorted(parsed[mod]['types']):
            roots[(mod, name)] = g.named_type(mod, name)
    op_rows = []
    for code, name, arg, res, mod in ops:
        a = g.named_type(mod, arg)
        r = g.named_type(mod, res) if res else None
        op_rows.append('OperationDef { code: %d, name: %s, argument: %d, result: %s }' % (
            code, rs(name), a, 'Some(%d)' % r if r is not None else 'None'))
    errs = []
    for mod, name, kind, body in objects:
        if kind == 'ERROR':
            code = re.search(r'\bCODE\s+local\s*:\s*(-?\d+)', body)
            par = re.search(r'\bPARAMETER\s+([A-Za-z][A-Za-z0-9-]*)', body)
            errs.append('ErrorDef { code: %s, name: %s, parameter: %d }' % (
                code.group(1), rs(name), g.named_type(mod, par.group(1))))
    # constant names for every named type; collisions across modules get a module suffix
    by_name = {}
    for (mod, name), nid in roots.items():
        by_name.setdefault(name, []).append((mod, nid))
    consts = []
    for name, lst in sorted(by_name.items()):
        ids = sorted(set(nid for _, nid in lst))
        for mod, nid in sorted(lst):
            cname = re.sub(r'[^A-Za-z0-9]', '_', name)
            if len(ids) > 1:
                cname += '__' + re.sub(r'[^A-Za-z0-9]', '_', mod.replace('CSTA-', ''))
            consts.append((cname, nid, mod))
    seen = set()
    out = ['// @generated by codecs/csta/gen/gen_schema.py from codecs/csta/asn1/*.asn1 and',
           '// wireshark-acse.asn (ECMA-285 4th edition modules; X.227bis ACSE-1). Do not edit.',
           '#![allow(non_upper_case_globals, clippy::all)]',
           'use super::{Alt, Class, DefaultValue, ErrorDef, Field, Kind, OperationDef, StringKind, Tag, TimeKind, TypeDef, TypeId};',
           '',
           '/// Every type node; `TypeId` indexes this table.',
           'pub static TYPES: [TypeDef; %d] = [' % len(g.nodes)]
    for i, (name, kind) in enumerate(g.nodes):
        assert kind is not None, name
        tags, open_ = g.first_tags(i)
        out.append('    /* %d */ TypeDef { name: %s, kind: %s, first: &[%s], open: %s },' % (
            i, rs(name), kind, ', '.join('0x%x' % t for t in tags), 'true' if open_ else 'false'))
    out.append('];')
    out.append('')
    out.append('/// ECMA-285 operations: `CODE local` value, ASN.1 value name, argument and result types.')
    out.append('pub static OPERATIONS: [OperationDef; %d] = [' % len(op_rows))
    out += ['    %s,' % r for r in op_rows]
    out.append('];')
    out.append('')
    out.append('/// ECMA-285 errors (error-definition.asn1).')
    out.append('pub static ERRORS: [ErrorDef; %d] = [' % len(errs))
    out += ['    %s,' % r for r in errs]
    out.append('];')
    out.append('')
    out.append('/// Named types (ASN.1 type name; `__Module` where two modules use one name).')
    out.append('pub mod ty {')
    out.append('    use super::TypeId;')
    for cname, nid, mod in consts:
        if cname in seen:
            continue
        seen.add(cname)
        out.append('    /// `%s`' % mod)
        out.append('    pub const %s: TypeId = %d;' % (cname, nid))
    out.append('}')
    text = '\n'.join(out) + '\n'
    if '--check' in sys.argv:
        old = open(OUT).read() if os.path.exists(OUT) else ''
        fmt = subprocess.run(['rustfmt', '--edition', '2021', '--emit', 'stdout'], input=text,
                             capture_output=True, text=True).stdout
        sys.exit(0 if old in (text, fmt) else 1)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    open(OUT, 'w').write(text)
    print('%d type nodes, %d operations, %d errors -> %s' % (len(g.nodes), len(op_rows), len(errs), OUT))


if __name__ == '__main__':
    main()
