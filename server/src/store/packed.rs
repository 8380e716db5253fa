//! Rows packed into one value each, as the SQLite store keeps them:
//! a session record's facts beside the signed record
//! (`attested_sessions.facts`) and a claim line's fields beside its key
//! (`claims.line`).
//!
//! Reconciliation reads every session and claim line of a period, hundreds
//! of thousands a part: SQLite's work per column read was the larger share
//! of loading a part (docs/rules.md, "Packed session facts" and "Packed
//! claim lines"); one value per row is read once and unpacked here.
//!
//! Session facts are derived (rebuilt from the signed payloads whenever
//! the table is dropped), so their layout can change with a migration that
//! empties the table. Claim lines are kept nowhere else: a new layout needs
//! a migration that converts them (a version byte leads every value).
//!
//! Session facts, version 1: the version byte, then in order
//! `received_at_ms`, `signed_at_ms`, `utc_offset_min` (zigzag varints),
//! `terminal_id`, `hospital_code`, `department_code`, `nurse_id`,
//! `doctor_id`, `kind` (strings: varint length, UTF-8 bytes), a flags byte
//! (which optional facts follow, and the closure), `drug_code`,
//! `dose_milli` and `dose_unit`, `check_in_ms`, `check_in_fallback`,
//! `check_out_ms`, `check_out_fallback` (each present or not as the flags
//! say), `charge_fen` (varint). Nothing may follow.
//!
//! Claim line, version 1: the version byte, `hospital_code`,
//! `department_code`, `doctor_id`, `service_code`, `service_kind`
//! (strings), `quantity`, `amount_fen` (zigzag varints, checked when
//! unpacked), a flags byte, `drug_code` and `dose_milli` (zigzag) with
//! `dose_unit` when the flags say. The key (service date, patient, claim
//! id) and the source file stay in columns. Nothing may follow.

use wuding_protocol::{ClaimLine, Code, Date, Dose, TreatmentKind};
use wuding_rules::{AttestedSession, SessionFacts};

use super::{StoreError, StoredSession};

const VERSION: u8 = 1;

const DRUG: u8 = 1;
const DOSE: u8 = 1 << 1;
const CHECK_IN_FALLBACK: u8 = 1 << 2;
const CHECK_OUT: u8 = 1 << 3;
const CHECK_OUT_FALLBACK: u8 = 1 << 4;
const MISSING_CHECKOUT: u8 = 1 << 5;
const KNOWN_FLAGS: u8 = (1 << 6) - 1;

/// Packs a session record's facts and its receipt time.
pub fn pack(received_at_ms: i64, f: &SessionFacts) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(VERSION);
    signed(&mut out, received_at_ms);
    signed(&mut out, f.signed_at_ms);
    signed(&mut out, i64::from(f.utc_offset_min));
    for s in [
        f.terminal_id.as_str(),
        &f.hospital_code,
        &f.department_code,
        &f.nurse_id,
        &f.doctor_id,
        f.kind.code(),
    ] {
        text(&mut out, s);
    }
    let check_out = f.check_out;
    let mut flags = 0;
    for (present, flag) in [
        (f.drug_code.is_some(), DRUG),
        (f.dose.is_some(), DOSE),
        (f.check_in.fallback.is_some(), CHECK_IN_FALLBACK),
        (check_out.is_some(), CHECK_OUT),
        (
            check_out.is_some_and(|o| o.fallback.is_some()),
            CHECK_OUT_FALLBACK,
        ),
        (
            f.closure == wuding_protocol::Closure::MissingCheckout,
            MISSING_CHECKOUT,
        ),
    ] {
        if present {
            flags |= flag;
        }
    }
    out.push(flags);
    if let Some(drug) = &f.drug_code {
        text(&mut out, drug);
    }
    if let Some(dose) = &f.dose {
        unsigned(&mut out, dose.amount_milli);
        text(&mut out, &dose.unit);
    }
    signed(&mut out, f.check_in.at_ms);
    if let Some(reason) = f.check_in.fallback {
        text(&mut out, reason.code());
    }
    if let Some(o) = check_out {
        signed(&mut out, o.at_ms);
        if let Some(reason) = o.fallback {
            text(&mut out, reason.code());
        }
    }
    unsigned(&mut out, f.charge_fen);
    out
}

/// Unpacks what [`pack`] made, with the record's id and its patient (kept
/// in the table's key, not in the packed value).
pub fn unpack(
    record_id: &[u8],
    insured_id: &str,
    packed: &[u8],
) -> Result<AttestedSession, StoreError> {
    let mut r = Reader {
        rest: packed,
        what: "packed session facts",
    };
    if r.byte()? != VERSION {
        return Err(corrupt());
    }
    let received_at_ms = r.signed()?;
    let signed_at_ms = r.signed()?;
    let utc_offset_min = i16::try_from(r.signed()?).map_err(|_| corrupt())?;
    let (terminal_id, hospital_code, department_code) = (r.text()?, r.text()?, r.text()?);
    let (nurse_id, doctor_id, kind) = (r.text()?, r.text()?, r.text()?);
    let flags = r.byte()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(corrupt());
    }
    let has = |flag: u8| flags & flag != 0;
    let drug_code = has(DRUG).then(|| r.text()).transpose()?;
    let (dose_milli, dose_unit) = if has(DOSE) {
        let milli = i64::try_from(r.unsigned()?).map_err(|_| corrupt())?;
        (Some(milli), Some(r.text()?))
    } else {
        (None, None)
    };
    let check_in_ms = r.signed()?;
    let check_in_fallback = has(CHECK_IN_FALLBACK).then(|| r.text()).transpose()?;
    let (check_out_ms, check_out_fallback) = if has(CHECK_OUT) {
        let at = r.signed()?;
        (
            Some(at),
            has(CHECK_OUT_FALLBACK).then(|| r.text()).transpose()?,
        )
    } else if has(CHECK_OUT_FALLBACK) {
        return Err(corrupt());
    } else {
        (None, None)
    };
    let charge_fen = i64::try_from(r.unsigned()?).map_err(|_| corrupt())?;
    if !r.rest.is_empty() {
        return Err(corrupt());
    }
    StoredSession {
        record_id,
        received_at_ms,
        terminal_id,
        signed_at_ms,
        utc_offset_min,
        hospital_code,
        department_code,
        insured_id,
        nurse_id,
        doctor_id,
        kind,
        drug_code,
        dose_milli,
        dose_unit,
        check_in_ms,
        check_in_fallback,
        check_out_ms,
        check_out_fallback,
        closure: if has(MISSING_CHECKOUT) {
            "missing_checkout"
        } else {
            "completed"
        },
        charge_fen,
    }
    .session()
}

/// A claim line's fields other than its key, as stored.
pub struct ClaimFields<'a> {
    pub hospital_code: &'a str,
    pub department_code: &'a str,
    pub doctor_id: &'a str,
    pub service_code: &'a str,
    pub service_kind: &'a str,
    pub quantity: i64,
    pub amount_fen: i64,
    pub drug_code: Option<&'a str>,
    pub dose_milli: Option<i64>,
    pub dose_unit: Option<&'a str>,
}

impl<'a> ClaimFields<'a> {
    pub fn of(c: &'a ClaimLine) -> ClaimFields<'a> {
        ClaimFields {
            hospital_code: &c.hospital_code,
            department_code: &c.department_code,
            doctor_id: &c.doctor_id,
            service_code: &c.service_code,
            service_kind: c.service_kind.code(),
            quantity: i64::from(c.quantity),
            amount_fen: c.amount_fen as i64,
            drug_code: c.drug_code.as_deref(),
            dose_milli: c.dose.as_ref().map(|d| d.amount_milli as i64),
            dose_unit: c.dose.as_ref().map(|d| d.unit.as_str()),
        }
    }
}

const CLAIM_VERSION: u8 = 1;

const CLAIM_DRUG: u8 = 1;
const CLAIM_DOSE: u8 = 1 << 1;

/// Packs a claim line's fields other than its key.
pub fn pack_claim(f: &ClaimFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(CLAIM_VERSION);
    for s in [
        f.hospital_code,
        f.department_code,
        f.doctor_id,
        f.service_code,
        f.service_kind,
    ] {
        text(&mut out, s);
    }
    signed(&mut out, f.quantity);
    signed(&mut out, f.amount_fen);
    let dose = f.dose_milli.zip(f.dose_unit);
    let mut flags = 0;
    if f.drug_code.is_some() {
        flags |= CLAIM_DRUG;
    }
    if dose.is_some() {
        flags |= CLAIM_DOSE;
    }
    out.push(flags);
    if let Some(drug) = f.drug_code {
        text(&mut out, drug);
    }
    if let Some((milli, unit)) = dose {
        signed(&mut out, milli);
        text(&mut out, unit);
    }
    out
}

/// Unpacks what [`pack_claim`] made, with the line's key.
pub fn unpack_claim(
    claim_id: &str,
    insured_id: &str,
    service_date: Date,
    packed: &[u8],
) -> Result<ClaimLine, StoreError> {
    let bad = || StoreError::Corrupt("packed claim line");
    let mut r = Reader {
        rest: packed,
        what: "packed claim line",
    };
    if r.byte()? != CLAIM_VERSION {
        return Err(bad());
    }
    let hospital_code = Code::from(r.text()?);
    let department_code = Code::from(r.text()?);
    let doctor_id = Code::from(r.text()?);
    let service_code = Code::from(r.text()?);
    let service_kind =
        TreatmentKind::from_code(r.text()?).ok_or(StoreError::Corrupt("claim kind"))?;
    let quantity = u32::try_from(r.signed()?).map_err(|_| bad())?;
    let amount_fen = u64::try_from(r.signed()?).map_err(|_| bad())?;
    let flags = r.byte()?;
    if flags & !(CLAIM_DRUG | CLAIM_DOSE) != 0 {
        return Err(bad());
    }
    let drug_code = match flags & CLAIM_DRUG != 0 {
        true => Some(Code::from(r.text()?)),
        false => None,
    };
    let dose = match flags & CLAIM_DOSE != 0 {
        true => Some(Dose {
            amount_milli: u64::try_from(r.signed()?).map_err(|_| bad())?,
            unit: r.text()?.to_owned(),
        }),
        false => None,
    };
    if !r.rest.is_empty() {
        return Err(bad());
    }
    Ok(ClaimLine {
        claim_id: Code::from(claim_id),
        insured_id: Code::from(insured_id),
        hospital_code,
        department_code,
        doctor_id,
        service_date,
        service_code,
        service_kind,
        quantity,
        amount_fen,
        drug_code,
        dose,
    })
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("packed session facts")
}

fn unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn signed(out: &mut Vec<u8>, v: i64) {
    unsigned(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn text(out: &mut Vec<u8>, s: &str) {
    unsigned(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    rest: &'a [u8],
    /// What is read, for the error a damaged value gives.
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, StoreError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(StoreError::Corrupt(self.what))?;
        self.rest = rest;
        Ok(b)
    }

    fn unsigned(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(StoreError::Corrupt(self.what));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StoreError::Corrupt(self.what))
    }

    fn signed(&mut self) -> Result<i64, StoreError> {
        let v = self.unsigned()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        let len = usize::try_from(self.unsigned()?).map_err(|_| StoreError::Corrupt(self.what))?;
        if len > self.rest.len() {
            return Err(StoreError::Corrupt(self.what));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        std::str::from_utf8(bytes).map_err(|_| StoreError::Corrupt(self.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wuding_protocol::{Closure, Dose, FallbackReason, RecordId, TreatmentKind};
    use wuding_rules::Presence;

    fn facts() -> SessionFacts {
        SessionFacts {
            terminal_id: "T5108-0012".into(),
            signed_at_ms: 1_791_000_000_123,
            utc_offset_min: 480,
            hospital_code: "H51080200001".into(),
            department_code: "NEPH".into(),
            insured_id: "P5108000569675".into(),
            nurse_id: "N0042".into(),
            doctor_id: "D0007".into(),
            kind: TreatmentKind::HDF,
            drug_code: None,
            dose: None,
            check_in: Presence {
                at_ms: 1_790_990_000_000,
                fallback: None,
            },
            check_out: Some(Presence {
                at_ms: 1_791_004_400_000,
                fallback: None,
            }),
            closure: Closure::Completed,
            charge_fen: 61_500,
        }
    }

    fn round_trip(received_at_ms: i64, f: &SessionFacts) -> AttestedSession {
        let id = [7u8; 32];
        unpack(&id, &f.insured_id, &pack(received_at_ms, f)).unwrap()
    }

    #[test]
    fn every_fact_comes_back_as_it_was_packed() {
        let plain = facts();
        let s = round_trip(1_791_000_100_000, &plain);
        assert_eq!(s.record_id, RecordId([7; 32]));
        assert_eq!(s.received_at_ms, 1_791_000_100_000);
        assert_eq!(s.facts, plain);
        // Every optional fact present, negative numbers and a non-ASCII
        // name.
        let mut full = facts();
        full.kind = TreatmentKind::CHEMO;
        full.drug_code = Some("XL01XA01".into());
        full.dose = Some(Dose {
            amount_milli: 75_000,
            unit: "mg/m²".into(),
        });
        full.utc_offset_min = -300;
        full.signed_at_ms = -5;
        full.check_in.fallback = Some(FallbackReason::ALL[0]);
        full.check_out = Some(Presence {
            at_ms: 1_791_004_400_000,
            fallback: Some(FallbackReason::ALL[FallbackReason::ALL.len() - 1]),
        });
        full.doctor_id = "王医生".into();
        full.charge_fen = u64::from(u32::MAX) * 3;
        assert_eq!(round_trip(i64::MAX, &full).facts, full);
        // No check-out at all.
        let mut open = facts();
        open.check_out = None;
        open.closure = Closure::MissingCheckout;
        assert_eq!(round_trip(0, &open).facts, open);
    }

    #[test]
    fn a_damaged_value_is_reported_as_corruption_not_misread() {
        let f = facts();
        let packed = pack(1, &f);
        let id = [1u8; 32];
        let check = |bytes: &[u8]| match unpack(&id, &f.insured_id, bytes) {
            Err(StoreError::Corrupt(what)) => assert_eq!(what, "packed session facts"),
            other => panic!("{other:?}"),
        };
        // Every truncation.
        for len in 0..packed.len() {
            check(&packed[..len]);
        }
        // Trailing bytes, another version, unknown flags.
        let mut longer = packed.clone();
        longer.push(0);
        check(&longer);
        let mut version = packed.clone();
        version[0] = 2;
        check(&version);
        let mut flags = packed.clone();
        let mut before_flags = vec![VERSION];
        for v in [1, f.signed_at_ms, i64::from(f.utc_offset_min)] {
            signed(&mut before_flags, v);
        }
        for s in [f.terminal_id.as_str(), &f.hospital_code, &f.department_code] {
            text(&mut before_flags, s);
        }
        for s in [f.nurse_id.as_str(), &f.doctor_id, f.kind.code()] {
            text(&mut before_flags, s);
        }
        let at = before_flags.len();
        assert_eq!(flags[at], CHECK_OUT);
        flags[at] |= 0x80;
        check(&flags);
        // A record id of the wrong length.
        assert!(matches!(
            unpack(&[1u8; 31], &f.insured_id, &packed),
            Err(StoreError::Corrupt(_))
        ));
    }
    fn claim() -> ClaimLine {
        ClaimLine {
            claim_id: "C510800001234567".into(),
            insured_id: "P5108000569675".into(),
            hospital_code: "H51080200001".into(),
            department_code: "ONCO".into(),
            doctor_id: "D0007".into(),
            service_date: wuding_protocol::Date::constant(2026, 10, 5),
            service_code: "XL01XA01".into(),
            service_kind: TreatmentKind::CHEMO,
            quantity: 3,
            amount_fen: 125_000,
            drug_code: Some("XL01XA01".into()),
            dose: Some(Dose {
                amount_milli: 75_000,
                unit: "mg/m²".into(),
            }),
        }
    }

    fn claim_round_trip(c: &ClaimLine) -> ClaimLine {
        unpack_claim(
            &c.claim_id,
            &c.insured_id,
            c.service_date,
            &pack_claim(&ClaimFields::of(c)),
        )
        .unwrap()
    }

    #[test]
    fn every_claim_field_comes_back_as_it_was_packed() {
        let full = claim();
        assert_eq!(claim_round_trip(&full), full);
        let mut plain = claim();
        plain.service_kind = TreatmentKind::HD;
        plain.drug_code = None;
        plain.dose = None;
        plain.quantity = u32::MAX;
        plain.amount_fen = i64::MAX as u64;
        plain.doctor_id = "王医生".into();
        assert_eq!(claim_round_trip(&plain), plain);
        // A drug without a dose, and the other way round.
        let mut drug = claim();
        drug.dose = None;
        assert_eq!(claim_round_trip(&drug), drug);
        let mut dose = claim();
        dose.drug_code = None;
        assert_eq!(claim_round_trip(&dose), dose);
    }

    #[test]
    fn a_damaged_claim_line_is_reported_as_corruption_not_misread() {
        let c = claim();
        let packed = pack_claim(&ClaimFields::of(&c));
        let check = |bytes: &[u8], expected: &str| match unpack_claim(
            &c.claim_id,
            &c.insured_id,
            c.service_date,
            bytes,
        ) {
            Err(StoreError::Corrupt(what)) => assert_eq!(what, expected),
            other => panic!("{other:?}"),
        };
        for len in 0..packed.len() {
            check(&packed[..len], "packed claim line");
        }
        let mut longer = packed.clone();
        longer.push(0);
        check(&longer, "packed claim line");
        let mut version = packed.clone();
        version[0] = 2;
        check(&version, "packed claim line");
        // Stored numbers a line cannot have, and a kind no build knows.
        let fields = ClaimFields::of(&c);
        for bad in [
            ClaimFields {
                quantity: -1,
                ..ClaimFields::of(&c)
            },
            ClaimFields {
                quantity: i64::from(u32::MAX) + 1,
                ..ClaimFields::of(&c)
            },
            ClaimFields {
                amount_fen: -5,
                ..ClaimFields::of(&c)
            },
            ClaimFields {
                dose_milli: Some(-1),
                ..ClaimFields::of(&c)
            },
        ] {
            check(&pack_claim(&bad), "packed claim line");
        }
        check(
            &pack_claim(&ClaimFields {
                service_kind: "XYZ",
                ..fields
            }),
            "claim kind",
        );
    }
}
