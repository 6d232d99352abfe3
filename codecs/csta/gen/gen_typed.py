#!/usr/bin/env python3
"""Generate the typed_struct! invocations of the model crate (codecs/model/src/events/generated.rs
and codecs/model/src/ops/generated.rs) from the ASN.1 modules in codecs/csta/asn1/.

    python3 codecs/csta/gen/gen_typed.py          # rewrites the generated files
    python3 codecs/csta/gen/gen_typed.py --check  # exits 1 when a committed file is stale

Needs asn1tools==0.169.0 (through gen_schema.load(): the same edited parse as the schema).

What comes from the ASN.1: for every component the table below selects, whether it is
required or optional (OPTIONAL or DEFAULT), its place (component order), its Rust field
name (the ASN.1 identifier in snake case) and its Rust type (from the ASN.1 type name by
TYPEMAP: one Rust view per ECMA-285 type). What carries judgement, and stays written here:
which components a struct types at all (the others are kept in its `rest`), the struct
docs, the few field notes, names and types that differ from the rule (inline types).
The hand-written parts of events.rs and ops.rs (enums, dispatch, impls) are not generated.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_schema  # noqa: E402

MODEL = os.path.join(HERE, '..', '..', 'model', 'src')

# ECMA-285 type name -> the Rust type of its typed view (codecs/model/src/types.rs and
# ops.rs); `Value` for the rarely used ones, kept as the decoded tree.
TYPEMAP = {
    'AccountInfo': 'Bytes', 'AgentID': 'Bytes', 'AgentPassword': 'Bytes',
    'AgentState': 'AgentState', 'AgentStateCondition': 'Value',
    'AgentStateList': 'Vec<AgentStateEntry>', 'AssociatedCalledDeviceID': 'Party',
    'AssociatedCallingDeviceID': 'Party', 'AuthCode': 'Bytes', 'AutoOriginate': 'AutoOriginate',
    'BOOLEAN': 'bool', 'CSTACommonArguments': 'CommonArguments', 'CSTAPrivateData': 'PrivateData',
    'CSTASecurityData': 'Value', 'CallCharacteristics': 'Value', 'CallLinkageData': 'Value',
    'CallLinkageDataList': 'Value', 'CallOrigination': 'Value', 'CallState': 'Value',
    'CalledDeviceID': 'Party', 'CallingDeviceID': 'Party', 'ChargingInfo': 'Value',
    'ConnectionID': 'ConnectionId', 'ConnectionInformation': 'Value',
    'ConnectionList': 'ConnectionList', 'ConsultOptions': 'ConsultOptions',
    'CorrelatorData': 'Bytes', 'DeviceID': 'DeviceId', 'DeviceMediaInfoList': 'Value',
    'DigitMode': 'DigitMode', 'EscapeRegisterID': 'Bytes', 'EventCause': 'EventCause',
    'ForwardDefault': 'Value', 'ForwardingType': 'Value', 'IA5String': 'String',
    'INTEGER': 'i64', 'LanguagePreferences': 'Value',
    'LocalConnectionState': 'LocalConnectionState', 'MediaCallCharacteristics': 'Value',
    'MonitorCrossRefID': 'MonitorCrossRefId', 'MonitorFilter': 'Value',
    'MonitorMediaClass': 'Value', 'MonitorObject': 'CstaObject', 'MonitorType': 'MonitorType',
    'NetworkCalledDeviceID': 'Party', 'NetworkCallingDeviceID': 'Party',
    'NetworkCapability': 'Value', 'PendingAgentState': 'PendingAgentState',
    'PresenceState': 'Value', 'PrimaryOrSecondaryCall': 'Value', 'ProgressIndicator': 'Value',
    'RedirectionDeviceID': 'Redirection', 'ReqAgentState': 'ReqAgentState',
    'RequestTypes': 'Value', 'ServicesPermitted': 'Value', 'StatusFilter': 'Value',
    'SubjectDeviceID': 'Party', 'ServiceCrossRefID': 'Bytes',
    'SnapshotDeviceData': 'Vec<SnapshotDeviceResponseInfo>', 'SubjectOfCall': 'Value', 'SysStatRegisterID': 'Bytes',
    'SystemStatus': 'SystemStatus', 'TelephonyTone': 'Value', 'UserData': 'Bytes',
}


class S:
    """One typed struct: its name, doc lines, the ASN.1 components it types (space
    separated), and the exceptions to the rules (ty: the ASN.1 type when it is not the
    struct's name; names/types: Rust field name/type by component; notes: doc or attribute
    lines before a field)."""

    def __init__(self, name, doc, fields, ty=None, names=None, types=None, notes=None):
        self.name, self.doc, self.fields = name, doc, fields.split()
        self.ty = ty or name
        self.names, self.types, self.notes = names or {}, types or {}, notes or {}


def snake(n):
    return re.sub(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])', '_', n).lower()


def load_asn1():
    parsed, _objects, _opaque, _files = gen_schema.load()
    return parsed


def asn1_type(parsed, ty):
    """The ASN.1 type definition of a `ty::` constant name (`Name` or `Name__Module`)."""
    name, _, modkey = ty.partition('__')
    found = [(mod, m['types'][name]) for mod, m in parsed.items() if name in m['types']
             and (not modkey or re.sub(r'[^A-Za-z0-9]', '_', mod.replace('CSTA-', '')) == modkey)]
    if len(found) != 1:
        raise KeyError('%s: %d definitions' % (ty, len(found)))
    return found[0][1]


def members(parsed, ty):
    return [m for m in asn1_type(parsed, ty).get('members', []) if m]


def member_type(parsed, ty, component):
    for m in members(parsed, ty):
        if m['name'] == component:
            return m['type']
    raise KeyError('%s has no component %s' % (ty, component))


def render(parsed, s):
    out = ['typed_struct! {']
    out += ['    ' + (d if d.startswith('#[') else ('/// ' + d if d else '///')) for d in s.doc]
    out.append('    pub struct %s = ty::%s;' % (s.name, s.ty))
    groups = {True: [], False: []}
    order = [m['name'] for m in members(parsed, s.ty)]
    mems = {m['name']: m for m in members(parsed, s.ty)}
    for f in s.fields:
        if f not in mems:
            raise KeyError('%s has no component %s' % (s.ty, f))
    for f in sorted(s.fields, key=order.index):
        m = mems[f]
        opt = bool(m.get('optional')) or 'default' in m
        rt = s.types.get(f) or TYPEMAP.get(m['type'])
        if rt is None:
            raise KeyError('%s.%s: no Rust type for %s' % (s.ty, f, m['type']))
        lines = ['        ' + n for n in s.notes.get(f, [])]
        lines.append('        %s: %s = "%s",' % (s.names.get(f, snake(f)), rt, f))
        groups[opt] += lines
    if groups[False]:
        out += ['    required {'] + groups[False] + ['    }']
    else:
        out += ['    required {}']
    if groups[True]:
        out += ['    optional {'] + groups[True] + ['    }']
    else:
        out += ['    optional {}']
    out.append('}')
    return '\n'.join(out)


def header(what):
    return ('// @generated by codecs/csta/gen/gen_typed.py from codecs/csta/asn1/*.asn1 and its table\n'
            '// of typed components. Do not edit.\n'
            '//! The typed %s structs (one `typed_struct!` each).\n\n'
            'use super::*;\n' % what)


def main():
    from gen_typed_table import EVENTS, OPS
    parsed = load_asn1()
    stale = False
    for what, table, path in (('event', EVENTS, 'events/generated.rs'),
                              ('argument and result', OPS, 'ops/generated.rs')):
        text = header(what) + '\n' + '\n\n'.join(render(parsed, s) for s in table) + '\n'
        out = os.path.join(MODEL, path)
        fmt = subprocess.run(['rustfmt', '--edition', '2021', '--emit', 'stdout'], input=text,
                             capture_output=True, text=True).stdout or text
        if '--check' in sys.argv:
            old = open(out).read() if os.path.exists(out) else ''
            if old not in (text, fmt):
                print('stale: %s' % out)
                stale = True
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        open(out, 'w').write(fmt)
        print('%d structs -> %s' % (len(table), out))
    sys.exit(1 if stale else 0)


if __name__ == '__main__':
    main()
