//! A session record's facts packed into one value, as the SQLite store
//! keeps them beside the signed record (`attested_sessions.facts`).
//!
//! Reconciliation reads every session of a period, hundreds of thousands a
//! part: read as twenty columns, SQLite's per-column work was the larger
//! share of loading a part (docs/rules.md, "Packed session facts"); one
//! value per row is read once and unpacked here. The facts are derived
//! (rebuilt from the signed payloads whenever the table is dropped), so the
//! layout can change with a migration that empties the table.
//!
//! Layout, version 1: the version byte, then in order
//! `received_at_ms`, `signed_at_ms`, `utc_offset_min` (zigzag varints),
//! `terminal_id`, `hospital_code`, `department_code`, `nurse_id`,
//! `doctor_id`, `kind` (strings: varint length, UTF-8 bytes), a flags byte
//! (which optional facts follow, and the closure), `drug_code`,
//! `dose_milli` and `dose_unit`, `check_in_ms`, `check_in_fallback`,
//! `check_out_ms`, `check_out_fallback` (each present or not as the flags
//! say), `charge_fen` (varint). Nothing may follow.

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
    let mut r = Reader { rest: packed };
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
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, StoreError> {
        let (&b, rest) = self.rest.split_first().ok_or_else(corrupt)?;
        self.rest = rest;
        Ok(b)
    }

    fn unsigned(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(corrupt());
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }

    fn signed(&mut self) -> Result<i64, StoreError> {
        let v = self.unsigned()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        let len = usize::try_from(self.unsigned()?).map_err(|_| corrupt())?;
        if len > self.rest.len() {
            return Err(corrupt());
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        std::str::from_utf8(bytes).map_err(|_| corrupt())
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
}
