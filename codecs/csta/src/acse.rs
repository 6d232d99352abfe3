//! ACSE APDUs (X.227bis ACSE-1, as in Wireshark's acse.asn): AARQ, AARE, RLRQ, RLRE,
//! ABRT, with the CSTA user information of ECMA-285 module
//! CSTA-application-context-information-csta3 (EXTERNAL direct-reference 1.3.12.0.285.200).
//!
//! The APDU is kept as a full [`Value`] (every field, re-encoded canonically); the
//! accessors and builders below cover what a CSTA link uses.

use crate::ber::Limits;
use crate::codec;
use crate::error::{DecodeError, EncodeError};
use crate::oid::Oid;
use crate::schema::ty;
use crate::value::{Member, Value};
use bytes::Bytes;

/// EXTERNAL direct-reference of the CSTA user information (WIRE.md §3.2).
pub const CSTA_USER_INFO_OID: &str = "1.3.12.0.285.200";
/// Application context used by Panasonic and most Phase III links (WIRE.md §3.3).
pub const DEFAULT_CONTEXT: &str = "1.3.12.0.218";

/// CSTAVersion bit numbers (acse_user_info_csta.asn1).
pub mod version {
    pub const ECMA_180: u32 = 0;
    pub const ECMA_218: u32 = 1;
    pub const ECMA_285_ED1: u32 = 2;
    pub const ISO_18052: u32 = 3;
    pub const ECMA_285_ED2: u32 = 4;
    pub const ECMA_285_ED3: u32 = 14;
    pub const ECMA_285_ED4: u32 = 18;
    /// What we announce by default: every edition of ECMA-285.
    pub const PHASE3_ALL: &[u32] = &[ECMA_285_ED1, ECMA_285_ED2, ECMA_285_ED3, ECMA_285_ED4];
}

/// Which ACSE APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcseKind {
    Aarq,
    Aare,
    Rlrq,
    Rlre,
    Abrt,
    Adt,
    Acrq,
    Acrp,
}

impl AcseKind {
    pub fn name(self) -> &'static str {
        match self {
            AcseKind::Aarq => "aarq",
            AcseKind::Aare => "aare",
            AcseKind::Rlrq => "rlrq",
            AcseKind::Rlre => "rlre",
            AcseKind::Abrt => "abrt",
            AcseKind::Adt => "adt",
            AcseKind::Acrq => "acrq",
            AcseKind::Acrp => "acrp",
        }
    }
    fn from_name(n: &str) -> Option<AcseKind> {
        Some(match n {
            "aarq" => AcseKind::Aarq,
            "aare" => AcseKind::Aare,
            "rlrq" => AcseKind::Rlrq,
            "rlre" => AcseKind::Rlre,
            "abrt" => AcseKind::Abrt,
            "adt" => AcseKind::Adt,
            "acrq" => AcseKind::Acrq,
            "acrp" => AcseKind::Acrp,
            _ => return None,
        })
    }
}

/// An ACSE APDU: its kind and its SEQUENCE value.
#[derive(Debug, Clone, PartialEq)]
pub struct Acse {
    pub kind: AcseKind,
    pub value: Value,
}

/// AARE result (X.227 Associate-result).
pub mod result {
    pub const ACCEPTED: i64 = 0;
    pub const REJECTED_PERMANENT: i64 = 1;
    pub const REJECTED_TRANSIENT: i64 = 2;
}

/// Service-user diagnostics of an AARE (X.227 Associate-source-diagnostic).
pub fn service_user_diagnostic_name(v: i64) -> &'static str {
    match v {
        0 => "null",
        1 => "no-reason-given",
        2 => "application-context-name-not-supported",
        3 => "calling-AP-title-not-recognized",
        4 => "calling-AP-invocation-identifier-not-recognized",
        5 => "calling-AE-qualifier-not-recognized",
        6 => "calling-AE-invocation-identifier-not-recognized",
        7 => "called-AP-title-not-recognized",
        8 => "called-AP-invocation-identifier-not-recognized",
        9 => "called-AE-qualifier-not-recognized",
        10 => "called-AE-invocation-identifier-not-recognized",
        11 => "authentication-mechanism-name-not-recognized",
        12 => "authentication-mechanism-name-required",
        13 => "authentication-failure",
        14 => "authentication-required",
        _ => "unknown",
    }
}

/// Parameters of an AARQ we send.
#[derive(Debug, Clone)]
pub struct AarqParams {
    pub context: Oid,
    /// CSTAVersion bits announced in the user information (newDefinition).
    pub versions: Vec<u32>,
    /// ACSE authentication: mechanism name (optional) and a password-like charstring.
    pub mechanism: Option<Oid>,
    pub authentication: Option<String>,
}

impl Default for AarqParams {
    fn default() -> Self {
        AarqParams {
            context: DEFAULT_CONTEXT.parse().expect("valid constant OID"),
            versions: version::PHASE3_ALL.to_vec(),
            mechanism: None,
            authentication: None,
        }
    }
}

/// The decoded CSTA user information.
#[derive(Debug, Clone, PartialEq)]
pub struct CstaUserInfo {
    /// `newDefinition` (true) or `oldDefinition`.
    pub new_definition: bool,
    /// CSTAVersion bits that are set.
    pub versions: Vec<u32>,
    /// The whole ACSEUserInformationForCSTA value.
    pub value: Value,
}

fn member(name: &'static str, value: Value) -> Member {
    Member { name, value }
}

fn user_information(versions: &[u32]) -> Result<Value, EncodeError> {
    // CSTAVersion in whole octets, at least two (as switches send it: `03 03 00 08 00`)
    let data = match Value::bits_from(versions).bits_parts() {
        Some((_, d)) => d.to_vec(),
        None => Vec::new(),
    };
    let mut octets = data;
    octets.resize(octets.len().max(2), 0);
    let bits = Value::bits(0, &octets);
    let ui = Value::alt(
        "newDefinition",
        Value::Seq(vec![member("cSTAVersion", bits)]),
    );
    let bytes = codec::encode(ty::ACSEUserInformationForCSTA, &ui)?;
    let oid: Oid = CSTA_USER_INFO_OID.parse().expect("valid constant OID");
    Ok(Value::List(vec![Value::Seq(vec![
        member("direct-reference", Value::Oid(oid.0)),
        member(
            "encoding",
            Value::alt("single-ASN1-type", Value::Raw(Bytes::from(bytes))),
        ),
    ])]))
}

impl Acse {
    /// Decode an ACSE APDU that fills `buf`.
    pub fn decode(buf: &Bytes, limits: &Limits) -> Result<Acse, DecodeError> {
        let v = codec::decode_with(ty::ACSE_apdu, buf, limits)?;
        match v {
            Value::Choice(name, inner) => match AcseKind::from_name(name) {
                Some(kind) => Ok(Acse {
                    kind,
                    value: *inner,
                }),
                None => Err(DecodeError::new(
                    crate::error::DecodeErrorKind::InvalidValue("ACSE APDU"),
                    0,
                )),
            },
            _ => Err(DecodeError::new(
                crate::error::DecodeErrorKind::UnexpectedTag {
                    found: crate::schema::Tag::new(
                        crate::schema::Class::Application,
                        u32::from(buf[0] & 0x1f),
                    ),
                    constructed: buf[0] & 0x20 != 0,
                },
                0,
            )
            .within("ACSE-apdu")),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(
            ty::ACSE_apdu,
            &Value::alt(self.kind.name(), self.value.clone()),
        )
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // the CHOICE wrapper is transparent on the wire: encode the alternative directly
        let alt = crate::schema::alternatives(ty::ACSE_apdu)
            .iter()
            .find(|a| a.name == self.kind.name())
            .ok_or_else(|| EncodeError::new("unknown ACSE alternative"))?;
        codec::encode_into(alt.ty, &self.value, out)
    }

    /// AARQ (X.227 §7.1.1) with the CSTA user information and optional authentication.
    pub fn aarq(p: &AarqParams) -> Result<Acse, EncodeError> {
        let mut m = vec![member("aSO-context-name", Value::Oid(p.context.0.clone()))];
        if p.authentication.is_some() || p.mechanism.is_some() {
            // ACSE-requirements bit 0: authentication
            m.push(member("sender-acse-requirements", Value::bits_from(&[0])));
        }
        if let Some(mech) = &p.mechanism {
            m.push(member("mechanism-name", Value::Oid(mech.0.clone())));
        }
        if let Some(pw) = &p.authentication {
            m.push(member(
                "calling-authentication-value",
                Value::alt("charstring", Value::str(pw)),
            ));
        }
        m.push(member("user-information", user_information(&p.versions)?));
        Ok(Acse {
            kind: AcseKind::Aarq,
            value: Value::Seq(m),
        })
    }

    /// AARE answering an AARQ: accepted, or rejected with a service-user diagnostic.
    pub fn aare(
        context: &Oid,
        result: i64,
        diagnostic: i64,
        versions: Option<&[u32]>,
    ) -> Result<Acse, EncodeError> {
        let mut m = vec![
            member("aSO-context-name", Value::Oid(context.0.clone())),
            member("result", Value::Integer(result)),
            member(
                "result-source-diagnostic",
                Value::alt("service-user", Value::Integer(diagnostic)),
            ),
        ];
        if let Some(v) = versions {
            m.push(member("user-information", user_information(v)?));
        }
        Ok(Acse {
            kind: AcseKind::Aare,
            value: Value::Seq(m),
        })
    }

    /// RLRQ / RLRE with reason normal (0).
    pub fn rlrq(reason: i64) -> Acse {
        Acse {
            kind: AcseKind::Rlrq,
            value: Value::Seq(vec![member("reason", Value::Integer(reason))]),
        }
    }
    pub fn rlre(reason: i64) -> Acse {
        Acse {
            kind: AcseKind::Rlre,
            value: Value::Seq(vec![member("reason", Value::Integer(reason))]),
        }
    }
    /// ABRT: abort-source service-user (0) or service-provider (1), optional diagnostic.
    pub fn abrt(source: i64, diagnostic: Option<i64>) -> Acse {
        let mut m = vec![member("abort-source", Value::Integer(source))];
        if let Some(d) = diagnostic {
            m.push(member("abort-diagnostic", Value::Enumerated(d)));
        }
        Acse {
            kind: AcseKind::Abrt,
            value: Value::Seq(m),
        }
    }

    // -- accessors --
    pub fn context_name(&self) -> Option<Oid> {
        match self.value.get("aSO-context-name")? {
            Value::Oid(b) => Some(Oid(b.clone())),
            _ => None,
        }
    }
    /// AARE result (0 accepted).
    pub fn result(&self) -> Option<i64> {
        self.value.get("result")?.as_int()
    }
    /// AARE result-source-diagnostic: (`service-user` | `service-provider`, value).
    pub fn diagnostic(&self) -> Option<(&'static str, i64)> {
        let (n, v) = self.value.get("result-source-diagnostic")?.choice()?;
        Some((n, v.as_int()?))
    }
    /// RLRQ/RLRE reason.
    pub fn reason(&self) -> Option<i64> {
        self.value.get("reason")?.as_int()
    }
    /// ABRT abort-source and abort-diagnostic.
    pub fn abort_source(&self) -> Option<i64> {
        self.value.get("abort-source")?.as_int()
    }
    pub fn abort_diagnostic(&self) -> Option<i64> {
        self.value.get("abort-diagnostic")?.as_int()
    }
    /// The calling/responding authentication value when it is a charstring.
    pub fn authentication(&self) -> Option<String> {
        let v = self
            .value
            .get("calling-authentication-value")
            .or_else(|| self.value.get("responding-authentication-value"))?;
        match v.choice()? {
            ("charstring", s) => s.as_str().map(|s| s.into_owned()),
            _ => None,
        }
    }
    pub fn mechanism(&self) -> Option<Oid> {
        match self.value.get("mechanism-name")? {
            Value::Oid(b) => Some(Oid(b.clone())),
            _ => None,
        }
    }
    /// The CSTA user information, when present and decodable.
    pub fn csta_user_info(&self) -> Option<CstaUserInfo> {
        let want: Oid = CSTA_USER_INFO_OID.parse().ok()?;
        for ext in self.value.get("user-information")?.as_list()? {
            let is_csta =
                matches!(ext.get("direct-reference"), Some(Value::Oid(b)) if *b == want.0);
            if !is_csta {
                continue;
            }
            if let Some(("single-ASN1-type", Value::Raw(raw))) =
                ext.get("encoding").and_then(|e| e.choice())
            {
                let v = codec::decode(ty::ACSEUserInformationForCSTA, raw).ok()?;
                let (alt, body) = v.choice()?;
                let versions = body
                    .get("cSTAVersion")
                    .map(|b| b.bits_set())
                    .unwrap_or_default();
                return Some(CstaUserInfo {
                    new_definition: alt == "newDefinition",
                    versions,
                    value: v,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::hex;

    #[test]
    fn real_aare_decodes_and_drops_the_default() {
        let b = hex("612f80020780a10706052b0c00815aa203020100a305a103020101be14281206072b0c00821d8148a007a0050303000800");
        let a = Acse::decode(&b, &Limits::DEFAULT).unwrap();
        assert_eq!(a.kind, AcseKind::Aare);
        assert_eq!(a.context_name().unwrap().to_string(), "1.3.12.0.218");
        assert_eq!(a.result(), Some(0));
        assert_eq!(a.diagnostic(), Some(("service-user", 1)));
        let ui = a.csta_user_info().unwrap();
        assert!(ui.new_definition);
        assert_eq!(ui.versions, vec![version::ECMA_285_ED2]);
        // protocol-version {version1} is the DEFAULT: omitted on output
        assert_eq!(
            a.encode().unwrap(),
            hex("612ba10706052b0c00815aa203020100a305a103020101be14281206072b0c00821d8148a007a0050303000800").to_vec()
        );
    }

    #[test]
    fn aarq_matches_the_vector() {
        let p = AarqParams {
            versions: vec![version::ECMA_285_ED2],
            ..Default::default()
        };
        let a = Acse::aarq(&p).unwrap();
        assert_eq!(
            a.encode().unwrap(),
            hex("601fa10706052b0c00815abe14281206072b0c00821d8148a007a0050303000800").to_vec()
        );
    }

    #[test]
    fn release_and_abort() {
        assert_eq!(
            Acse::rlrq(0).encode().unwrap(),
            vec![0x62, 0x03, 0x80, 0x01, 0x00]
        );
        assert_eq!(
            Acse::rlre(0).encode().unwrap(),
            vec![0x63, 0x03, 0x80, 0x01, 0x00]
        );
        assert_eq!(
            Acse::abrt(0, None).encode().unwrap(),
            vec![0x64, 0x03, 0x80, 0x01, 0x00]
        );
    }

    #[test]
    fn authentication_round_trips() {
        let p = AarqParams {
            authentication: Some("secret".into()),
            mechanism: Some("2.16.840.1.113726.1.1".parse().unwrap()),
            ..Default::default()
        };
        let bytes = Bytes::from(Acse::aarq(&p).unwrap().encode().unwrap());
        let a = Acse::decode(&bytes, &Limits::DEFAULT).unwrap();
        assert_eq!(a.authentication().as_deref(), Some("secret"));
        assert_eq!(a.mechanism().unwrap().to_string(), "2.16.840.1.113726.1.1");
        assert_eq!(a.csta_user_info().unwrap().versions, version::PHASE3_ALL);
    }
}
