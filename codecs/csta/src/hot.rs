//! The hot path of a busy link: the cSTAEventReports that make most of a switch's traffic
//! (`delivered`, `established`, `connectionCleared`, and `held`, `retrieved` and
//! `serviceInitiated`, in their common shape) read straight
//! into the typed view, without the schema-driven value tree in between.
//!
//! [`event_report`] answers `Some` only for a PDU it reads completely, and then its answer
//! is the one the general path gives ([`Apdu::decode`](crate::Apdu::decode), then
//! [`EventReport::from_invoke_lenient`](crate::rose_ext::ReportFromInvoke)): the same
//! report, field for field. Anything else (another operation or event, an optional
//! component it does not read, vendor data, an extension, an indefinite length, a value
//! the general path would refuse) gives `None`, and the caller decodes the PDU the
//! general way. It never decides what a PDU means on its own: the unit tests compare the
//! two paths on every form it reads and on 300 000 mutations, and the `hot_event` fuzz target
//! asserts the same for any input.
//!
//! What it reads (ECMA-285; tags as on the wire):
//! `a1 { 02 invokeId, 02 opcode 21, 30 { 55 crossRefIdentifier, a0 { event } } }`, the
//! event (a3 a4 a7 a9 af b0) being its mandatory components, `localConnectionInfo` (4e)
//! when present, and `cause` (0a). A ConnectionID (6b) is `callID` (80), or `both` (30) with a static
//! DeviceID or a dynamicID (83); a device (61 62 63 64) is a DeviceID of one
//! `dialingNumber` (80, IA5) or `deviceNumber` (81), or one of the NULL alternatives.

use crate::ber::{self, Limits};
use crate::events::{
    ConnectionClearedEvent, DeliveredEvent, EstablishedEvent, Event, EventReport, HeldEvent,
    RetrievedEvent, ServiceInitiatedEvent,
};
use crate::rose::{Code, Rose};
use crate::rose_ext::ReportFromInvoke;
use crate::types::TypeError;
use crate::types::{
    CallId, ConnectionId, DeviceId, DeviceIdentifier, EventCause, LocalConnectionState,
    LocalDeviceId, MonitorCrossRefId, Party, Redirection,
};
use bytes::Bytes;

/// cSTAEventReport's local operation code.
const OP_EVENT_REPORT: i64 = 21;

/// The report of `pdu` (one whole ROSE APDU, unframed) when it is one of the common
/// event shapes; `None` otherwise (decode it the general way).
pub fn event_report(pdu: &Bytes) -> Option<EventReport> {
    if pdu.len() > Limits::DEFAULT.max_pdu {
        return None;
    }
    let mut top = Reader {
        buf: pdu,
        pos: 0,
        end: pdu.len(),
    };
    let mut invoke = top.constructed(0xa1)?;
    top.done()?;
    invoke.integer(0x02)?; // invokeId (an event report is not answered)
    if invoke.integer(0x02)? != OP_EVENT_REPORT {
        return None;
    }
    let mut arg = invoke.constructed(0x30)?;
    invoke.done()?;
    let xref = MonitorCrossRefId(arg.octets(0x55)?);
    let mut esi = arg.constructed(0xa0)?; // callControlEvents [0]
    arg.done()?;
    let tag = esi.peek()?;
    let mut ev = esi.constructed(tag)?;
    esi.done()?;
    // the events of one layout differ only in their type and the names of its fields
    macro_rules! call_event {
        ($ty:ident, $variant:ident) => {{
            let (connection, subject, calling, called, redirection, local, cause) =
                ev.call_event()?;
            let mut e = $ty::new(connection, subject, calling, called, redirection, cause);
            e.local_connection_info = local;
            Event::$variant(e)
        }};
    }
    macro_rules! subject_event {
        ($ty:ident, $variant:ident) => {{
            let (connection, subject, local, cause) = ev.subject_event()?;
            let mut e = $ty::new(connection, subject, cause);
            e.local_connection_info = local;
            Event::$variant(e)
        }};
    }
    let event = match tag {
        0xa4 => call_event!(DeliveredEvent, Delivered),
        0xa7 => call_event!(EstablishedEvent, Established),
        0xa3 => subject_event!(ConnectionClearedEvent, ConnectionCleared),
        0xa9 => subject_event!(HeldEvent, Held),
        0xaf => subject_event!(RetrievedEvent, Retrieved),
        // without its optional calledDevice (then `cause` does not come where read)
        0xb0 => subject_event!(ServiceInitiatedEvent, ServiceInitiated),
        _ => return None,
    };
    Some(EventReport::new(xref, event))
}

/// What the general path makes of `pdu` when it is a cSTAEventReport invoke: the schema
/// decoder's value tree, then the lenient typed report (what the link gives for every PDU
/// [`event_report`] leaves to it); `None` for any other PDU or one that does not decode.
/// The reference [`event_report`] is compared with (tests, the fuzz target, the bench).
pub fn general_event_report(pdu: &Bytes) -> Option<Result<EventReport, TypeError>> {
    match crate::Apdu::decode(pdu) {
        Ok(crate::Apdu::Rose(Rose::Invoke(inv))) if inv.opcode == Code::Local(OP_EVENT_REPORT) => {
            Some(EventReport::from_invoke_lenient(&inv))
        }
        _ => None,
    }
}

/// The TLVs of one constructed value (or of the PDU), read in order. Only low tag numbers
/// and definite lengths in at most two length octets (the forms `ber::read_tlv` reads
/// without its general parser); the identifier octet is matched whole, so the class and
/// the primitive/constructed form are checked with the tag.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// The identifier octet of the next TLV, if any.
    fn peek(&self) -> Option<u8> {
        if self.pos < self.end {
            Some(self.buf[self.pos])
        } else {
            None
        }
    }

    /// Nothing left.
    fn done(&self) -> Option<()> {
        (self.pos == self.end).then_some(())
    }

    /// The next TLV when its identifier octet is `id`: its content range.
    fn tlv(&mut self, id: u8) -> Option<(usize, usize)> {
        if self.peek()? != id {
            return None;
        }
        // the header forms `ber::read_tlv` reads without its general parser
        let (hdr, _, _, len) = ber::fast_header(&self.buf[self.pos..self.end])?;
        let start = self.pos + hdr;
        let end = start.checked_add(len)?;
        if end > self.end {
            return None;
        }
        self.pos = end;
        Some((start, end))
    }

    fn constructed(&mut self, id: u8) -> Option<Reader<'a>> {
        let (start, end) = self.tlv(id)?;
        Some(Reader {
            buf: self.buf,
            pos: start,
            end,
        })
    }

    fn octets(&mut self, id: u8) -> Option<Bytes> {
        let (start, end) = self.tlv(id)?;
        Some(self.buf.slice(start..end))
    }

    fn integer(&mut self, id: u8) -> Option<i64> {
        let (start, end) = self.tlv(id)?;
        ber::parse_integer(&self.buf[start..end], start).ok()
    }

    /// A NULL alternative: no content octets.
    fn null(&mut self, id: u8) -> Option<()> {
        let (start, end) = self.tlv(id)?;
        (start == end).then_some(())
    }

    /// The whole of a `delivered` or `established` event, which share their layout: the
    /// connection, the subject device (alerting or answering), the calling, called and last
    /// redirection devices, `localConnectionInfo` when present, and `cause`.
    #[allow(clippy::type_complexity)]
    fn call_event(
        &mut self,
    ) -> Option<(
        ConnectionId,
        Party,
        Party,
        Party,
        Redirection,
        Option<LocalConnectionState>,
        EventCause,
    )> {
        let connection = self.connection()?;
        let subject = self.party(0x63)?;
        let calling = self.party(0x61)?;
        let called = self.party(0x62)?;
        let redirection = self.redirection()?;
        let local = self.local_state()?;
        let cause = self.cause()?;
        self.done()?;
        Some((
            connection,
            subject,
            calling,
            called,
            redirection,
            local,
            cause,
        ))
    }

    /// The whole of an event made of a connection, its subject device,
    /// `localConnectionInfo` when present, and `cause` (`connectionCleared`, `held`,
    /// `retrieved`, `serviceInitiated`).
    fn subject_event(
        &mut self,
    ) -> Option<(
        ConnectionId,
        Party,
        Option<LocalConnectionState>,
        EventCause,
    )> {
        let connection = self.connection()?;
        let subject = self.party(0x63)?;
        let local = self.local_state()?;
        let cause = self.cause()?;
        self.done()?;
        Some((connection, subject, local, cause))
    }

    /// `ConnectionID` (6b, an explicit tag on the CHOICE).
    fn connection(&mut self) -> Option<ConnectionId> {
        let mut c = self.constructed(0x6b)?;
        let id = match c.peek()? {
            0x80 => ConnectionId {
                call: Some(CallId(c.octets(0x80)?)),
                device: None,
            },
            0x30 => {
                let mut both = c.constructed(0x30)?;
                let call = CallId(both.octets(0x80)?);
                let mut dev = both.constructed(0xa1)?;
                both.done()?;
                let local = match dev.peek()? {
                    0x30 => LocalDeviceId::Static(dev.device_id()?),
                    0x83 => LocalDeviceId::Dynamic(dev.octets(0x83)?),
                    _ => return None,
                };
                dev.done()?;
                ConnectionId {
                    call: Some(call),
                    device: Some(local),
                }
            }
            _ => return None,
        };
        c.done()?;
        Some(id)
    }

    /// `DeviceID` (30) holding only its `deviceIdentifier`, a dialing or device number.
    fn device_id(&mut self) -> Option<DeviceId> {
        let mut d = self.constructed(0x30)?;
        let id = match d.peek()? {
            0x80 => {
                let (start, end) = d.tlv(0x80)?;
                let s = &self.buf[start..end];
                // NumberDigits ::= IA5String
                if !s.is_ascii() {
                    return None;
                }
                DeviceIdentifier::DialingNumber(std::str::from_utf8(s).ok()?.to_owned())
            }
            0x81 => DeviceIdentifier::DeviceNumber(d.integer(0x81)?),
            _ => return None,
        };
        d.done()?;
        Some(DeviceId::from(id))
    }

    /// A party wrapper (`SubjectDeviceID` 63, `CallingDeviceID` 61, `CalledDeviceID` 62).
    fn party(&mut self, id: u8) -> Option<Party> {
        let mut p = self.constructed(id)?;
        let party = match p.peek()? {
            0x30 => Party::Device(p.device_id()?),
            0x87 => p.null(0x87).map(|()| Party::NotKnown)?,
            0x88 => p.null(0x88).map(|()| Party::Restricted)?,
            _ => return None,
        };
        p.done()?;
        Some(party)
    }

    /// `RedirectionDeviceID` (64).
    fn redirection(&mut self) -> Option<Redirection> {
        let mut r = self.constructed(0x64)?;
        let red = match r.peek()? {
            0x30 => Redirection::NumberDialed(r.device_id()?),
            0x87 => r.null(0x87).map(|()| Redirection::NotKnown)?,
            0x88 => r.null(0x88).map(|()| Redirection::NotRequired)?,
            0x89 => r.null(0x89).map(|()| Redirection::NotSpecified)?,
            0x8a => r.null(0x8a).map(|()| Redirection::Restricted)?,
            _ => return None,
        };
        r.done()?;
        Some(red)
    }

    /// `localConnectionInfo` (4e) when it comes next: `Some(None)` when it does not.
    fn local_state(&mut self) -> Option<Option<LocalConnectionState>> {
        if self.peek()? != 0x4e {
            return Some(None);
        }
        Some(Some(LocalConnectionState::from_i64(self.integer(0x4e)?)))
    }

    /// `cause` (0a).
    fn cause(&mut self) -> Option<EventCause> {
        self.integer(0x0a).map(EventCause)
    }
}

#[cfg(test)]
mod tests;
