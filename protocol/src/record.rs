//! The record types a terminal signs, and their payload encoding.
//!
//! A payload is one UTF-8 JSON object. Its first two members are always
//! `"type"` (the record type) and `"v"` (the format version of that type);
//! the other members are those of the record struct, in declaration order.
//! Decoding is strict: unknown members, duplicate members, wrong types and
//! values outside the rules below are errors. Signatures cover the exact
//! bytes, so decoding never needs to reproduce them; [`Record::encode`] is
//! nevertheless deterministic.

use std::fmt;

use serde::de::{DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{DecodeError, FieldError};
use crate::ids::RecordId;
use crate::types::{
    Charge, Dose, Finger, IdentityEvidence, TemplateRef, TreatmentKind, check_code,
};

/// The largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Latest plausible timestamp (2200-01-01T00:00:00Z) in Unix milliseconds.
pub const MAX_TIMESTAMP_MS: i64 = 7_258_118_400_000;

/// The record types, each with its own signing context and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// One treatment session: check-in to check-out.
    Session,
    /// A patient's finger enrolled on a terminal.
    Enrolment,
}

impl RecordType {
    pub const ALL: [RecordType; 2] = [RecordType::Session, RecordType::Enrolment];

    /// The `type` member of the payload and the envelope.
    pub fn code(self) -> &'static str {
        match self {
            RecordType::Session => "session",
            RecordType::Enrolment => "enrolment",
        }
    }

    pub fn from_code(code: &str) -> Option<RecordType> {
        RecordType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The format version this build writes and reads.
    pub fn version(self) -> u32 {
        1
    }

    /// The signing context: the bytes prepended to the payload before
    /// signing. Distinct per type and version, so a signature made for one
    /// can never be taken for another.
    pub fn context(self) -> &'static [u8] {
        match self {
            RecordType::Session => b"wuding/session/v1\0",
            RecordType::Enrolment => b"wuding/enrolment/v1\0",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Who the session or enrolment is for. Codes only: no names in records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientRef {
    /// The insured person's number (`psn_no` in the national platform).
    pub insured_id: String,
    /// UID of the insurance card tapped, upper-case hex (4, 7 or 10 bytes).
    pub card_uid: String,
}

/// What was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Treatment {
    pub kind: TreatmentKind,
    /// The service's code in the price list / national catalogue.
    pub service_code: String,
    /// Drug given or dispensed (五定 drug), national catalogue code.
    pub drug_code: Option<String>,
    /// Dose given (五定 dose); for radiotherapy, the fraction dose.
    pub dose: Option<Dose>,
}

/// One moment of a session at which the patient's presence was proven.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// Terminal clock, Unix milliseconds (UTC).
    pub at_ms: i64,
    pub identity: IdentityEvidence,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closure {
    /// Checked out with the patient present.
    Completed,
    /// No check-out within the configured time; the terminal closed the
    /// session itself. `check_out` is null.
    MissingCheckout,
}

/// One treatment session: who, what, where, when, and the chain position.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    pub terminal_id: String,
    /// Position in the terminal's chain, from 1, shared by all record types.
    pub seq: u64,
    /// Record id of the terminal's previous record (all zero for seq 1).
    pub prev: RecordId,
    /// Terminal clock when the record was signed, Unix milliseconds (UTC).
    pub signed_at_ms: i64,
    /// Local offset from UTC in minutes (480 for China Standard Time); the
    /// local date of check-in is the session's service date.
    pub utc_offset_min: i16,
    pub hospital_code: String,
    pub department_code: String,
    pub bed: String,
    /// Dialysis machine or treatment device, where one is used.
    pub machine: Option<String>,
    pub patient: PatientRef,
    pub nurse_id: String,
    pub doctor_id: String,
    pub treatment: Treatment,
    pub check_in: Attestation,
    pub check_out: Option<Attestation>,
    pub closure: Closure,
    pub charge: Charge,
}

/// A patient's finger enrolled on a terminal by a nurse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentRecord {
    pub terminal_id: String,
    pub seq: u64,
    pub prev: RecordId,
    pub signed_at_ms: i64,
    pub utc_offset_min: i16,
    pub hospital_code: String,
    pub department_code: String,
    pub patient: PatientRef,
    pub nurse_id: String,
    pub finger: Finger,
    /// Keyed reference to the template built from the captures.
    pub template_ref: TemplateRef,
    /// Captures merged into the template (2 or 3).
    pub captures: u8,
    /// Slot in the module's template library.
    pub module_slot: u16,
}

/// Any record a terminal signs.
// Sessions are nearly every record; boxing them would cost an allocation
// each to save space only on the rare enrolment.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Record {
    Session(SessionRecord),
    Enrolment(EnrolmentRecord),
}

/// The chain position of a record: what the chain verifier looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainLink {
    pub seq: u64,
    pub id: RecordId,
    pub prev: RecordId,
}

impl Record {
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::Session(_) => RecordType::Session,
            Record::Enrolment(_) => RecordType::Enrolment,
        }
    }

    pub fn terminal_id(&self) -> &str {
        match self {
            Record::Session(r) => &r.terminal_id,
            Record::Enrolment(r) => &r.terminal_id,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Record::Session(r) => r.seq,
            Record::Enrolment(r) => r.seq,
        }
    }

    pub fn prev(&self) -> RecordId {
        match self {
            Record::Session(r) => r.prev,
            Record::Enrolment(r) => r.prev,
        }
    }

    pub fn signed_at_ms(&self) -> i64 {
        match self {
            Record::Session(r) => r.signed_at_ms,
            Record::Enrolment(r) => r.signed_at_ms,
        }
    }

    pub fn hospital_code(&self) -> &str {
        match self {
            Record::Session(r) => &r.hospital_code,
            Record::Enrolment(r) => &r.hospital_code,
        }
    }

    /// Sets the chain position; used by the terminal when it signs.
    pub fn set_chain_position(&mut self, seq: u64, prev: RecordId) {
        match self {
            Record::Session(r) => {
                r.seq = seq;
                r.prev = prev;
            }
            Record::Enrolment(r) => {
                r.seq = seq;
                r.prev = prev;
            }
        }
    }

    /// The record's chain position, given its id.
    pub fn chain_link(&self, id: RecordId) -> ChainLink {
        ChainLink {
            seq: self.seq(),
            id,
            prev: self.prev(),
        }
    }

    /// Checks every rule of the format that serde's types do not express.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Record::Session(r) => r.validate(),
            Record::Enrolment(r) => r.validate(),
        }
    }

    /// The payload bytes: validated, deterministic JSON.
    pub fn encode(&self) -> Result<Vec<u8>, FieldError> {
        self.validate()?;
        let bytes = match self {
            Record::Session(r) => to_payload(RecordType::Session, r),
            Record::Enrolment(r) => to_payload(RecordType::Enrolment, r),
        };
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(FieldError::new("payload", "larger than the payload limit"));
        }
        Ok(bytes)
    }

    /// Decodes payload bytes, whatever their type.
    pub fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
        let header = read_header(payload)?;
        decode_body(header, payload)
    }

    /// Decodes payload bytes that must be of `expected` type (the type the
    /// envelope's signature context named).
    pub fn decode_as(expected: RecordType, payload: &[u8]) -> Result<Record, DecodeError> {
        let header = read_header(payload)?;
        if header.record_type != expected {
            return Err(DecodeError::WrongContext {
                expected,
                found: header.record_type,
            });
        }
        decode_body(header, payload)
    }
}

impl SessionRecord {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_header(
            &self.terminal_id,
            self.seq,
            self.prev,
            self.signed_at_ms,
            self.utc_offset_min,
        )?;
        check_code("hospital_code", &self.hospital_code, 32)?;
        check_code("department_code", &self.department_code, 32)?;
        check_code("bed", &self.bed, 16)?;
        if let Some(machine) = &self.machine {
            check_code("machine", machine, 32)?;
        }
        check_patient(&self.patient)?;
        check_code("nurse_id", &self.nurse_id, 32)?;
        check_code("doctor_id", &self.doctor_id, 32)?;
        let t = &self.treatment;
        check_code("treatment.service_code", &t.service_code, 32)?;
        if let Some(drug) = &t.drug_code {
            check_code("treatment.drug_code", drug, 32)?;
            if t.dose.is_none() {
                return Err(FieldError::new(
                    "treatment.dose",
                    "is required when a drug is named",
                ));
            }
        }
        if let Some(dose) = &t.dose {
            dose.validate()?;
        }
        if t.kind.requires_drug() && t.drug_code.is_none() {
            return Err(FieldError::new(
                "treatment.drug_code",
                "is required for CHEMO and ANTIREJECT",
            ));
        }
        check_time("check_in.at_ms", self.check_in.at_ms)?;
        self.check_in.identity.validate()?;
        match (&self.closure, &self.check_out) {
            (Closure::Completed, Some(out)) => {
                check_time("check_out.at_ms", out.at_ms)?;
                out.identity.validate()?;
                if out.at_ms < self.check_in.at_ms {
                    return Err(FieldError::new("check_out.at_ms", "is before check-in"));
                }
                if self.signed_at_ms < out.at_ms {
                    return Err(FieldError::new("signed_at_ms", "is before check-out"));
                }
            }
            (Closure::Completed, None) => {
                return Err(FieldError::new(
                    "check_out",
                    "is required for a completed session",
                ));
            }
            (Closure::MissingCheckout, None) => {}
            (Closure::MissingCheckout, Some(_)) => {
                return Err(FieldError::new(
                    "check_out",
                    "must be null when the check-out is missing",
                ));
            }
        }
        if self.signed_at_ms < self.check_in.at_ms {
            return Err(FieldError::new("signed_at_ms", "is before check-in"));
        }
        self.charge.validate()
    }

    /// Length of the session in minutes, if it was checked out.
    pub fn duration_min(&self) -> Option<i64> {
        self.check_out
            .as_ref()
            .map(|out| (out.at_ms - self.check_in.at_ms) / 60_000)
    }
}

impl EnrolmentRecord {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_header(
            &self.terminal_id,
            self.seq,
            self.prev,
            self.signed_at_ms,
            self.utc_offset_min,
        )?;
        check_code("hospital_code", &self.hospital_code, 32)?;
        check_code("department_code", &self.department_code, 32)?;
        check_patient(&self.patient)?;
        check_code("nurse_id", &self.nurse_id, 32)?;
        if !(2..=3).contains(&self.captures) {
            return Err(FieldError::new("captures", "must be 2 or 3"));
        }
        Ok(())
    }
}

fn check_header(
    terminal_id: &str,
    seq: u64,
    prev: RecordId,
    signed_at_ms: i64,
    utc_offset_min: i16,
) -> Result<(), FieldError> {
    check_code("terminal_id", terminal_id, 64)?;
    if seq == 0 || seq > crate::types::MAX_SAFE_INTEGER {
        return Err(FieldError::new("seq", "must be between 1 and 2^53-1"));
    }
    if (seq == 1) != (prev == RecordId::GENESIS) {
        return Err(FieldError::new(
            "prev",
            "must be all zero exactly when seq is 1",
        ));
    }
    check_time("signed_at_ms", signed_at_ms)?;
    if !(-720..=840).contains(&utc_offset_min) {
        return Err(FieldError::new(
            "utc_offset_min",
            "must be between -720 and 840",
        ));
    }
    Ok(())
}

fn check_time(field: &'static str, ms: i64) -> Result<(), FieldError> {
    if ms <= 0 || ms > MAX_TIMESTAMP_MS {
        return Err(FieldError::new(
            field,
            "is not a plausible Unix time in milliseconds",
        ));
    }
    Ok(())
}

fn check_patient(p: &PatientRef) -> Result<(), FieldError> {
    check_code("patient.insured_id", &p.insured_id, 32)?;
    let uid = &p.card_uid;
    let ok_len = matches!(uid.len(), 8 | 14 | 20);
    let ok_chars = uid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    if !ok_len || !ok_chars {
        return Err(FieldError::new(
            "patient.card_uid",
            "must be upper-case hex of a 4-, 7- or 10-byte UID",
        ));
    }
    Ok(())
}

// ---- encoding -------------------------------------------------------------

#[derive(Serialize)]
struct Out<'a, T> {
    #[serde(rename = "type")]
    record_type: &'static str,
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

fn to_payload<T: Serialize>(record_type: RecordType, body: &T) -> Vec<u8> {
    let out = Out {
        record_type: record_type.code(),
        v: record_type.version(),
        body,
    };
    // Serialising plain structs of strings and integers cannot fail.
    serde_json::to_vec(&out).expect("record types serialise infallibly")
}

// ---- decoding -------------------------------------------------------------

struct Header {
    record_type: RecordType,
}

/// First pass: size, UTF-8, and the `type`/`v` header (ignoring the rest),
/// so that wrong-context and wrong-version payloads get typed errors.
fn read_header(payload: &[u8]) -> Result<Header, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::Oversized {
            len: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    if let Err(e) = std::str::from_utf8(payload) {
        return Err(DecodeError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        });
    }
    #[derive(Deserialize)]
    struct Lenient {
        #[serde(rename = "type")]
        record_type: Option<String>,
        v: Option<u64>,
    }
    let lenient: Lenient = serde_json::from_slice(payload).map_err(DecodeError::from_json)?;
    let (Some(code), Some(v)) = (lenient.record_type, lenient.v) else {
        return Err(DecodeError::MissingHeader);
    };
    let record_type = RecordType::from_code(&code).ok_or(DecodeError::UnknownType(code))?;
    if v != u64::from(record_type.version()) {
        return Err(DecodeError::UnsupportedVersion {
            record_type,
            found: v,
            supported: record_type.version(),
        });
    }
    Ok(Header { record_type })
}

fn decode_body(header: Header, payload: &[u8]) -> Result<Record, DecodeError> {
    let record = match header.record_type {
        RecordType::Session => Record::Session(strict_from_slice(payload)?),
        RecordType::Enrolment => Record::Enrolment(strict_from_slice(payload)?),
    };
    record.validate()?;
    Ok(record)
}

/// Deserialises the whole payload into `T` (which denies unknown fields),
/// skipping the `type` and `v` members already checked by [`read_header`].
fn strict_from_slice<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = de
        .deserialize_map(SkipHeaderVisitor::<T>(std::marker::PhantomData))
        .map_err(DecodeError::from_json)?;
    de.end().map_err(DecodeError::from_json)?;
    Ok(value)
}

struct SkipHeaderVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SkipHeaderVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let filtered = SkipHeader {
            inner: map,
            seen_type: false,
            seen_v: false,
        };
        T::deserialize(serde::de::value::MapAccessDeserializer::new(filtered))
    }
}

/// A map view that hides the header members from the record struct's
/// derived deserializer (which denies unknown fields) and refuses a
/// duplicated header member.
struct SkipHeader<A> {
    inner: A,
    seen_type: bool,
    seen_v: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipHeader<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<String>()? else {
                return Ok(None);
            };
            let seen = match key.as_str() {
                "type" => &mut self.seen_type,
                "v" => &mut self.seen_v,
                _ => return seed.deserialize(key.into_deserializer()).map(Some),
            };
            if *seen {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate field `{key}`"
                )));
            }
            *seen = true;
            self.inner.next_value::<serde::de::IgnoredAny>()?;
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}
