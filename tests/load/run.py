#!/usr/bin/env python3
"""Independent load tool for ctigate: plays the switch (CSTA Phase III, BER) and N NDJSON clients.

    PY tests/load/run.py [--bin target/release/ctigate] [--peer ../shared/spec/cstapeer.py]
                         [--rate 100000] [--clients 1000] [--seconds 20] [--warmup 0] [--drain 2]
                         [--quick] [--monitor-devices N] [--json] [--keep DIR]

PY is Python 3.11 with asn1tools 0.169.0 (e.g. .venv-oracle/bin/python). Three processes:
this one (orchestration, report), the switch (its own process: association, answers,
event generator, PBX socket measurements) and the clients (one process, one epoll loop
over every NDJSON connection). ctigate is started as a child (`ctigate run --config FILE`).
See tests/load/README.md for what is measured, how, and what is assumed.

Exit status: 0 every check passed, 1 a check failed (or the run could not be completed),
2 usage error, 130 interrupted. The last line is `N passed, M failed`.
"""
import argparse
import array
import bisect
import importlib.util
import json
import math
import multiprocessing as mp
import os
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# ../shared/spec beside the repository (as CI lays it out)
DEFAULT_PEER = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'spec', 'cstapeer.py'))
NS = 1_000_000_000
MS = 1_000_000
CLK_TCK = os.sysconf('SC_CLK_TCK')

CID_BASE = 0x10000000            # callID = 4 octets, CID_BASE + call number (first octet 0x10..)
IID_MIN, IID_SPAN = 128, 32640   # event invokeIds 128..32767: always 2 octets in BER
XREF_BASE = 0x0A000001           # monitorCrossRefIDs: 4 octets, fresh per MonitorStart
KINDS = ('delivered', 'established', 'connectionCleared')
NDJSON_OF = ('call.offering', 'call.connected', 'call.released')
STALL_NS = 10 * MS
OP_MONITOR_START, OP_MONITOR_STOP, OP_SNAPSHOT_DEVICE, OP_SYSTEM_STATUS = 71, 73, 74, 211


# ======================================================================================
# BER helpers (definite length). Every answer built here is checked against cstapeer/oracle
# (asn1tools) at start, byte for byte.
# ======================================================================================
def ber_int(v):
    n = 1
    while not -(1 << (8 * n - 1)) <= v < (1 << (8 * n - 1)):
        n += 1
    return v.to_bytes(n, 'big', signed=True)


def framed(pdu):
    return len(pdu).to_bytes(2, 'big') + pdu


_IID = {}


def iid_tlv(iid):
    """The INTEGER TLV of a ROSE invokeId (cached: ctigate's invokeIds repeat)."""
    b = _IID.get(iid)
    if b is None:
        v = ber_int(iid)
        b = _IID[iid] = b'\x02' + bytes((len(v),)) + v
    return b


def frame_pdu(tag, body):
    """Framed APDU with a short-form length (every answer here is < 128 octets)."""
    return bytes((0, len(body) + 2, tag, len(body))) + body


# The answers, as fixed octets around the invokeId (checked against asn1tools at start):
#   returnResult { invokeId, result { opcode 71, MonitorStartResult { crossRefIdentifier } } }
#   returnResult { invokeId, result { opcode 74, SnapshotDeviceResult { snapshotData {} } } }
#   returnResult { invokeId, result { opcode 211 | 73, noData } }
#   returnError  { invokeId, errcode local 1 (universalFailure), operation serviceNotSupported (50) }
MS_TAIL = bytes.fromhex('300b020147300655' '04')
SNAP_EMPTY_TAIL = bytes.fromhex('300702014a30027600')
NO_DATA_TAIL = {211: bytes.fromhex('3006020200d30500'), 73: bytes.fromhex('300502014905' '00')}
ERR_TAIL = bytes.fromhex('020101a0030a0132')


def ans_monitor_start(iid, xref):
    return frame_pdu(0xa2, iid_tlv(iid) + MS_TAIL + xref)


def ans_snapshot_empty(iid):
    return frame_pdu(0xa2, iid_tlv(iid) + SNAP_EMPTY_TAIL)


def ans_no_data(iid, op):
    return frame_pdu(0xa2, iid_tlv(iid) + NO_DATA_TAIL[op])


def ans_error(iid):
    return frame_pdu(0xa3, iid_tlv(iid) + ERR_TAIL)


def device_numbers(n):
    """n device numbers of one width: 20000.. (5 digits) or wider when n needs it."""
    width = max(5, len(str(n)) + 1)
    base = 2 * 10 ** (width - 1)
    return [str(base + i) for i in range(n)]


def caller_of(i):
    return '0891%06d' % (i % 1000000)   # an external (10-digit) calling number per device


def load_peer(path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location('cstapeer', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ======================================================================================
# PBX socket: the peer's unread bytes (sock_diag), our unsent bytes (SIOCOUTQNSD)
# ======================================================================================
class SockDiag:
    """rqueue of one TCP socket (bytes received by the kernel, not yet read by its owner),
    looked up by its 4-tuple with NETLINK_SOCK_DIAG (as `ss` does; no privilege needed)."""

    def __init__(self, local, remote):
        self.nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
        src = socket.inet_aton(local[0]).ljust(16, b'\0')
        dst = socket.inet_aton(remote[0]).ljust(16, b'\0')
        req = (struct.pack('=BBBBI', socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xffffffff)
               + struct.pack('>HH', local[1], remote[1]) + src + dst + struct.pack('=III', 0, 0xffffffff, 0xffffffff))
        self.msg = struct.pack('=IHHII', 16 + len(req), 20, 1, 1, 0) + req

    def rqueue(self):
        self.nl.send(self.msg)
        d = self.nl.recv(8192)
        if struct.unpack_from('=H', d, 4)[0] != 20:
            return None
        return struct.unpack_from('=I', d, 16 + 56)[0]


SIOCOUTQNSD = 0x894B


def unsent(sock):
    """Octets in our send queue not transmitted yet (SIOCOUTQNSD). Transmitted but unacknowledged
    octets are not counted: on loopback they are in the peer's receive queue (its rqueue) or read,
    and the peer may delay its ACK for tens of milliseconds after reading them."""
    import fcntl
    return struct.unpack('i', fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, b'\0\0\0\0'))[0]


# ======================================================================================
# The switch (own process)
# ======================================================================================
class Switch:
    def __init__(self, ctl, cfg, shared):
        self.ctl, self.cfg, self.shared = ctl, cfg, shared
        self.peer = load_peer(cfg['peer'])
        self.peer.db()
        self.op_name = dict(self.peer.OP_NAME)
        self.ops = {}                      # operation name -> invokes received
        self.pdus = {}                     # other PDU kinds received (returnResult, reject, acse ...)
        self.samples = []                  # notable PDUs (hex), at most 20
        self.xref_of, self.next_xref, self.remonitors = {}, XREF_BASE, 0
        self.mon_done, self.snap_done = set(), set()
        self.expect = cfg['expect_devices']
        self.t_all_mon = self.t_all_snap = None
        self.fast_checked = {}             # opcode -> fast-path parses re-checked with asn1tools
        self.fast_mismatch = []
        self.to_check = []                 # fast-path parses waiting to be re-checked with asn1tools
        self.check_queued = {}
        self.snap_calls = 0                # SnapshotDevice answered with the device's live call
        self.dev_index = {}
        self.slow_path = 0
        self.answer_ns = array.array('q')  # per answered invoke: read -> answer handed to the kernel
        self.pending_answers = []          # (t_read, n) answers still in outbuf
        self.inbuf, self.outbuf = bytearray(), bytearray()
        self.cum_sent, self.log_t, self.log_cum = 0, array.array('q'), array.array('q')
        self.blocked_since, self.blocked_max, self.stalls, self.blocked_hist = None, 0, [], [0, 0, 0, 0]
        self.unread_max, self.unread_max_at, self.unread_ge10, self.unread_episodes = 0, 0, 0, 0
        self.unread_prev_ge10, self.unread_samples, self.unread_err = False, 0, None
        self.rq_max = 0
        self.unread_by_sec = {}             # second of the load -> worst unread age
        self.unread_episodes_load = 0       # episodes >= 10 ms from the load's start on
        self.unread_list = []               # episodes >= 10 ms: [start, worst age, rqueue, unsent, octets unread]
        self.generating, self.gen = False, None
        self.closed, self.stop = False, False
        self.verify = self.verify_answers()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(('127.0.0.1', 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]

    # ---- start-up checks ------------------------------------------------------------
    def verify_answers(self):
        """Every hand-built answer, byte-identical to cstapeer.encode (asn1tools), for invokeIds of
        1 to 4 octets."""
        enc, n = self.peer.encode, 0
        for iid in (0, 1, 127, 128, 255, 256, 32767, 32768, 65535, 65536, 8388607, 8388608):
            x = (XREF_BASE + iid).to_bytes(4, 'big')
            pairs = (
                (ans_monitor_start(iid, x), {'returnResult': {'invokeId': iid, 'opcode': 71, 'result': {'crossRefIdentifier': {'$hex': x.hex()}}}}),
                (ans_snapshot_empty(iid), {'returnResult': {'invokeId': iid, 'opcode': 74, 'result': {
                    'crossRefIDorSnapshotData': {'$choice': 'snapshotData', '$value': []}}}}),
                (ans_no_data(iid, 211), {'returnResult': {'invokeId': iid, 'opcode': 211, 'result': self.peer.NO_DATA}}),
                (ans_no_data(iid, 73), {'returnResult': {'invokeId': iid, 'opcode': 73, 'result': self.peer.NO_DATA}}),
                (ans_error(iid), {'returnError': {'invokeId': iid, 'errcode': 1, 'parameter': {
                    '$choice': 'operation', '$value': 'serviceNotSupported'}}}))
            for mine, apdu in pairs:
                if mine != framed(enc(apdu)):
                    raise RuntimeError('answer encoding differs from asn1tools: %s: %s vs %s' % (apdu, mine.hex(), enc(apdu).hex()))
                n += 1
        return {'answers_checked': n}

    def build_templates(self, devices, xrefs):
        """Per event kind: one asn1tools encoding with marker values, split into per-device pieces
        (head, middle, tail) around the invokeId (2 octets) and the callID (4 octets)."""
        P = self.peer
        w = len(devices[0])
        assert all(len(d) == w for d in devices)
        DEV, CALLER = b'Q' * w, b'Z' * 10
        IIDM, CIDM, XM = 0x7a5b, bytes.fromhex('c1d0c1d0'), bytes.fromhex('deadbeef')
        self.tmpl = []
        for kind in KINDS:
            apdu = self.event_apdu(kind, IIDM, XM.hex(), CIDM.hex(), DEV.decode(), CALLER.decode())
            f = framed(P.encode(apdu))
            assert f[2] == 0xa1 and f.count(b'\x02\x02\x7a\x5b') == 1 and f.count(b'\x55\x04' + XM) == 1
            assert f.count(b'\x80\x04' + CIDM) == 1
            assert f.count(DEV) == (2 if kind == 'connectionCleared' else 3) and f.count(CALLER) == (0 if kind == 'connectionCleared' else 1)
            ip = f.index(b'\x02\x02\x7a\x5b') + 2
            cp = f.index(b'\x80\x04' + CIDM) + 2
            assert ip < f.index(XM) < cp
            head, mid, tail = f[:ip], f[ip + 2:cp], f[cp + 4:]
            per = []
            for i, d in enumerate(devices):
                m = mid.replace(XM, xrefs[i]).replace(DEV, d.encode()).replace(CALLER, caller_of(i).encode())
                t = tail.replace(DEV, d.encode()).replace(CALLER, caller_of(i).encode())
                per.append((m, t))
            self.tmpl.append((head, per))
        self.iidb = [(IID_MIN + k).to_bytes(2, 'big') for k in range(IID_SPAN)]

    def event_apdu(self, kind, iid, xref_hex, cid_hex, dev, caller):
        P = self.peer
        if kind == 'delivered':
            info = P.event_info('delivered', call=cid_hex, calling=caller, called=dev, state='alerting')
        elif kind == 'established':
            info = P.event_info('established', call=cid_hex, calling=caller, called=dev, state='connected')
        else:
            info = P.event_info('connectionCleared', call=cid_hex, device=dev, state='null')
        return {'invoke': {'invokeId': iid, 'opcode': 21, 'argument': {
            'crossRefIdentifier': {'$hex': xref_hex}, 'eventSpecificInfo': info}}}

    def build(self, e0, e1):
        """The frames of events e0..e1-1 (see README: event e -> device e % D, phase ...)."""
        D, tmpl, iidb = self.gen['D'], self.tmpl, self.iidb
        parts = []
        ap = parts.extend
        for e in range(e0, e1):
            d = e % D
            j = e // D
            k = j % 3
            head, per = tmpl[k]
            m, t = per[d]
            ap((head, iidb[e % IID_SPAN], m, (CID_BASE + (j // 3) * D + d).to_bytes(4, 'big'), t))
        return b''.join(parts)

    def expected(self, e):
        g = self.gen
        D = g['D']
        d, j = e % D, e // D
        return self.event_apdu(KINDS[j % 3], IID_MIN + e % IID_SPAN, g['xrefs'][d].hex(),
                               (CID_BASE + (j // 3) * D + d).to_bytes(4, 'big').hex(), g['devices'][d], caller_of(d))

    def verify_events(self):
        """Frames from the patched templates == asn1tools encoding of the intended values, byte for
        byte, for a sample of events (first rounds, wrap of the invokeId, last events); a few are also
        decoded and compared field by field."""
        g = self.gen
        D, total = g['D'], g['total']
        es = set(range(min(total, 3 * D + 3)))
        es |= {e for e in range(IID_SPAN - 3, IID_SPAN + 3) if e < total}
        es |= set(range(max(0, total - 3 * D - 3), total))
        es = sorted(es)
        if len(es) > 400:
            step = len(es) // 400 + 1
            es = sorted(set(es[::step]) | set(es[:8]) | set(es[-8:]))
        n = dec = 0
        for e in es:
            f = self.build(e, e + 1)
            want = framed(self.peer.encode(self.expected(e)))
            if f != want:
                raise RuntimeError('event %d: template frame %s != asn1tools %s' % (e, f.hex(), want.hex()))
            n += 1
            if n <= 6 or e == es[-1]:
                got = self.peer.decode(f[2:])
                exp = self.expected(e)
                if got != exp:
                    raise RuntimeError('event %d decodes to %s, expected %s' % (e, got, exp))
                dec += 1
        # a batch is the concatenation of the single frames
        if total >= 10 and self.build(0, 10) != b''.join(self.build(e, e + 1) for e in range(10)):
            raise RuntimeError('batch != concatenated frames')
        return {'events_checked_bytes': n, 'events_checked_decoded': dec}

    # ---- socket ---------------------------------------------------------------------
    def recv_frame_blocking(self, timeout):
        end = time.monotonic() + timeout

        def recvn(n):
            b = b''
            while len(b) < n:
                self.sock.settimeout(max(0.01, end - time.monotonic()))
                c = self.sock.recv(n - len(b))
                if not c:
                    raise ConnectionError('ctigate closed the connection before associating')
                b += c
            return b
        n = struct.unpack('>H', recvn(2))[0]
        return recvn(n)

    def associate(self):
        self.srv.settimeout(30)
        self.sock, addr = self.srv.accept()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ctl.send(('connected', addr))
        if self.cfg['hold']:
            msg = self.ctl.recv()
            if msg[0] != 'associate':
                raise RuntimeError('unexpected control message %r' % (msg,))
        data = self.recv_frame_blocking(10)
        apdu = self.peer.decode(data)
        aarq = apdu.get('acse', {}).get('$value')
        if apdu.get('acse', {}).get('$choice') != 'aarq':
            raise RuntimeError('first PDU is not an AARQ: %s' % data.hex())
        self.sock.sendall(framed(self.peer.encode(self.peer.aare(aarq, True))))
        self.t_assoc = time.monotonic_ns()
        self.context = aarq.get('aSO-context-name')
        self.sock.setblocking(False)
        try:
            self.diag = SockDiag(addr, self.sock.getsockname())   # ctigate's end of the connection
            self.diag.rqueue()
        except OSError as e:
            self.diag, self.unread_err = None, 'sock_diag: %s' % e
        self.ctl.send(('associated', self.t_assoc, self.context))

    def flush(self, now):
        ob = self.outbuf
        while ob:
            try:
                n = self.sock.send(ob)
            except BlockingIOError:
                n = 0
            except OSError:
                self.closed = True
                return
            if n:
                self.cum_sent += n
                self.log_t.append(now)
                self.log_cum.append(self.cum_sent)
                del ob[:n]
            if ob:
                if self.blocked_since is None:
                    self.blocked_since = now
                return
        if self.blocked_since is not None:
            self.note_blocked(now - self.blocked_since, now)
            self.blocked_since = None
        if self.pending_answers:
            for t_read, n in self.pending_answers:
                for _ in range(n):
                    self.answer_ns.append(now - t_read)
            self.pending_answers = []

    def note_blocked(self, dur, now):
        self.blocked_max = max(self.blocked_max, dur)
        self.blocked_hist[0 if dur < MS else 1 if dur < 5 * MS else 2 if dur < STALL_NS else 3] += 1
        if dur >= STALL_NS:
            self.stalls.append((self.blocked_since, dur))

    def sample_unread(self, now):
        if self.diag is None:
            return
        try:
            rq = self.diag.rqueue()
            oq = unsent(self.sock)
        except OSError as e:
            self.diag, self.unread_err = None, 'sock_diag: %s' % e
            return
        if rq is None:
            return
        self.unread_samples += 1
        self.rq_max = max(self.rq_max, rq)
        read = self.cum_sent - oq - rq          # octets ctigate has read
        age = 0
        if read < self.cum_sent:
            i = bisect.bisect_right(self.log_cum, read)
            if i < len(self.log_t):
                age = now - self.log_t[i]
        if age > self.unread_max:
            self.unread_max, self.unread_max_at = age, now
        if self.gen is not None and now >= self.gen['t0']:
            sec = (now - self.gen['t0']) // NS
            if age > self.unread_by_sec.get(sec, -1):
                self.unread_by_sec[sec] = age
        ge = age >= STALL_NS
        if ge:
            self.unread_ge10 += 1
            if not self.unread_prev_ge10:
                self.unread_episodes += 1
                if self.gen is not None and now >= self.gen['t0']:
                    self.unread_episodes_load += 1
                if len(self.unread_list) < 20:
                    self.unread_list.append([now, age, rq, oq, self.cum_sent - read])
            elif self.unread_list and self.unread_list[-1][1] < age:
                self.unread_list[-1][1:] = [age, rq, oq, self.cum_sent - read]
        self.unread_prev_ge10 = ge

    # ---- incoming PDUs --------------------------------------------------------------
    def on_data(self, data, t):
        buf = self.inbuf
        buf += data
        pos, n = 0, len(buf)
        answered = 0
        while n - pos >= 2:
            L = (buf[pos] << 8) | buf[pos + 1]
            if n - pos - 2 < L:
                break
            answered += self.on_frame(bytes(buf[pos + 2:pos + 2 + L]))
            pos += 2 + L
            if answered >= 16:            # a burst of requests: answer in groups of 16, not after the whole burst
                self.pending_answers.append((t, answered))
                answered = 0
                self.flush(time.monotonic_ns())
        del buf[:pos]
        if answered:
            self.pending_answers.append((t, answered))

    def count(self, d, k):
        d[k] = d.get(k, 0) + 1

    def sample(self, what, frame):
        if len(self.samples) < 20:
            self.samples.append('%s %s' % (what, frame.hex()[:400]))

    def on_frame(self, f):
        """Answer one frame; returns the number of answers queued (0 or 1)."""
        try:
            if f[0] != 0xa1 or f[1] >= 0x80 or f[2] != 0x02:
                raise ValueError              # not an invoke, or a long length: the slow path
            il = f[3]
            iid = int.from_bytes(f[4:4 + il], 'big', signed=True)
            p = 4 + il
            if f[p] != 0x02:
                raise ValueError              # linkedId, or a global opcode: the slow path
            ol = f[p + 1]
            op = int.from_bytes(f[p + 2:p + 2 + ol], 'big', signed=True)
            p += 2 + ol
            dev = None
            if op == OP_MONITOR_START or op == OP_SNAPSHOT_DEVICE:
                # MonitorStartArgument / SnapshotDeviceArgument: 30 L, DeviceID 30 L, dialingNumber 80 L
                if f[p] != 0x30 or f[p + 1] >= 0x80 or f[p + 2] != 0x30 or f[p + 3] >= 0x80 or f[p + 4] != 0x80 or f[p + 5] >= 0x80:
                    raise ValueError
                dev = f[p + 6:p + 6 + f[p + 5]].decode('ascii')
        except (ValueError, IndexError, UnicodeDecodeError):
            return self.slow(f)
        n = self.check_queued.get(op, 0)
        if n < 20:                            # re-parsed with asn1tools later (not on the answer path)
            self.check_queued[op] = n + 1
            self.to_check.append((f, op, iid, dev))
        return self.answer(iid, op, dev)

    def check_fast(self):
        """Prove the fast parse: the first 20 invokes of each operation decoded with asn1tools."""
        for f, op, iid, dev in self.to_check:
            self.fast_checked[op] = self.fast_checked.get(op, 0) + 1
            inv = self.peer.decode(f).get('invoke', {})
            sdev = self.device_of(op, inv.get('argument'))
            if (inv.get('invokeId'), inv.get('opcode'), sdev) != (iid, op, dev):
                self.fast_mismatch.append('%s: fast (%s, %s, %s) asn1tools (%s, %s, %s)' % (
                    f.hex(), iid, op, dev, inv.get('invokeId'), inv.get('opcode'), sdev))
        self.to_check = []

    def device_of(self, op, arg):
        try:
            if op == OP_MONITOR_START:
                mo = arg['monitorObject']
                return mo['$value']['deviceIdentifier']['$value'] if mo['$choice'] == 'deviceObject' else None
            if op == OP_SNAPSHOT_DEVICE:
                return arg['snapshotObject']['deviceIdentifier']['$value']
        except (KeyError, TypeError):
            return None
        return None

    def answer(self, iid, op, dev):
        name = self.op_name.get(op) or 'opcode %s' % op
        self.ops[name] = self.ops.get(name, 0) + 1
        if op == OP_MONITOR_START and dev is not None:
            x = self.next_xref.to_bytes(4, 'big')
            self.next_xref += 1
            if dev in self.xref_of:
                self.remonitors += 1
            self.xref_of[dev] = x
            self.outbuf += ans_monitor_start(iid, x)
            self.mon_done.add(dev)
            if self.t_all_mon is None and len(self.mon_done) >= self.expect:
                self.t_all_mon = time.monotonic_ns()
            return 1
        if op == OP_SNAPSHOT_DEVICE and dev is not None:
            live = self.live_call(dev) if self.gen is not None else None
            if live is None:
                self.outbuf += ans_snapshot_empty(iid)
            else:
                self.outbuf += self.snapshot_with_call(iid, dev, *live)
            self.snap_done.add(dev)
            if self.t_all_snap is None and len(self.snap_done) >= self.expect:
                self.t_all_snap = time.monotonic_ns()
            return 1
        if op == OP_SYSTEM_STATUS or op == OP_MONITOR_STOP:
            self.outbuf += ans_no_data(iid, op)
            return 1
        self.outbuf += ans_error(iid)
        return 1

    def live_call(self, dev):
        """The device's call in the generator's model (callID hex, this device's state) or None: a
        snapshot during the load tells the truth (delivered: alerting; established: connected)."""
        g = self.gen
        d = self.dev_index.get(dev)
        if d is None or g['sent'] <= d:
            return None
        D = g['D']
        j = (g['sent'] - 1 - d) // D            # the device's last event sent
        if j % 3 == 2:
            return None
        return (CID_BASE + (j // 3) * D + d).to_bytes(4, 'big').hex(), ('alerting', 'connected')[j % 3]

    def snapshot_with_call(self, iid, dev, cid_hex, state):
        self.snap_calls += 1
        info = {'connectionIdentifier': self.peer.conn(cid_hex, dev),
                'localCallState': {'$choice': 'compoundCallState', '$value': ['connected', state]}}
        return framed(self.peer.encode({'returnResult': {'invokeId': iid, 'opcode': OP_SNAPSHOT_DEVICE, 'result': {
            'crossRefIDorSnapshotData': {'$choice': 'snapshotData', '$value': [info]}}}}))

    def slow(self, f):
        self.slow_path += 1
        try:
            apdu = self.peer.decode(f)
        except Exception as e:  # undecodable: count and keep it
            self.count(self.pdus, 'undecodable')
            self.sample('undecodable (%s)' % e, f)
            return 0
        (kind, body), = apdu.items()
        if kind == 'invoke':
            op = body.get('opcode')
            return self.answer(body.get('invokeId'), op, self.device_of(op, body.get('argument')))
        if kind == 'acse':
            name = body.get('$choice')
            self.count(self.pdus, 'acse.' + name)
            self.sample('acse ' + name, f)
            if name == 'rlrq':
                self.outbuf += framed(self.peer.encode({'acse': {'$choice': 'rlre', '$value': {'reason': 0}}}))
            return 0
        self.count(self.pdus, kind)           # returnResult / returnError / reject: we invoke only events
        self.sample(kind, f)
        return 0

    # ---- control --------------------------------------------------------------------
    def on_ctl(self):
        msg = self.ctl.recv()
        if msg[0] == 'generate':
            _, devices, rate, total = msg
            missing = [d for d in devices if d not in self.xref_of]
            if missing:
                self.ctl.send(('error', 'no MonitorStart answered for %d devices, e.g. %s' % (len(missing), missing[:5])))
                return
            xrefs = [self.xref_of[d] for d in devices]
            self.check_fast()
            self.gen = {'devices': devices, 'xrefs': xrefs, 'D': len(devices), 'rate': rate, 'total': total, 'sent': 0}
            self.dev_index = {dv: i for i, dv in enumerate(devices)}
            self.build_templates(devices, xrefs)
            self.verify.update(self.verify_events())
            g = self.gen
            g['t0'] = time.monotonic_ns() + 2 * MS
            g.update(next_tick=g['t0'], sent=0, bt=array.array('q'), be=array.array('q'), slip_max=0, late=0, t_end=None)
            self.generating = True
            self.ctl.send(('generating', g['t0'], self.verify))
        elif msg[0] == 'status':
            self.ctl.send(('status', self.progress()))
        elif msg[0] == 'stop':
            self.stop = True

    def progress(self):
        return {'t_all_monitor_start': self.t_all_mon, 't_all_snapshot': self.t_all_snap,
                'monitor_started': len(self.mon_done), 'snapshotted': len(self.snap_done), 'ops': dict(self.ops)}

    def tick(self, now):
        g = self.gen
        R, t0, total = g['rate'], g['t0'], g['total']
        due = min(total, (now - t0) * R // NS) if now >= t0 else 0
        sent = g['sent']
        if due > sent:
            data = self.build(sent, due)
            t = time.monotonic_ns()
            g['bt'].append(t)
            g['be'].append(sent)
            slip = t - (t0 + sent * NS // R)
            g['slip_max'] = max(g['slip_max'], slip)
            if slip >= STALL_NS:   # events of this batch sent 10 ms or more after their time
                late_to = min(due, -(-(t - STALL_NS - t0) * R // NS))
                g['late'] += max(0, late_to - sent)
            g['sent'] = due
            self.shared['sent'].value = due
            self.outbuf += data
            self.flush(t)
        if g['sent'] >= total:
            self.generating = False
            g['t_end'] = time.monotonic_ns()
            self.ctl.send(('generated', g['t_end'], g['sent']))
        g['next_tick'] = t0 + ((now - t0) // MS + 1) * MS

    def run(self):
        self.ctl.send(('listening', self.port, self.verify))
        self.associate()
        ep = select.epoll()
        sfd, cfd = self.sock.fileno(), self.ctl.fileno()
        ep.register(sfd, select.EPOLLIN)
        ep.register(cfd, select.EPOLLIN)
        want_out = False
        next_sample = 0
        reported_mon = reported_snap = False
        while not self.stop:
            now = time.monotonic_ns()
            if self.generating:
                timeout = max(0, self.gen['next_tick'] - now) / NS
            else:
                timeout = 0.002 if self.diag is not None else 0.05
            if bool(self.outbuf) != want_out:
                want_out = bool(self.outbuf)
                ep.modify(sfd, select.EPOLLIN | (select.EPOLLOUT if want_out else 0))
            for fd, ev in ep.poll(timeout):
                if fd == cfd:
                    self.on_ctl()
                    continue
                if ev & select.EPOLLIN:
                    try:
                        data = self.sock.recv(65536)
                    except BlockingIOError:
                        data = None
                    except OSError:
                        data = b''
                    if data == b'':
                        self.closed = True
                    elif data:
                        self.on_data(data, time.monotonic_ns())
                elif ev & (select.EPOLLHUP | select.EPOLLERR):
                    self.closed = True
            if self.closed:
                break
            now = time.monotonic_ns()
            if self.generating and now >= self.gen['next_tick']:
                self.tick(now)
            if self.outbuf:
                self.flush(time.monotonic_ns())
            if now >= next_sample:
                self.sample_unread(now)
                next_sample = now + MS
            if not reported_mon and self.t_all_mon is not None:
                reported_mon = True
                self.ctl.send(('all_monitor_start', self.t_all_mon))
            if not reported_snap and self.t_all_snap is not None:
                reported_snap = True
                self.ctl.send(('all_snapshot', self.t_all_snap))
        now = time.monotonic_ns()
        if self.blocked_since is not None:      # still blocked at the end
            self.note_blocked(now - self.blocked_since, now)
        while not self.stop:                    # the link closed: wait for the stop
            self.on_ctl()
        self.check_fast()
        g = self.gen or {}
        ans = sorted(self.answer_ns)
        self.ctl.send(('stats', {
            'closed_by_ctigate': self.closed, 'context': self.context, 't_assoc': self.t_assoc,
            'ops': self.ops, 'pdus': self.pdus, 'samples': self.samples, 'remonitors': self.remonitors,
            'monitor_started': len(self.mon_done), 'snapshotted': len(self.snap_done), 'snapshots_with_call': self.snap_calls,
            't_all_monitor_start': self.t_all_mon, 't_all_snapshot': self.t_all_snap,
            'fast_checked': self.fast_checked, 'fast_mismatch': self.fast_mismatch[:5], 'slow_path': self.slow_path,
            'answers': len(ans), 'answer_p50_ns': pct(ans, 50), 'answer_p99_ns': pct(ans, 99),
            'answer_max_ns': ans[-1] if ans else None, 'answers_over_1ms': len(ans) - bisect.bisect_right(ans, MS),
            'blocked_max_ns': self.blocked_max, 'blocked_hist': self.blocked_hist, 'stalls': self.stalls,
            'unread_max_ns': self.unread_max, 'unread_ge10_samples': self.unread_ge10, 'unread_episodes': self.unread_episodes,
            'unread_samples': self.unread_samples, 'unread_err': self.unread_err, 'rqueue_max': self.rq_max, 'unread_list': self.unread_list, 'unread_by_sec': self.unread_by_sec,
            'unread_episodes_load': self.unread_episodes_load,
            'bytes_sent': self.cum_sent, 'verify': self.verify,
            'gen': {k: (v.tobytes() if isinstance(v, array.array) else v) for k, v in g.items() if k not in ('devices', 'xrefs')},
        }))


def quiet_child():
    """In a child process: Ctrl-C is the orchestrator's business; no cyclic GC pauses in the loops
    (their garbage is acyclic: bytes, small lists)."""
    import gc
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()
    gc.disable()


def switch_main(ctl, cfg, shared):
    quiet_child()
    try:
        Switch(ctl, cfg, shared).run()
    except Exception:
        ctl.send(('error', 'switch: ' + traceback.format_exc()))


# ======================================================================================
# The NDJSON clients (own process, one epoll loop)
# ======================================================================================
class Conn:
    __slots__ = ('sock', 'fd', 'dev', 'devq', 'd', 'buf', 'state', 'seq', 'checked', 'closed')

    def __init__(self, sock, dev, d):
        self.sock, self.fd, self.dev, self.d = sock, sock.fileno(), dev, d
        self.devq = ('"device":"%s"' % dev).encode()
        self.buf, self.state, self.seq, self.checked, self.closed = b'', 0, -1, 0, False


KIND_OF = {b'offe': 0, b'conn': 1, b'rele': 2}
SO_TIMESTAMPNS = getattr(socket, 'SO_TIMESTAMPNS', 35)     # Linux
unpack_ts = struct.Struct('qq').unpack
CAUSE_OF = (b'newCall', b'normal', b'normalClearing')     # the cause each event we send carries
EVENT_PREFIX = b'{"type":"event","event":"call.'           # 30 octets


class Clients:
    """Every NDJSON connection in one epoll loop. Call events are recognised by byte search (checked
    against json.loads on each connection's first three events); everything else is parsed as JSON."""

    def __init__(self, ctl, cfg, shared):
        self.ctl, self.cfg, self.shared = ctl, cfg, shared
        self.devices = cfg['devices']
        self.D = len(self.devices)
        self.total = cfg['total']
        self.recv_t = memoryview(shared['recv']).cast('B').cast('q')   # read time per event index
        self.recv_k = memoryview(shared['arrive']).cast('B').cast('q')  # kernel arrival time per event index
        self.last_j = [-1] * self.D
        self.received = self.dups = self.ooo = self.gaps = self.unexpected = 0
        self.unexpected_kinds, self.synthesized, self.samples = {}, {}, []
        self.lagged, self.closed_conns, self.errors = [], [], []
        self.monitored = self.monitor_failed = 0
        self.lines = self.fast = self.slow_lines = 0
        self.fast_checked = self.fast_bad = 0
        self.recvs = 0
        self.monitor_results = {}
        self.t_first_recv = self.t_last_recv = 0
        self.seq_bad = 0
        self.loop_max = self.loop_over5 = 0   # one epoll round (reading every ready connection)
        self.link_up = 0
        self.dump = open(cfg['dump'], 'ab') if cfg.get('dump') else None   # --dump-lines: device 0's lines

    def note(self, what, line):
        if len(self.samples) < 20:
            self.samples.append('%s: %s' % (what, line[:400].decode('utf-8', 'replace')))

    def run(self):
        host, port = self.cfg['api'].rsplit(':', 1)
        ep = self.ep = select.epoll()
        cfd = self.ctl.fileno()
        ep.register(cfd, select.EPOLLIN)
        byfd = self.byfd = [None] * 65536
        pending = list(enumerate(self.devices))
        connecting = 0
        stop = False
        t_start = time.monotonic()
        reported = False
        shared_received = self.shared['received']
        mono = time.monotonic_ns
        while not stop:
            # connect in waves (keeps the listener's accept queue short)
            if pending:
                connecting = sum(1 for c in byfd[:4096] if c is not None and c.state < 2 and not c.closed)
                while pending and connecting < 200:
                    d, dev = pending.pop(0)
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    s.setblocking(False)
                    s.connect_ex((host, int(port)))
                    c = Conn(s, dev, d)
                    byfd[c.fd] = c
                    ep.register(c.fd, select.EPOLLIN)
                    connecting += 1
            evs = ep.poll(0.05)
            t_loop = mono()
            rt_off = time.time_ns() - t_loop
            for fd, ev in evs:
                c = byfd[fd]
                if c is None:
                    if fd == cfd:
                        if self.ctl.recv()[0] == 'stop':
                            stop = True
                    continue
                try:
                    data, anc, _, _ = c.sock.recvmsg(65536, 64)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data, anc = b'', None
                    self.errors.append('%s: %s' % (c.dev, e))
                t = mono()
                if not data:
                    self.on_closed(c, t)
                    continue
                self.recvs += 1
                # the kernel's arrival time of the first octet read (SO_TIMESTAMPNS, CLOCK_REALTIME)
                ka = t
                if anc:
                    sec, nsec = unpack_ts(anc[0][2])
                    ka = min(t, sec * NS + nsec - rt_off)
                self.on_data(c, data, t, ka)
            shared_received.value = self.received
            dur = mono() - t_loop
            if dur > self.loop_max:
                self.loop_max = dur
            if dur >= 5 * MS:
                self.loop_over5 += 1
            if not reported and self.monitored + self.monitor_failed + len(self.closed_conns) >= self.D:
                reported = True
                self.ctl.send(('monitored', self.monitored, self.monitor_failed, time.monotonic() - t_start,
                               dict(list(self.monitor_results.items())[:5]), self.errors[:5] + self.samples[:5]))
        self.ctl.send(('results', self.stats()))

    def on_closed(self, c, t):
        c.closed = True
        self.ep.unregister(c.fd)
        self.byfd[c.fd] = None
        c.sock.close()
        self.closed_conns.append((c.dev, t))

    def send(self, c, obj):
        c.sock.send(json.dumps(obj, separators=(',', ':')).encode() + b'\n')   # small: fits the socket buffer

    def on_data(self, c, data, t, ka):
        if c.buf:
            data = c.buf + data
        lines = data.split(b'\n')
        c.buf = lines.pop()
        self.lines += len(lines)
        if self.dump is not None and c.d == 0:
            self.dump.write(b''.join(x + b'\n' for x in lines))
            self.dump.flush()
        if c.state != 2 or c.checked < 3:
            for line in lines:
                self.slow_line(c, line, t, ka, True)
            return
        # the hot path: one connection's call events. Its bookkeeping is on_event's, inlined
        # on purpose (no Python call per line at 100 000 lines/s);
        # a change to one is a change to both.
        d, D, devq, recv_t, recv_k, last_j = c.d, self.D, c.devq, self.recv_t, self.recv_k, self.last_j
        fast = received = 0
        for line in lines:
            if line.startswith(EVENT_PREFIX):
                kind = KIND_OF.get(line[30:34])
                if kind is not None:
                    i = line.find(b'"device":"', 34)
                    k = line.find(b'"pbx_call_id":"', i)
                    z = line.rfind(b'"cause":"')
                    if 0 < i < k < z and line[k + 23] == 34 and line.startswith(devq, i) \
                            and line.startswith(CAUSE_OF[kind], z + 9) and line[z + 9 + len(CAUSE_OF[kind])] == 34:
                        s0 = line.find(b'"seq":', 34)
                        seq = int(line[s0 + 6:line.find(b',', s0)])
                        if seq <= c.seq:
                            self.seq_bad += 1
                            self.note('seq not increasing (%d after %d)' % (seq, c.seq), line)
                        c.seq = seq
                        v = int(line[k + 15:k + 23], 16) - CID_BASE
                        if v < 0 or v % D != d:
                            self.unexpected += 1
                            self.note('unexpected callID', line)
                            continue
                        j = (v // D) * 3 + kind
                        e = j * D + d
                        if e >= self.total:
                            self.unexpected += 1
                            self.note('callID never sent', line)
                            continue
                        fast += 1
                        if recv_t[e]:
                            self.dups += 1
                            self.note('duplicate', line)
                            continue
                        recv_t[e] = t
                        recv_k[e] = ka
                        received += 1
                        lj = last_j[d]
                        if j < lj:
                            self.ooo += 1
                            self.note('out of order (phase %d after %d)' % (j, lj), line)
                        else:
                            if j > lj + 1:
                                self.gaps += 1
                            last_j[d] = j
                        continue
            self.slow_line(c, line, t, ka, False)
        if received:
            self.received += received
            self.fast += fast
            if not self.t_first_recv:
                self.t_first_recv = t
            self.t_last_recv = t

    def on_event(self, c, kind, seq, dev, cid, cause, t, ka, line):
        """A call event (from the JSON path): ours, synthesized by the gateway, or unexpected."""
        if seq <= c.seq:
            self.seq_bad += 1
            self.note('seq not increasing (%d after %d)' % (seq, c.seq), line)
        c.seq = seq
        if cause != CAUSE_OF[kind].decode():
            # not the event we sent: the gateway made it (a resync after shedding, an eviction, ...)
            key = '%s/%s' % (NDJSON_OF[kind], cause)
            self.synthesized[key] = self.synthesized.get(key, 0) + 1
            if self.synthesized[key] <= 2:
                self.note('synthesized by the gateway', line)
            return
        d, D = c.d, self.D
        try:
            v = int(cid, 16) - CID_BASE
        except ValueError:
            v = -1
        if dev != c.dev or v < 0 or v % D != d or len(cid) != 8:
            self.unexpected += 1
            self.note('unexpected device/callID', line)
            return
        j = (v // D) * 3 + kind
        e = j * D + d
        if e >= self.total:
            self.unexpected += 1
            self.note('callID never sent', line)
            return
        if self.recv_t[e]:
            self.dups += 1
            self.note('duplicate', line)
            return
        self.recv_t[e] = t
        self.recv_k[e] = ka
        self.received += 1
        if not self.t_first_recv:
            self.t_first_recv = t
        self.t_last_recv = t
        lj = self.last_j[d]
        if j < lj:
            self.ooo += 1
            self.note('out of order (phase %d after %d)' % (j, lj), line)
        else:
            if j > lj + 1:
                self.gaps += 1
            self.last_j[d] = j

    def slow_line(self, c, line, t, ka, checking):
        self.slow_lines += 1
        try:
            v = json.loads(line)
        except ValueError:
            self.errors.append('%s: not JSON: %r' % (c.dev, line[:200]))
            return
        typ = v.get('type')
        if c.state == 0:
            if typ != 'hello':
                self.errors.append('%s: first line is not hello: %r' % (c.dev, line[:200]))
            c.state = 1
            self.send(c, {'id': 1, 'op': 'monitor.start', 'device': c.dev})
            return
        if typ == 'response':
            if v.get('id') == 1 and c.state == 1:
                c.state = 2
                if v.get('ok'):
                    self.monitored += 1
                    r = v.get('result') or {}
                    key = 'calls=%d agent=%s unconfirmed=%s' % (len(r.get('calls') or []), r.get('agent'), r.get('unconfirmed', False))
                    self.monitor_results[key] = self.monitor_results.get(key, 0) + 1
                    if r.get('calls'):
                        self.note('monitor.start with calls', line)
                else:
                    self.monitor_failed += 1
                    self.errors.append('%s: monitor.start failed: %s' % (c.dev, json.dumps(v.get('error'))))
            elif not v.get('ok') and not str(v.get('id', '')).startswith('p'):
                self.errors.append('%s: %s' % (c.dev, line[:300].decode('utf-8', 'replace')))
            return
        if typ == 'ping':
            self.send(c, {'id': 'p%d' % t, 'op': 'ping'})
            return
        if typ != 'event':
            self.count_unexpected('type:%s' % typ, line)
            return
        ev = v.get('event')
        if ev == 'link.up':                   # a client may connect just before the link is up
            self.link_up += 1
            return
        if ev == 'lagged':
            self.lagged.append((c.dev, v.get('seq'), v.get('limit')))
            self.note('lagged', line)
            return
        if ev in NDJSON_OF and c.state == 2:
            call = v.get('call') or {}
            if checking:      # the first events of each connection: prove the byte search on them
                c.checked += 1
                self.fast_checked += 1
                if not self.fast_agrees(line, v):
                    self.fast_bad += 1
                    self.note('byte search disagrees with json.loads', line)
            self.on_event(c, NDJSON_OF.index(ev), v.get('seq', -1), str(v.get('device', '')),
                          str(call.get('pbx_call_id', '')), str(v.get('cause', '')), t, ka, line)
            return
        self.count_unexpected(ev, line)

    def fast_agrees(self, line, v):
        """What the hot path's byte search would take from this line, compared with json.loads."""
        try:
            kind = KIND_OF.get(line[30:34]) if line.startswith(EVENT_PREFIX) else None
            i = line.find(b'"device":"', 34)
            k = line.find(b'"pbx_call_id":"', i)
            z = line.rfind(b'"cause":"')
            s0 = line.find(b'"seq":', 34)
            got = (NDJSON_OF[kind], int(line[s0 + 6:line.find(b',', s0)]), line[i + 10:line.find(b'"', i + 10)].decode(),
                   line[k + 15:k + 23].decode(), line[z + 9:line.find(b'"', z + 9)].decode())
            return got == (v['event'], v['seq'], v['device'], v['call']['pbx_call_id'], v['cause']) and line[k + 23] == 34
        except (TypeError, KeyError, ValueError, IndexError):
            return False

    def count_unexpected(self, k, line):
        self.unexpected_kinds[k] = self.unexpected_kinds.get(k, 0) + 1
        self.note('event %s' % k, line)

    def stats(self):
        return {'received': self.received, 'dups': self.dups, 'out_of_order': self.ooo, 'gaps': self.gaps,
                'unexpected': self.unexpected, 'unexpected_kinds': self.unexpected_kinds, 'synthesized': self.synthesized,
                'samples': self.samples, 'lagged': self.lagged, 'closed': self.closed_conns, 'errors': self.errors[:20],
                'n_errors': len(self.errors), 'monitored': self.monitored, 'monitor_failed': self.monitor_failed,
                'lines': self.lines, 'fast': self.fast, 'slow_lines': self.slow_lines, 'fast_checked': self.fast_checked,
                'fast_bad': self.fast_bad, 'recvs': self.recvs, 'monitor_results': self.monitor_results,
                't_first_recv': self.t_first_recv, 't_last_recv': self.t_last_recv, 'seq_bad': self.seq_bad,
                'loop_max_ns': self.loop_max, 'loop_over5': self.loop_over5}


def clients_main(ctl, cfg, shared):
    quiet_child()
    try:
        Clients(ctl, cfg, shared).run()
    except Exception:
        ctl.send(('error', 'clients: ' + traceback.format_exc()))


# ======================================================================================
# Orchestration
# ======================================================================================
class RunError(Exception):
    pass


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(math.ceil(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[k]


def proc_cpu_ticks(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            parts = f.read().rsplit(')', 1)[1].split()
        return int(parts[11]) + int(parts[12])   # utime + stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return None


def run_delay_ns(pid):
    """Time the process's threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat)."""
    tot = 0
    try:
        tasks = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return None
    for t in tasks:
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, t)) as f:
                tot += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return tot


def proc_status(pid, key):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


class Gateway:
    """ctigate run as a child in its own session, its log in a file."""

    def __init__(self, binary, conf_text, workdir, name='ctigate'):
        self.conf_path = os.path.join(workdir, name + '.toml')
        self.log_path = os.path.join(workdir, name + '.log')
        with open(self.conf_path, 'w') as f:
            f.write(conf_text)
        log = open(self.log_path, 'w')
        try:
            self.p = subprocess.Popen([binary, 'run', '--config', self.conf_path], stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.pid = self.p.pid

    def wait_listen(self, timeout=15):
        end = time.monotonic() + timeout
        pat = re.compile(r'NDJSON port (\S+)')
        while time.monotonic() < end:
            m = pat.search(self.log())
            if m:
                return m.group(1)
            if self.p.poll() is not None:
                raise RunError('ctigate exited (status %s) before listening: %s' % (self.p.returncode, self.tail(10)))
            time.sleep(0.02)
        raise RunError('ctigate printed no "NDJSON port" line within %d s: %s' % (timeout, self.tail(10)))

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def tail(self, n):
        return '\n'.join(re.sub(r'\x1b\[[0-9;]*m', '', x) for x in self.log().splitlines()[-n:])

    def warnings(self, n=15, upto=None):
        """WARN/ERROR lines of the log (up to octet `upto`: the end of the measurement, before the
        tool's own teardown closes the link and the clients)."""
        out = [re.sub(r'\x1b\[[0-9;]*m', '', x) for x in self.log()[:upto].splitlines()]
        return [x for x in out if re.search(r'\b(WARN|ERROR)\b', x)][:n]

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(3)
            except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    self.p.wait(3)
                except subprocess.TimeoutExpired:
                    pass


def ndjson_request(api, req, timeout=10.0, max_bytes=64 << 20):
    """One request on a fresh connection; returns (response, hello, octets of the response line)."""
    host, port = api.rsplit(':', 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        end = time.monotonic() + timeout
        buf, hello = b'', None
        s.sendall(json.dumps(req).encode() + b'\n')
        while time.monotonic() < end:
            s.settimeout(max(0.01, end - time.monotonic()))
            c = s.recv(1 << 20)
            if not c:
                break
            buf += c
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                v = json.loads(line)
                if hello is None and v.get('type') == 'hello':
                    hello = v
                elif v.get('type') == 'response' and v.get('id') == req.get('id'):
                    return v, hello, len(line)
            if len(buf) > max_bytes:
                break
        raise RunError('no answer to %s within %.0f s' % (req.get('op'), timeout))
    finally:
        s.close()


class Run:
    def __init__(self, a):
        self.a = a
        self.procs, self.gw, self.extra_gw = [], None, []
        self.ctx = mp.get_context('fork')
        self.msgs = {'switch': [], 'clients': []}

    # ---- processes ------------------------------------------------------------------
    def start(self, name, target, cfg, shared):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=target, args=(child, cfg, shared), name=name, daemon=True)
        p.start()
        self.procs.append(p)
        return p, parent

    def expect(self, pipe, kinds, timeout, what):
        """The next control message of one of `kinds` (earlier others are kept)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not pipe.poll(left):
                raise RunError('%s: nothing within %.0f s' % (what, timeout))
            try:
                msg = pipe.recv()
            except EOFError:
                raise RunError('%s: the process ended' % what)
            if msg[0] == 'error':
                raise RunError(msg[1])
            if msg[0] in kinds:
                return msg
            self.pending.append(msg)

    def cleanup(self):
        if self.gw:
            self.gw.kill()
        for g in self.extra_gw:
            g.kill()
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(3)

    def log(self, *x):
        print(*x, file=sys.stderr if self.a.json else sys.stdout, flush=True)

    def progress(self, *x):
        print(*x, file=sys.stderr, flush=True)

    # ---- configuration --------------------------------------------------------------
    def config(self, switch_port, monitor=None, max_clients=None, address=None):
        lines = ['[api]', 'listen = "127.0.0.1:0"']
        shown = list(lines)
        if max_clients:
            l = 'max_clients = %d' % max_clients
            lines.append(l)
            shown.append(l + '   # docs/CONFIG.md: default 256; one per NDJSON client + the status connection')
        lk = ['', '[[link]]', 'name = "pbx1"', 'address = "%s"' % (address or '127.0.0.1:%d' % switch_port)]
        lines += lk
        shown += lk
        if monitor:
            lines.append('monitor = [%s]' % ', '.join('"%s"' % d for d in monitor))
            shown.append('monitor = ["%s", "%s", ..., "%s"]   # %d devices' % (monitor[0], monitor[1], monitor[-1], len(monitor)))
            if len(monitor) > 200000:
                lines.append('max_monitors = %d' % len(monitor))
                shown.append(lines[-1])
        return '\n'.join(lines) + '\n', '\n'.join(shown)

    # ---- load mode ------------------------------------------------------------------
    def load(self):
        a = self.a
        self.pending = []
        devices = device_numbers(a.clients)
        total = int(round(a.rate * (a.seconds + a.warmup)))
        shared = {'sent': self.ctx.RawValue('q', 0), 'received': self.ctx.RawValue('q', 0),
                  'recv': self.ctx.RawArray('q', max(1, total)), 'arrive': self.ctx.RawArray('q', max(1, total))}
        sw, swp = self.start('switch', switch_main, {'peer': a.peer, 'hold': False, 'expect_devices': a.clients}, shared)
        _, port, verify = self.expect(swp, ('listening',), 60, 'switch start-up')
        conf, shown = self.config(port, max_clients=a.clients + 64)
        self.log('ctigate configuration (%s):\n%s' % ('load mode', '\n'.join('    ' + x for x in shown.splitlines())))
        self.gw = Gateway(a.bin, conf, self.workdir)
        api = self.gw.wait_listen()
        self.expect(swp, ('associated',), 20, 'association (AARQ from ctigate)')
        cl, clp = self.start('clients', clients_main, {'api': api, 'devices': devices, 'total': total, 'dump': a.dump_lines}, shared)
        t_mon0 = time.monotonic()
        m = self.expect(clp, ('monitored',), 120, 'clients: hello + monitor.start')
        _, ok, failed, took, results, samples = m
        self.progress('clients: %d monitored (%d failed) in %.2f s; results %s' % (ok, failed, took, results))
        if ok < a.clients:
            raise RunError('only %d of %d clients monitored their device (failures %d): %s' % (ok, a.clients, failed, samples))
        time.sleep(0.5)       # let the gateway settle (GetAgentState answers, etc.)
        pids = {'ctigate': self.gw.pid, 'switch': sw.pid, 'clients': cl.pid, 'main': os.getpid()}
        swp.send(('generate', devices, a.rate, total))
        _, t0, verify = self.expect(swp, ('generating',), 60, 'generator start (templates + checks)')
        while time.monotonic_ns() < t0:
            time.sleep(0.0005)
        self.t0_wall = time.time() - (time.monotonic_ns() - t0) / NS    # the load's start on the wall clock (for ctigate's log)
        cpu0 = {k: proc_cpu_ticks(p) for k, p in pids.items()}
        wait0 = {k: run_delay_ns(p) for k, p in pids.items()}
        w0 = time.monotonic()
        last_s, last_r, last_t = 0, 0, w0
        gen_end = None
        while gen_end is None:
            if swp.poll(0.05):
                msg = swp.recv()
                if msg[0] == 'error':
                    raise RunError(msg[1])
                if msg[0] == 'generated':
                    gen_end = msg
                    break
                self.pending.append(msg)
            now = time.monotonic()
            if now - last_t >= 1.0:
                s, r = shared['sent'].value, shared['received'].value
                self.progress('%5.1f s  sent %7d/s  received %7d/s  (total sent %d, received %d)' % (
                    now - w0, (s - last_s) / (now - last_t), (r - last_r) / (now - last_t), s, r))
                last_s, last_r, last_t = s, r, now
            if self.gw.p.poll() is not None:
                raise RunError('ctigate exited (status %s) during the load: %s' % (self.gw.p.returncode, self.gw.tail(10)))
            if now - w0 > a.seconds * 3 + 30:
                raise RunError('the generator did not finish within %.0f s' % (a.seconds * 3 + 30))
        w1 = time.monotonic()
        cpu1 = {k: proc_cpu_ticks(p) for k, p in pids.items()}
        wait1 = {k: run_delay_ns(p) for k, p in pids.items()}
        self.run_wait = {k: (None if wait0[k] is None or wait1[k] is None else round(100.0 * (wait1[k] - wait0[k]) / NS / (w1 - w0), 1))
                         for k in pids}
        _, t_end, sent = gen_end
        # drain: until everything arrived or --drain seconds
        dend = time.monotonic() + a.drain
        while time.monotonic() < dend and shared['received'].value < sent:
            time.sleep(0.02)
        drained = time.monotonic() - (dend - a.drain)
        self.progress('generator done: %d events; drained %.2f s; received %d' % (sent, drained, shared['received'].value))
        status = None
        try:
            status, _, _ = ndjson_request(api, {'id': 's', 'op': 'status'})
        except (RunError, OSError, ValueError) as e:
            status = {'error': str(e)}
        rss_hwm = proc_status(self.gw.pid, 'VmHWM')
        rss_now = proc_status(self.gw.pid, 'VmRSS')
        gw_alive = self.gw.p.poll() is None
        self.log_mark = len(self.gw.log())
        clp.send(('stop',))
        _, cst = self.expect(clp, ('results',), 60, 'client results')
        swp.send(('stop',))
        _, sst = self.expect(swp, ('stats',), 30, 'switch stats')
        return self.load_report(a, devices, total, shared, cst, sst, verify, status, cpu0, cpu1, w1 - w0,
                                rss_hwm, rss_now, gw_alive, shown, drained)

    def load_report(self, a, devices, total, shared, cst, sst, verify, status, cpu0, cpu1, wall, rss_hwm, rss_now,
                    gw_alive, shown, drained):
        g = sst['gen']
        bt, be = array.array('q'), array.array('q')
        bt.frombytes(g['bt'])
        be.frombytes(g['be'])
        sent = g['sent']
        recv = memoryview(shared['recv']).cast('B').cast('q')
        arrive = memoryview(shared['arrive']).cast('B').cast('q')
        R = a.rate
        lost, lost_kind = 0, [0, 0, 0]
        lost_devs, first_lost = set(), None
        D = len(devices)
        per_sec = {}
        t0 = g['t0']
        nb = len(bt)
        w_e = int(R * a.warmup)                  # events before this index are the warm-up
        t_steady = t0 + int((a.warmup + 2) * NS)  # "after the first 2 s" of the measured window
        lat, lat_k, tool_d, lat_2 = array.array('q'), array.array('q'), array.array('q'), array.array('q')
        for b in range(nb):
            t = bt[b]
            e0 = be[b]
            e1 = be[b + 1] if b + 1 < nb else sent
            sec = (t - t0) // NS
            bucket = per_sec.setdefault(sec, array.array('q'))
            steady = t >= t_steady
            for e in range(e0, e1):
                r = recv[e]
                if r:
                    v = r - t
                    bucket.append(v)
                    if e >= w_e:
                        k = arrive[e]
                        lat.append(v)
                        lat_k.append(k - t)
                        tool_d.append(r - k)
                        if steady:
                            lat_2.append(v)
                else:
                    lost += 1
                    lost_kind[(e // D) % 3] += 1
                    lost_devs.add(e % D)
                    if first_lost is None:
                        first_lost = (e, (t - t0) / NS)

        def dist(arr):
            v = sorted(arr)
            return {'p50': ms(pct(v, 50)), 'p99': ms(pct(v, 99)), 'p99.9': ms(pct(v, 99.9)), 'max': ms(v[-1] if v else None), 'n': len(v)}
        L, L_k, L_tool, L_2 = dist(lat), dist(lat_k), dist(tool_d), dist(lat_2)
        del lat, lat_k, tool_d, lat_2
        gen_s = ((bt[-1] if nb else t0) - t0) / NS
        # achieved: events over the span from the schedule start to the last batch
        achieved = sent / gen_s if gen_s > 0 else 0.0
        recv_span = (cst['t_last_recv'] - t0) / NS if cst['t_last_recv'] else 0
        client_rate = cst['received'] / recv_span if recv_span > 0 else 0.0

        def cpu(k):
            return None if cpu0.get(k) is None or cpu1.get(k) is None else 100.0 * (cpu1[k] - cpu0[k]) / CLK_TCK / wall
        tool_cpu = {k: cpu(k) for k in ('switch', 'clients', 'main')}
        links = (status or {}).get('result', {}).get('links') or []
        link = links[0] if links else {}
        timeline = []
        for sec in sorted(per_sec):
            v = sorted(per_sec[sec])
            timeline.append({'second': sec, 'events': len(v), 'p50_ms': ms(pct(v, 50)), 'p99_ms': ms(pct(v, 99)), 'max_ms': ms(v[-1] if v else None),
                             'unread_max_ms': ms(sst['unread_by_sec'].get(sec))})
        rep = {
            'mode': 'quick' if a.quick else 'load', 'rate_target': R, 'clients': a.clients, 'seconds': a.seconds,
            'drain_s': a.drain, 'drained_s': round(drained, 3), 'config': shown,
            'events_sent': sent, 'switch_events_per_s': round(achieved, 1), 'achieved_percent': round(100.0 * achieved / R, 2),
            'batches': nb, 'schedule_slip_max_ms': ms(g['slip_max']), 'events_behind_schedule_10ms': g['late'],
            'events_received': cst['received'], 'client_events_per_s': round(client_rate, 1),
            'events_lost': lost, 'lost_by_kind': dict(zip(NDJSON_OF, lost_kind)), 'devices_with_loss': len(lost_devs),
            'first_lost': first_lost and {'event': first_lost[0], 'at_s': round(first_lost[1], 3)},
            'unexpected': cst['unexpected'] + sum(cst['unexpected_kinds'].values()), 'unexpected_kinds': cst['unexpected_kinds'],
            'synthesized_by_gateway': cst['synthesized'],
            'duplicates': cst['dups'], 'out_of_order': cst['out_of_order'], 'seq_not_increasing': cst['seq_bad'],
            'lagged_clients': len(cst['lagged']), 'lagged': cst['lagged'][:5], 'closed_connections': len(cst['closed']),
            'client_errors': cst['n_errors'], 'client_error_samples': cst['errors'][:5], 'client_samples': cst['samples'][:10],
            'warmup_s': a.warmup,
            'load_started_utc': time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(self.t0_wall)) + ('%.3fZ' % (self.t0_wall % 1))[1:],
            'latency_ms': L,
            'latency_at_socket_ms': L_k,
            'tool_read_delay_ms': L_tool,
            'latency_after_first_2s_ms': L_2,
            'latency_per_second': timeline,
            'pbx_socket': {'writes_blocked_10ms': len(sst['stalls']), 'write_blocked_max_ms': ms(sst['blocked_max_ns']),
                           'blocked_writes_by_duration': dict(zip(('<1ms', '1-5ms', '5-10ms', '>=10ms'), sst['blocked_hist'])),
                           'stalls': [{'at_s': round((s - t0) / NS, 3), 'ms': ms(d)} for s, d in sst['stalls'][:10]],
                           'unread_max_ms': ms(sst['unread_max_ns']),
                           'unread_max_during_load_ms': ms(max(sst['unread_by_sec'].values(), default=0)),
                           'unread_10ms_episodes_during_load': sst['unread_episodes_load'], 'unread_10ms_samples': sst['unread_ge10_samples'],
                           'unread_10ms_episodes': sst['unread_episodes'], 'unread_samples': sst['unread_samples'],
                           'unread_error': sst['unread_err'],
                           'unread_episodes_list': [{'at_s': round((x[0] - t0) / NS, 3), 'worst_ms': ms(x[1]), 'rqueue': x[2],
                                                     'unsent': x[3], 'octets_unread': x[4]} for x in sst['unread_list']],
                           'ctigate_rqueue_max_octets': sst['rqueue_max'],
                           'octets_sent': sst['bytes_sent']},
            'switch': {'association_context': sst['context'], 'operations_received': sst['ops'], 'other_pdus': sst['pdus'],
                       'pdu_samples': sst['samples'], 'remonitors': sst['remonitors'],
                       'snapshots_with_call': sst['snapshots_with_call'], 'answers': sst['answers'], 'answer_p99_ms': ms(sst['answer_p99_ns']), 'answer_max_ms': ms(sst['answer_max_ns']),
                       'answers_over_1ms': sst['answers_over_1ms'], 'fast_parse_checked': sst['fast_checked'],
                       'fast_parse_mismatch': sst['fast_mismatch'], 'slow_path_pdus': sst['slow_path'],
                       'closed_by_ctigate': sst['closed_by_ctigate'], 'encoding_checks': verify},
            'ctigate': {'cpu_percent': rnd(cpu('ctigate')), 'peak_rss_mib': mib(rss_hwm), 'rss_mib_end': mib(rss_now),
                        'alive_at_end': gw_alive, 'events_shed': link.get('events_shed'), 'behind': link.get('behind'),
                        'behind_periods': link.get('behind_periods'), 'link_state': link.get('state'),
                        'malformed_frames': link.get('malformed_frames'), 'rejects_sent': link.get('rejects_sent'),
                        'events_dropped_for_slow_clients': (status or {}).get('result', {}).get('events_dropped_for_slow_clients'),
                        'resync': (status or {}).get('result', {}).get('resync'), 'status_error': (status or {}).get('error'),
                        'log_warnings': self.gw.warnings(upto=self.log_mark)},
            'tool': {'cpu_percent': {k: rnd(v) for k, v in tool_cpu.items()},
                     'cpu_percent_total': rnd(sum(v for v in tool_cpu.values() if v is not None)),
                     'client_lines': cst['lines'], 'client_lines_fast': cst['fast'], 'client_lines_json': cst['slow_lines'],
                     'client_fast_checked': cst['fast_checked'], 'client_fast_bad': cst['fast_bad'], 'client_recv_calls': cst['recvs'],
                     'client_loop_max_ms': ms(cst['loop_max_ns']), 'client_loops_over_5ms': cst['loop_over5']},
            'runqueue_wait_percent': self.run_wait,
        }
        p99 = rep['latency_ms']['p99']
        checks = [('nothing lost (0 lost, no lagged client, no connection closed, ctigate alive)',
                   lost == 0 and not cst['lagged'] and not cst['closed'] and gw_alive and cst['received'] == sent and sent == total)]
        if not a.quick:
            checks.append(('p99 latency < 50 ms (%s ms)' % p99, p99 is not None and p99 < 50))
        checks.append(('no stall of the PBX socket (no write blocked >= 10 ms; worst %.1f ms)' % rep['pbx_socket']['write_blocked_max_ms'],
                       not sst['stalls']))
        if not a.quick:
            um = rep['pbx_socket']['unread_max_during_load_ms']
            checks.append(('PBX socket read throughout the load (no octet unread by ctigate >= 10 ms; worst %s ms, %d episodes)' % (
                um, sst['unread_episodes_load']), sst['unread_err'] is None and um is not None and um < 10))
            checks.append(('achieved rate >= 98 %% of %d/s (%.1f %%)' % (R, rep['achieved_percent']), rep['achieved_percent'] >= 98.0))
        checks.append(('order kept (0 unexpected, 0 duplicated, 0 out of order)',
                       rep['unexpected'] == 0 and cst['dups'] == 0 and cst['out_of_order'] == 0 and cst['seq_bad'] == 0
                       and cst['fast_bad'] == 0))
        rep['checks'] = [{'check': c, 'pass': bool(p)} for c, p in checks]
        return rep

    # ---- monitor mode ---------------------------------------------------------------
    def baseline_rss(self, n):
        """RSS of a ctigate with the same configuration but no monitor list, its link connecting to a
        socket that never answers (the state the monitored run is measured in before association)."""
        srv = socket.socket()
        srv.bind(('127.0.0.1', 0))
        srv.listen(4)
        conf, _ = self.config(0, address='127.0.0.1:%d' % srv.getsockname()[1])
        g = Gateway(self.a.bin, conf, self.workdir, 'ctigate-baseline')
        self.extra_gw.append(g)
        try:
            g.wait_listen()
            srv.settimeout(10)
            c, _ = srv.accept()
            time.sleep(0.5)
            return proc_status(g.pid, 'VmRSS')
        finally:
            g.kill()
            srv.close()

    def monitor(self):
        a = self.a
        self.pending = []
        n = a.monitor_devices
        devices = device_numbers(n)
        base = self.baseline_rss(n)
        shared = {'sent': self.ctx.RawValue('q', 0), 'received': self.ctx.RawValue('q', 0)}
        sw, swp = self.start('switch', switch_main, {'peer': a.peer, 'hold': True, 'expect_devices': n}, shared)
        _, port, verify = self.expect(swp, ('listening',), 60, 'switch start-up')
        conf, shown = self.config(port, monitor=devices)
        self.log('ctigate configuration (monitor mode):\n%s' % '\n'.join('    ' + x for x in shown.splitlines()))
        t_spawn = time.monotonic()
        self.gw = Gateway(a.bin, conf, self.workdir)
        api = self.gw.wait_listen()
        t_listen = time.monotonic() - t_spawn
        self.expect(swp, ('connected',), 20, 'TCP connection from ctigate')
        time.sleep(0.3)
        rss_before = proc_status(self.gw.pid, 'VmRSS')
        cpu0 = proc_cpu_ticks(self.gw.pid)
        scpu0 = proc_cpu_ticks(sw.pid)
        swp.send(('associate',))
        _, t_assoc, context = self.expect(swp, ('associated',), 20, 'association')
        w0 = time.monotonic()
        t_mon = t_snap = t_status = None
        last_status, status_bytes, polls = None, None, 0
        limit = max(120.0, a.monitor_timeout)
        next_poll = time.monotonic()
        last_print = time.monotonic()
        while t_status is None or t_mon is None or t_snap is None:
            now = time.monotonic()
            if now - w0 > limit:
                break
            if swp.poll(0.01):
                msg = swp.recv()
                if msg[0] == 'error':
                    raise RunError(msg[1])
                if msg[0] == 'all_monitor_start':
                    t_mon = msg[1]
                elif msg[0] == 'all_snapshot':
                    t_snap = msg[1]
            if t_status is None and time.monotonic() >= next_poll:
                polls += 1
                try:
                    st, _, nbytes = ndjson_request(api, {'id': polls, 'op': 'status'})
                    tq = time.monotonic_ns()
                    status_bytes = nbytes
                    pm = [x for x in (st.get('result') or {}).get('pbx_monitors') or [] if x.get('link') == 'pbx1']
                    last_status = pm[0] if pm else None
                    if last_status and last_status.get('active') == n and last_status.get('configured') == n:
                        t_status = tq
                except (RunError, OSError, ValueError) as e:
                    last_status = {'error': str(e)}
                next_poll = time.monotonic() + 0.05
            if time.monotonic() - last_print >= 1.0:
                last_print = time.monotonic()
                self.progress('%5.1f s  status pbx_monitors %s' % (time.monotonic() - w0, json.dumps(last_status)))
        wall = time.monotonic() - w0
        cpu1 = proc_cpu_ticks(self.gw.pid)
        scpu1 = proc_cpu_ticks(sw.pid)
        time.sleep(0.3)
        rss_after = proc_status(self.gw.pid, 'VmRSS')
        hwm = proc_status(self.gw.pid, 'VmHWM')
        gw_alive = self.gw.p.poll() is None
        self.log_mark = len(self.gw.log())
        swp.send(('stop',))
        _, sst = self.expect(swp, ('stats',), 30, 'switch stats')

        def since(t):
            return None if t is None else round((t - t_assoc) / NS, 3)
        done = None if t_status is None or t_mon is None else max(since(t_status), since(t_mon))
        per_dev = (rss_after - rss_before) / n if rss_after and rss_before else None
        per_dev_base = (rss_after - base) / n if rss_after and base else None
        per_dev_peak = (hwm - base) / n if hwm and base else None
        rep = {
            'mode': 'monitor', 'devices': n, 'config': shown, 'ndjson_port_ready_s': round(t_listen, 3),
            'association_context': context,
            'all_monitor_start_answered_s': since(t_mon), 'all_snapshot_answered_s': since(t_snap),
            'status_all_active_s': since(t_status), 'all_monitored_s': done,
            'monitors_per_s': round(n / done, 1) if done else None,
            'last_pbx_monitors': last_status, 'status_polls': polls, 'status_line_octets': status_bytes,
            'ctigate': {'rss_mib_baseline_no_devices': mib(base), 'rss_mib_before_association': mib(rss_before),
                        'rss_mib_after': mib(rss_after), 'peak_rss_mib': mib(hwm),
                        'octets_per_device_since_association': rnd(per_dev), 'octets_per_device_incl_config': rnd(per_dev_base),
                        'octets_per_device_at_peak': rnd(per_dev_peak),
                        'cpu_percent': rnd(100.0 * (cpu1 - cpu0) / CLK_TCK / wall) if cpu0 is not None and cpu1 is not None else None,
                        'alive_at_end': gw_alive, 'log_warnings': self.gw.warnings(upto=self.log_mark)},
            'switch': {'operations_received': sst['ops'], 'other_pdus': sst['pdus'], 'pdu_samples': sst['samples'],
                       'remonitors': sst['remonitors'], 'monitor_started_devices': sst['monitor_started'],
                       'snapshotted_devices': sst['snapshotted'], 'answers': sst['answers'],
                       'answer_p50_ms': ms(sst['answer_p50_ns']), 'answer_p99_ms': ms(sst['answer_p99_ns']),
                       'answer_max_ms': ms(sst['answer_max_ns']), 'answers_over_1ms': sst['answers_over_1ms'],
                       'fast_parse_checked': sst['fast_checked'], 'fast_parse_mismatch': sst['fast_mismatch'],
                       'slow_path_pdus': sst['slow_path'], 'encoding_checks': verify,
                       'writes_blocked_10ms': len(sst['stalls']),
                       'cpu_percent': rnd(100.0 * (scpu1 - scpu0) / CLK_TCK / wall) if scpu0 is not None and scpu1 is not None else None},
        }
        kib = per_dev_base if per_dev_base is not None else per_dev
        checks = [('%d devices monitored within 60 s after association (%s s)' % (n, done), done is not None and done <= 60.0 and gw_alive),
                  ('memory < 2 KiB per device (%s octets, incl. configuration)' % rnd(kib), kib is not None and kib < 2048)]
        rep['checks'] = [{'check': c, 'pass': bool(p)} for c, p in checks]
        return rep


def ms(ns):
    return None if ns is None else round(ns / MS, 3)


def mib(b):
    return None if b is None else round(b / (1 << 20), 1)


def rnd(x, n=1):
    return None if x is None else round(x, n)


# ======================================================================================
# Report
# ======================================================================================
def print_load(rep, out):
    p = lambda *x: print(*x, file=out)
    L, ps, sw, gw, tool = rep['latency_ms'], rep['pbx_socket'], rep['switch'], rep['ctigate'], rep['tool']
    p('')
    p('== ctigate load (%s): %d events/s target, %d clients (one device each), %g s%s, drain up to %g s ==' % (
        rep['mode'], rep['rate_target'], rep['clients'], rep['seconds'], ' + %g s warm-up' % rep['warmup_s'] if rep['warmup_s'] else '',
        rep['drain_s']))
    p('started   %s (UTC, for ctigate\'s log)' % rep['load_started_utc'])
    p('switch    %d events sent, %.0f/s (%.2f %% of target) in %d batches; schedule slip max %.2f ms, %d events >= 10 ms late' % (
        rep['events_sent'], rep['switch_events_per_s'], rep['achieved_percent'], rep['batches'], rep['schedule_slip_max_ms'],
        rep['events_behind_schedule_10ms']))
    p('clients   %d events received, %.0f/s; lost %d %s; unexpected %d %s, duplicated %d, out of order %d, seq not increasing %d' % (
        rep['events_received'], rep['client_events_per_s'], rep['events_lost'],
        '(%s; %d devices; first at %s s)' % (rep['lost_by_kind'], rep['devices_with_loss'], rep['first_lost']['at_s']) if rep['events_lost'] else '',
        rep['unexpected'], rep['unexpected_kinds'] or '', rep['duplicates'], rep['out_of_order'], rep['seq_not_increasing']))
    p('          lagged clients %d, connections closed %d, client errors %d; events the gateway made itself (event/cause): %s' % (
        rep['lagged_clients'], rep['closed_connections'], rep['client_errors'], rep['synthesized_by_gateway'] or 'none'))
    w = ' (after %g s of warm-up)' % rep['warmup_s'] if rep['warmup_s'] else ''
    p('latency   p50 %s ms, p99 %s ms, p99.9 %s ms, max %s ms (%d events%s; switch send -> read by the client)' % (
        L['p50'], L['p99'], L['p99.9'], L['max'], L['n'], w))
    Lk, Lt, L2 = rep['latency_at_socket_ms'], rep['tool_read_delay_ms'], rep['latency_after_first_2s_ms']
    p('          at the client socket (kernel arrival): p50 %s, p99 %s, p99.9 %s, max %s ms; the tool\'s own read delay p99 %s, max %s ms' % (
        Lk['p50'], Lk['p99'], Lk['p99.9'], Lk['max'], Lt['p99'], Lt['max']))
    p('          without the first 2 s: p50 %s, p99 %s, p99.9 %s, max %s ms' % (L2['p50'], L2['p99'], L2['p99.9'], L2['max']))
    tl = rep['latency_per_second']
    if tl:
        p('          p99 per second (ms): ' + ' '.join('%.0f' % x['p99_ms'] if x['p99_ms'] is not None else '-' for x in tl))
        p('          PBX socket unread, worst per second (ms): ' + ' '.join('%.0f' % x['unread_max_ms'] if x['unread_max_ms'] is not None else '-' for x in tl))
    p('PBX link  writes blocked >= 10 ms: %d (worst blocked write %.2f ms; blocked writes %s)' % (
        ps['writes_blocked_10ms'], ps['write_blocked_max_ms'], ps['blocked_writes_by_duration']))
    if ps['unread_error']:
        p('          unread age not measured: %s' % ps['unread_error'])
    else:
        p('          oldest octet unread by ctigate: max %.2f ms during the load (%d episodes >= 10 ms), %.2f ms over the whole run '
          '(incl. the clients\' monitor.start; %d episodes >= 10 ms, %d of %d samples); its receive queue max %d octets' % (
              ps['unread_max_during_load_ms'], ps['unread_10ms_episodes_during_load'], ps['unread_max_ms'], ps['unread_10ms_episodes'],
              ps['unread_10ms_samples'], ps['unread_samples'], ps['ctigate_rqueue_max_octets']))
        if ps['unread_episodes_list']:
            p('          unread >= 10 ms at (s after the load started: worst ms): ' + ', '.join(
                '%s: %s' % (x['at_s'], x['worst_ms']) for x in ps['unread_episodes_list'][:10]))
    if ps['stalls']:
        p('          writes blocked >= 10 ms at (s: ms): ' + ', '.join('%s: %s' % (x['at_s'], x['ms']) for x in ps['stalls']))
    p('ctigate   CPU %s %% of one core (load period), peak RSS %s MiB; status: link %s, events_shed %s, behind %s, behind_periods %s, '
      'dropped for slow clients %s' % (gw['cpu_percent'], gw['peak_rss_mib'], gw['link_state'], gw['events_shed'], gw['behind'],
                                       gw['behind_periods'], gw['events_dropped_for_slow_clients']))
    if gw['status_error']:
        p('          status failed: %s' % gw['status_error'])
    for w in gw['log_warnings'][:6]:
        p('          log: %s' % w[:300])
    p('switch    received %s; other PDUs %s; answers %d, p99 %s ms, max %s ms, %d over 1 ms; snapshots with a live call %d' % (
        sw['operations_received'], sw['other_pdus'] or 'none', sw['answers'], sw['answer_p99_ms'], sw['answer_max_ms'], sw['answers_over_1ms'],
        sw['snapshots_with_call']))
    ec = sw['encoding_checks']
    p('          encodings checked against asn1tools: %s answers and %s event frames byte-identical, %s frames decoded back; '
      'fast parse of %s invokes re-checked, mismatches %d' % (ec.get('answers_checked'), ec.get('events_checked_bytes'),
                                                              ec.get('events_checked_decoded'), sum(sw['fast_parse_checked'].values()),
                                                              len(sw['fast_parse_mismatch'])))
    for s in sw['pdu_samples'][:5]:
        p('          pdu: %s' % s)
    p('tool      CPU %% of one core: switch %s, clients %s, main %s (total %s); client lines %d (%d by byte search, %d by json)' % (
        tool['cpu_percent']['switch'], tool['cpu_percent']['clients'], tool['cpu_percent']['main'], tool['cpu_percent_total'],
        tool['client_lines'], tool['client_lines_fast'], tool['client_lines_json']))
    p('          client loop: longest round %s ms, %d rounds >= 5 ms; waiting for a CPU (%% of the load period, all threads): %s' % (
        tool['client_loop_max_ms'], tool['client_loops_over_5ms'], rep['runqueue_wait_percent']))
    for s in rep['client_samples'][:8]:
        p('          client: %s' % s)
    for s in rep['client_error_samples']:
        p('          client error: %s' % s)


def print_monitor(rep, out):
    p = lambda *x: print(*x, file=out)
    gw, sw = rep['ctigate'], rep['switch']
    p('')
    p('== ctigate monitor start-up: %d configured devices ==' % rep['devices'])
    p('after association: every MonitorStart answered %s s, every SnapshotDevice answered %s s, status all active %s s '
      '=> all monitored %s s (%s devices/s)' % (rep['all_monitor_start_answered_s'], rep['all_snapshot_answered_s'],
                                                 rep['status_all_active_s'], rep['all_monitored_s'], rep['monitors_per_s']))
    p('status    pbx_monitors %s (%d polls; status line %s octets)' % (rep['last_pbx_monitors'], rep['status_polls'], rep['status_line_octets']))
    p('ctigate   RSS: %s MiB with no devices configured (baseline), %s MiB before association, %s MiB after, peak %s MiB' % (
        gw['rss_mib_baseline_no_devices'], gw['rss_mib_before_association'], gw['rss_mib_after'], gw['peak_rss_mib']))
    p('          per device: %s octets (after - baseline, the configuration included), %s at the peak, %s since association; '
      'CPU %s %% of one core; NDJSON port ready %s s after spawn' % (
          gw['octets_per_device_incl_config'], gw['octets_per_device_at_peak'], gw['octets_per_device_since_association'],
          gw['cpu_percent'], rep['ndjson_port_ready_s']))
    for w in gw['log_warnings'][:6]:
        p('          log: %s' % w[:300])
    p('switch    received %s; other PDUs %s; re-monitors %d; answers %d: p50 %s ms, p99 %s ms, max %s ms, %d over 1 ms; CPU %s %%' % (
        sw['operations_received'], sw['other_pdus'] or 'none', sw['remonitors'], sw['answers'], sw['answer_p50_ms'],
        sw['answer_p99_ms'], sw['answer_max_ms'], sw['answers_over_1ms'], sw['cpu_percent']))
    ec = sw['encoding_checks']
    p('          answers byte-identical to asn1tools: %s; fast parse re-checked with asn1tools: %s, mismatches %d' % (
        ec.get('answers_checked'), sw['fast_parse_checked'], len(sw['fast_parse_mismatch'])))


def main(argv):
    ap = argparse.ArgumentParser(description='Independent load tool for ctigate (switch + NDJSON clients); see tests/load/README.md')
    ap.add_argument('--bin', default=os.path.join(REPO, 'target', 'release', 'ctigate'), help='the ctigate binary')
    ap.add_argument('--peer', default=DEFAULT_PEER, help='cstapeer.py (oracle.py and the ASN.1 beside it)')
    ap.add_argument('--rate', type=int, help='switch events per second (100000)')
    ap.add_argument('--clients', type=int, help='NDJSON clients, one device each (1000)')
    ap.add_argument('--seconds', type=float, help='seconds of load (20)')
    ap.add_argument('--warmup', type=float, default=0.0, help='seconds of load at the rate before the measured window: '
                    'their events count for loss and order, not for latency (0)')
    ap.add_argument('--drain', type=float, default=2.0, help='seconds to wait for the last events after the generator stops (2)')
    ap.add_argument('--monitor-devices', type=int, help='monitor mode: this many devices in the link\'s monitor list, no clients')
    ap.add_argument('--monitor-timeout', type=float, default=120.0, help='monitor mode: give up after this many seconds (120)')
    ap.add_argument('--quick', action='store_true', help='CI size: 100 clients, 5000 events/s, 5 s')
    ap.add_argument('--json', action='store_true', help='one JSON object on stdout (progress and the final count on stderr)')
    ap.add_argument('--dump-lines', metavar='FILE', help='append every line the first client receives to FILE (debugging)')
    ap.add_argument('--keep', metavar='DIR', help='keep the configuration and ctigate\'s log in DIR')
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    q = a.quick
    a.rate = a.rate if a.rate is not None else (5000 if q else 100000)
    a.clients = a.clients if a.clients is not None else (100 if q else 1000)
    a.seconds = a.seconds if a.seconds is not None else (5.0 if q else 20.0)
    errs = []
    if a.rate < 1 or a.clients < 1 or a.seconds <= 0 or a.drain < 0 or a.warmup < 0:
        errs.append('--rate, --clients and --seconds must be positive, --drain not negative')
    if a.monitor_devices is not None and a.monitor_devices < 2:
        errs.append('--monitor-devices must be at least 2')
    if a.monitor_devices is not None and q:
        errs.append('--quick and --monitor-devices are separate runs')
    for what, pth in (('--bin', a.bin), ('--peer', a.peer)):
        if not os.path.isfile(pth):
            errs.append('%s %s: no such file' % (what, pth))
    if errs:
        for e in errs:
            print('run.py: ' + e, file=sys.stderr)
        return 2
    a.bin, a.peer = os.path.abspath(a.bin), os.path.abspath(a.peer)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = (a.clients + 256) if a.monitor_devices is None else 1024
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
        except (ValueError, OSError):
            pass
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
            print('run.py: %d clients need %d file descriptors; the limit is %d (ulimit -n)' % (a.clients, need, hard), file=sys.stderr)
            return 2

    run = Run(a)
    out = sys.stdout
    def on_signal(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)      # also when started with SIGINT ignored (a background job)
    tmp = tempfile.TemporaryDirectory(prefix='ctigate-load-')
    run.workdir = a.keep or tmp.name
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    rep, err = None, None
    try:
        rep = run.monitor() if a.monitor_devices is not None else run.load()
    except KeyboardInterrupt:
        run.cleanup()
        print('interrupted', file=sys.stderr)
        return 130
    except RunError as e:
        err = str(e)
    finally:
        gw_tail = run.gw.tail(15) if run.gw else ''
        run.cleanup()
        tmp.cleanup()
    if rep is None:
        rep = {'mode': 'monitor' if a.monitor_devices is not None else 'load', 'error': err, 'ctigate_log_tail': gw_tail,
               'checks': [{'check': 'the run completed: %s' % err, 'pass': False}]}
    passed = sum(1 for c in rep['checks'] if c['pass'])
    failed = len(rep['checks']) - passed
    rep['passed'], rep['failed'] = passed, failed
    rep['summary'] = '%d passed, %d failed' % (passed, failed)
    if a.json:
        print(json.dumps(rep, separators=(',', ':')), file=out)
        print(rep['summary'], file=sys.stderr)
    else:
        if 'error' in rep:
            print('\nERROR: %s' % err, file=out)
            if gw_tail:
                print('ctigate log (last lines):\n' + '\n'.join('    ' + x for x in gw_tail.splitlines()), file=out)
        elif rep['mode'] == 'monitor':
            print_monitor(rep, out)
        else:
            print_load(rep, out)
        print('checks', file=out)
        for c in rep['checks']:
            print('  %s  %s' % ('PASS' if c['pass'] else 'FAIL', c['check']), file=out)
        print(rep['summary'], file=out)
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
