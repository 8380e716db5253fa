//! Inputs and outputs of reconciliation.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wuding_protocol::{
    Attestation, ClaimLine, Closure, Code, Date, Dose, FallbackReason, IdentityEvidence, RecordId,
    SessionRecord, TreatmentKind, TreatmentPlan,
};

use crate::config::Severity;

/// A short text in Chinese and English.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

/// A session record the server accepted: its id, its receipt time and the
/// facts reconciliation reads of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedSession {
    pub record_id: RecordId,
    /// When the server received it (Unix ms).
    pub received_at_ms: i64,
    pub facts: SessionFacts,
}

impl AttestedSession {
    /// The session of a decoded record.
    pub fn of_record(record_id: RecordId, received_at_ms: i64, record: &SessionRecord) -> Self {
        AttestedSession {
            record_id,
            received_at_ms,
            facts: SessionFacts::of(record),
        }
    }

    pub fn terminal_id(&self) -> &str {
        &self.facts.terminal_id
    }

    /// The local date of check-in: the session's service date.
    pub fn service_date(&self) -> Option<Date> {
        self.facts.service_date()
    }

    /// Whether check-in or check-out was attested by supervised fallback.
    pub fn is_fallback(&self) -> bool {
        self.facts.fallback_reason().is_some()
    }
}

/// What reconciliation reads of a signed session record: where, who, what
/// and when, how the patient's presence was proven at each end, and the
/// charge bound into it. Not the chain position, the bed or the evidence's
/// details (finger, score, witness), which the rules never look at. The
/// server keeps these beside each accepted record, so a month is read
/// without decoding the signed payloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionFacts {
    pub terminal_id: Code,
    /// Terminal clock when the record was signed (Unix ms).
    pub signed_at_ms: i64,
    /// Local offset from UTC in minutes.
    pub utc_offset_min: i16,
    pub hospital_code: Code,
    pub department_code: Code,
    pub insured_id: Code,
    pub nurse_id: Code,
    pub doctor_id: Code,
    pub kind: TreatmentKind,
    pub drug_code: Option<Code>,
    pub dose: Option<Dose>,
    pub check_in: Presence,
    pub check_out: Option<Presence>,
    pub closure: Closure,
    /// The charge's total (fen).
    pub charge_fen: u64,
}

/// One moment of a session at which the patient's presence was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Presence {
    /// Terminal clock (Unix ms).
    pub at_ms: i64,
    /// `None`: the patient's fingerprint; otherwise supervised fallback and
    /// why.
    pub fallback: Option<FallbackReason>,
}

impl Presence {
    fn of(a: &Attestation) -> Presence {
        Presence {
            at_ms: a.at_ms,
            fallback: match &a.identity {
                IdentityEvidence::Fingerprint { .. } => None,
                IdentityEvidence::Supervised { reason, .. } => Some(*reason),
            },
        }
    }
}

impl SessionFacts {
    pub fn of(r: &SessionRecord) -> SessionFacts {
        SessionFacts {
            terminal_id: r.terminal_id.as_str().into(),
            signed_at_ms: r.signed_at_ms,
            utc_offset_min: r.utc_offset_min,
            hospital_code: r.hospital_code.as_str().into(),
            department_code: r.department_code.as_str().into(),
            insured_id: r.patient.insured_id.as_str().into(),
            nurse_id: r.nurse_id.as_str().into(),
            doctor_id: r.doctor_id.as_str().into(),
            kind: r.treatment.kind,
            drug_code: r.treatment.drug_code.as_deref().map(Code::from),
            dose: r.treatment.dose.clone(),
            check_in: Presence::of(&r.check_in),
            check_out: r.check_out.as_ref().map(Presence::of),
            closure: r.closure,
            charge_fen: r.charge.total_fen,
        }
    }

    /// The local date of check-in: the session's service date.
    pub fn service_date(&self) -> Option<Date> {
        local_date(self.check_in.at_ms, self.utc_offset_min)
    }

    /// Minutes from check-in to check-out (`None` without a check-out).
    pub fn duration_min(&self) -> Option<i64> {
        self.check_out
            .map(|out| (out.at_ms - self.check_in.at_ms) / 60_000)
    }

    /// Why supervised fallback stood in for the fingerprint, at check-in
    /// or else at check-out (`None`: fingerprints at both ends).
    pub fn fallback_reason(&self) -> Option<FallbackReason> {
        self.check_in
            .fallback
            .or(self.check_out.and_then(|o| o.fallback))
    }
}

/// What the server's ingest found wrong with a record or a chain. Codes are
/// those of the server's alarms and refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrityKind {
    BadSignature,
    UnknownKey,
    NotApproved,
    Revoked,
    AfterRevocation,
    WrongTerminal,
    WrongHospital,
    Malformed,
    Gap,
    Fork,
    BrokenLink,
    /// Signed in the future relative to arrival; `measured_ms` = how far.
    ClockSkew,
    /// Signed before its predecessor; `measured_ms` = by how much.
    Backdated,
    /// Arrived long after signing; `measured_ms` = the delay.
    LateSync,
}

impl IntegrityKind {
    pub const ALL: [IntegrityKind; 14] = [
        IntegrityKind::BadSignature,
        IntegrityKind::UnknownKey,
        IntegrityKind::NotApproved,
        IntegrityKind::Revoked,
        IntegrityKind::AfterRevocation,
        IntegrityKind::WrongTerminal,
        IntegrityKind::WrongHospital,
        IntegrityKind::Malformed,
        IntegrityKind::Gap,
        IntegrityKind::Fork,
        IntegrityKind::BrokenLink,
        IntegrityKind::ClockSkew,
        IntegrityKind::Backdated,
        IntegrityKind::LateSync,
    ];

    /// The server's alarm / refusal code.
    pub fn code(self) -> &'static str {
        match self {
            IntegrityKind::BadSignature => "bad_signature",
            IntegrityKind::UnknownKey => "unknown_key",
            IntegrityKind::NotApproved => "not_approved",
            IntegrityKind::Revoked => "revoked",
            IntegrityKind::AfterRevocation => "after_revocation",
            IntegrityKind::WrongTerminal => "wrong_terminal",
            IntegrityKind::WrongHospital => "wrong_hospital",
            IntegrityKind::Malformed => "malformed",
            IntegrityKind::Gap => "gap",
            IntegrityKind::Fork => "fork",
            IntegrityKind::BrokenLink => "broken_link",
            IntegrityKind::ClockSkew => "clock_skew",
            IntegrityKind::Backdated => "backdated",
            IntegrityKind::LateSync => "late_sync",
        }
    }

    pub fn from_code(code: &str) -> Option<IntegrityKind> {
        IntegrityKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One integrity event from the server's ingest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntegrityEvent {
    pub kind: IntegrityKind,
    /// The terminal the record names or the key is registered to (may be
    /// unknown for an unknown key: then the terminal id the record claims).
    pub terminal_id: String,
    pub hospital_code: Option<String>,
    pub seq: Option<u64>,
    /// The record(s) concerned: one, or two for a fork.
    pub record_ids: Vec<RecordId>,
    /// For a gap: the first and last missing sequence numbers.
    pub missing: Option<(u64, u64)>,
    /// For clock skew, backdating and late sync: the measured amount, ms.
    pub measured_ms: Option<i64>,
    /// When the server saw it (Unix ms).
    pub at_ms: i64,
    /// The local service date the record names, when it could be decoded
    /// (events dated outside the reconciliation period are left out).
    pub date: Option<Date>,
}

/// The reconciliation period: local dates, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub from: Date,
    pub to: Date,
}

impl Period {
    pub fn contains(&self, d: Date) -> bool {
        self.from <= d && d <= self.to
    }

    /// The calendar month `year-month`.
    pub fn month(year: i16, month: i8) -> Option<Period> {
        let from = Date::new(year, month, 1).ok()?;
        let to = Date::new(year, month, from.days_in_month()).ok()?;
        Some(Period { from, to })
    }
}

/// Everything one reconciliation run looks at.
#[derive(Debug, Clone, Copy)]
pub struct Dataset<'a> {
    pub period: Period,
    pub sessions: &'a [AttestedSession],
    pub claims: &'a [ClaimLine],
    pub plans: &'a [TreatmentPlan],
    pub integrity: &'a [IntegrityEvent],
}

/// A finding's stable identity: SHA-256 over the rule id and the finding's
/// subject (the claim, the record, the patient-day, the nurse-period, ...),
/// truncated to 16 bytes. Re-running over the same data gives the same id;
/// new evidence for the same subject updates the finding under that id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingId(pub [u8; 16]);

impl FindingId {
    pub fn of(rule_id: &str, subject: &[&str]) -> FindingId {
        let mut h = Sha256::new();
        h.update(b"wuding/finding/v1\0");
        h.update(rule_id.as_bytes());
        for part in subject {
            h.update(b"\0");
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        FindingId(id)
    }
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for FindingId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What a finding is about, beyond the hospital and patient.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Subject {
    Claim(String),
    Record(String),
    PatientDay(String),
    PatientWeek(String),
    PatientMonth(String),
    /// A position in a terminal's chain: `terminal#seq` or
    /// `terminal#first-last` (a gap).
    Chain(String),
    Terminal(String),
    Nurse(String),
    Patient(String),
    Hospital(String),
}

impl Subject {
    /// The subject's type as serialised (`"claim"`, `"patient_day"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Claim(_) => "claim",
            Subject::Record(_) => "record",
            Subject::PatientDay(_) => "patient_day",
            Subject::PatientWeek(_) => "patient_week",
            Subject::PatientMonth(_) => "patient_month",
            Subject::Chain(_) => "chain",
            Subject::Terminal(_) => "terminal",
            Subject::Nurse(_) => "nurse",
            Subject::Patient(_) => "patient",
            Subject::Hospital(_) => "hospital",
        }
    }

    /// The subject's id as serialised.
    pub fn id(&self) -> &str {
        match self {
            Subject::Claim(id)
            | Subject::Record(id)
            | Subject::PatientDay(id)
            | Subject::PatientWeek(id)
            | Subject::PatientMonth(id)
            | Subject::Chain(id)
            | Subject::Terminal(id)
            | Subject::Nurse(id)
            | Subject::Patient(id)
            | Subject::Hospital(id) => id,
        }
    }
}

/// One reconciliation finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: FindingId,
    /// A built-in rule id or a composite's id.
    pub rule_id: String,
    pub ruleset_version: String,
    /// The rule's parameters as used.
    pub params: BTreeMap<String, String>,
    pub severity: Severity,
    /// The service date the finding is about: the claim's or session's
    /// date; the first day of the period or month for rates and peers;
    /// `None` only for an integrity event whose record could not be dated.
    pub date: Option<Date>,
    pub subject: Subject,
    pub hospital_code: Option<String>,
    pub insured_id: Option<String>,
    pub claim_ids: Vec<String>,
    pub record_ids: Vec<RecordId>,
    /// Money at stake, fen.
    pub amount_fen: u64,
    pub explanation: Text,
}

/// The local calendar date of an instant at a fixed UTC offset.
pub fn local_date(at_ms: i64, utc_offset_min: i16) -> Option<Date> {
    let local_ms = at_ms.checked_add(i64::from(utc_offset_min) * 60_000)?;
    date_from_days(local_ms.div_euclid(86_400_000))
}

/// Days since 1970-01-01 of a date (proleptic Gregorian).
pub fn days_from_date(d: Date) -> i64 {
    let (y, m, day) = (
        i64::from(d.year()),
        i64::from(d.month()),
        i64::from(d.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` days after 1970-01-01.
pub fn date_from_days(days: i64) -> Option<Date> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_arithmetic_matches_jiff() {
        for days in [-800_000i64, -1, 0, 1, 59, 365, 11_016, 20_454, 2_932_896] {
            let d = date_from_days(days).unwrap();
            assert_eq!(days_from_date(d), days);
            let jd = Date::new(1970, 1, 1)
                .unwrap()
                .checked_add(jiff::Span::new().days(days))
                .unwrap();
            assert_eq!(d, jd, "{days}");
        }
    }

    #[test]
    fn local_date_uses_the_offset() {
        // 2026-11-02T17:30:00Z is 2026-11-03 01:30 in China.
        let ms = 1_793_640_600_000;
        assert_eq!(local_date(ms, 0), Date::new(2026, 11, 2).ok());
        assert_eq!(local_date(ms, 480), Date::new(2026, 11, 3).ok());
    }

    /// A subject's kind and id are what it serialises as (the stored
    /// subject type and id, and the API's JSON).
    #[test]
    fn subject_kind_and_id_are_its_serialised_form() {
        let every = [
            Subject::Claim("C1".into()),
            Subject::Record("ab12".into()),
            Subject::PatientDay("P|2026-10-01".into()),
            Subject::PatientWeek("P|2026-W40|0".into()),
            Subject::PatientMonth("P|2026-10|0".into()),
            Subject::Chain("T1#3-9".into()),
            Subject::Terminal("T1".into()),
            Subject::Nurse("N1".into()),
            Subject::Patient("P".into()),
            Subject::Hospital("H1".into()),
        ];
        for s in &every {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json["type"], s.kind(), "{s:?}");
            assert_eq!(json["id"], s.id(), "{s:?}");
        }
        let kinds: std::collections::BTreeSet<&str> = every.iter().map(Subject::kind).collect();
        assert_eq!(kinds.len(), every.len());
    }

    #[test]
    fn finding_ids_depend_on_rule_and_subject_only() {
        let a = FindingId::of("phantom_session", &["C1"]);
        assert_eq!(a, FindingId::of("phantom_session", &["C1"]));
        assert_ne!(a, FindingId::of("phantom_session", &["C2"]));
        assert_ne!(a, FindingId::of("inflated_count", &["C1"]));
        // Parts are separated: ("ab","c") differs from ("a","bc").
        assert_ne!(
            FindingId::of("r", &["ab", "c"]),
            FindingId::of("r", &["a", "bc"])
        );
    }
}
