//! Minimal datasets for the reconciliation tests: one honest dialysis
//! patient on a Monday-Wednesday-Friday schedule, and builders to bend it.

#![allow(dead_code)]

use wuding_protocol::{
    Attestation, Charge, ChargeItem, ClaimLine, Closure, Date, Dose, FallbackReason, Finger,
    IdentityEvidence, PatientRef, RecordId, SessionRecord, TemplateRef, Treatment, TreatmentKind,
    TreatmentPlan,
};
use wuding_rules::{
    AttestedSession, Dataset, Finding, IntegrityEvent, IntegrityKind, Period, Ruleset,
    days_from_date, reconcile,
};

pub const H1: &str = "H51010400003";
pub const H2: &str = "H51010400007";
pub const P1: &str = "P5101000001234";
pub const P2: &str = "P5101000005678";
pub const HD_FEN: u64 = 45_000;
pub const HDF_FEN: u64 = 65_000;
pub const OFFSET_MIN: i16 = 480;

pub fn d(day: i8) -> Date {
    Date::constant(2026, 11, day)
}

pub fn november() -> Period {
    Period::month(2026, 11).unwrap()
}

/// Unix ms of a local (UTC+8) time on a November 2026 day.
pub fn at(day: i8, hour: i64, minute: i64) -> i64 {
    (days_from_date(d(day)) * 1440 + hour * 60 + minute - i64::from(OFFSET_MIN)) * 60_000
}

pub fn price(kind: TreatmentKind) -> u64 {
    match kind {
        TreatmentKind::HDF | TreatmentKind::HF | TreatmentKind::HP => HDF_FEN,
        TreatmentKind::CHEMO => 80_000,
        _ => HD_FEN,
    }
}

fn fingerprint() -> IdentityEvidence {
    IdentityEvidence::Fingerprint {
        finger: Finger::RightIndex,
        score: 180,
        template_ref: TemplateRef([7; 32]),
        attempts: 1,
    }
}

fn supervised(nurse: &str) -> IdentityEvidence {
    IdentityEvidence::Supervised {
        reason: FallbackReason::FingerprintUnreadable,
        nurse_id: nurse.into(),
        witness_id: "H51010400003N09".into(),
        attempts: 3,
    }
}

/// An attested session, honest by default: HD at H1, 08:00-12:00.
#[derive(Debug, Clone)]
pub struct Sess {
    pub n: u32,
    pub patient: String,
    pub hospital: String,
    pub department: String,
    pub terminal: String,
    pub nurse: String,
    pub doctor: String,
    pub kind: TreatmentKind,
    pub drug: Option<String>,
    pub dose: Option<Dose>,
    pub start_ms: i64,
    pub minutes: Option<i64>,
    pub fallback: bool,
    pub charge_fen: u64,
    /// Receipt minus signing time.
    pub delay_ms: i64,
}

impl Sess {
    pub fn new(n: u32, patient: &str, day: i8) -> Sess {
        Sess {
            n,
            patient: patient.into(),
            hospital: H1.into(),
            department: "NEPH".into(),
            terminal: format!("T-{H1}-01"),
            nurse: format!("{H1}N01"),
            doctor: format!("{H1}D01"),
            kind: TreatmentKind::HD,
            drug: None,
            dose: None,
            start_ms: at(day, 8, 0),
            minutes: Some(240),
            fallback: false,
            charge_fen: HD_FEN,
            delay_ms: 5 * 60_000,
        }
    }

    pub fn at_hospital(mut self, hospital: &str) -> Sess {
        self.hospital = hospital.into();
        self.terminal = format!("T-{hospital}-01");
        self.nurse = format!("{hospital}N01");
        self
    }

    pub fn kind(mut self, kind: TreatmentKind) -> Sess {
        self.kind = kind;
        self.charge_fen = price(kind);
        self
    }

    pub fn id(&self) -> RecordId {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&self.n.to_be_bytes());
        id[31] = 0xAB;
        RecordId(id)
    }

    pub fn build(&self) -> AttestedSession {
        let check_out = self.minutes.map(|m| Attestation {
            at_ms: self.start_ms + m * 60_000,
            identity: if self.fallback {
                supervised(&self.nurse)
            } else {
                fingerprint()
            },
        });
        let signed_at_ms = check_out
            .as_ref()
            .map_or(self.start_ms + 6 * 3_600_000, |o| o.at_ms);
        let record = SessionRecord {
            terminal_id: self.terminal.clone(),
            seq: u64::from(self.n),
            prev: RecordId::GENESIS,
            signed_at_ms,
            utc_offset_min: OFFSET_MIN,
            hospital_code: self.hospital.as_str().into(),
            department_code: self.department.as_str().into(),
            bed: "B01".into(),
            machine: None,
            patient: PatientRef {
                insured_id: self.patient.as_str().into(),
                card_uid: "04A1B2C3".into(),
            },
            nurse_id: self.nurse.clone(),
            doctor_id: self.doctor.as_str().into(),
            treatment: Treatment {
                kind: self.kind,
                service_code: self.kind.code().into(),
                drug_code: self.drug.clone(),
                dose: self.dose.clone(),
            },
            check_in: Attestation {
                at_ms: self.start_ms,
                identity: if self.fallback {
                    supervised(&self.nurse)
                } else {
                    fingerprint()
                },
            },
            closure: if check_out.is_some() {
                Closure::Completed
            } else {
                Closure::MissingCheckout
            },
            check_out,
            charge: Charge::from_items(vec![ChargeItem::new(self.kind.code(), 1, self.charge_fen)]),
        };
        AttestedSession::of_record(self.id(), signed_at_ms + self.delay_ms, &record)
    }

    /// The claim a hospital would honestly submit for this session.
    pub fn claim(&self, id: &str) -> ClaimLine {
        ClaimLine {
            claim_id: id.into(),
            insured_id: self.patient.as_str().into(),
            hospital_code: self.hospital.as_str().into(),
            department_code: self.department.as_str().into(),
            doctor_id: self.doctor.as_str().into(),
            service_date: wuding_rules::local_date(self.start_ms, OFFSET_MIN).unwrap(),
            service_code: self.kind.code().into(),
            service_kind: self.kind,
            quantity: 1,
            amount_fen: self.charge_fen,
            drug_code: self.drug.as_deref().map(Into::into),
            dose: self.dose.clone(),
        }
    }
}

/// The 五定 plan of a dialysis patient at H1: HD or HDF, three a week.
pub fn dialysis_plan(patient: &str) -> TreatmentPlan {
    TreatmentPlan {
        plan_id: format!("PL-{patient}-1"),
        insured_id: patient.into(),
        hospital_code: H1.into(),
        department_code: "NEPH".into(),
        doctor_ids: vec![format!("{H1}D01"), format!("{H1}D02")],
        kinds: vec![TreatmentKind::HD, TreatmentKind::HDF],
        drug_code: None,
        max_dose: None,
        max_sessions_per_week: Some(3),
        valid_from: d(1),
        valid_to: Date::constant(2026, 12, 31),
    }
}

/// A chemotherapy plan at H1's oncology department: 130mg of L01XA03.
pub fn chemo_plan(patient: &str) -> TreatmentPlan {
    TreatmentPlan {
        plan_id: format!("PL-{patient}-C"),
        insured_id: patient.into(),
        hospital_code: H1.into(),
        department_code: "ONC".into(),
        doctor_ids: vec![format!("{H1}D05")],
        kinds: vec![TreatmentKind::CHEMO],
        drug_code: Some("L01XA03".into()),
        max_dose: Some(Dose::parse_text("130mg").unwrap()),
        max_sessions_per_week: None,
        valid_from: d(1),
        valid_to: Date::constant(2026, 12, 31),
    }
}

pub fn chemo(n: u32, patient: &str, day: i8) -> Sess {
    let mut s = Sess::new(n, patient, day).kind(TreatmentKind::CHEMO);
    s.department = "ONC".into();
    s.doctor = format!("{H1}D05");
    s.drug = Some("L01XA03".into());
    s.dose = Some(Dose::parse_text("130mg").unwrap());
    s.minutes = Some(120);
    s
}

/// Everything one reconciliation looks at, owned.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub sessions: Vec<AttestedSession>,
    pub claims: Vec<ClaimLine>,
    pub plans: Vec<TreatmentPlan>,
    pub integrity: Vec<IntegrityEvent>,
}

impl World {
    /// One honest dialysis week and the next: P1 on Mon, Wed, Fri at H1,
    /// each session attested by fingerprint and claimed once.
    pub fn honest() -> World {
        let mut w = World {
            plans: vec![dialysis_plan(P1)],
            ..World::default()
        };
        for (i, day) in [2, 4, 6, 9, 11, 13].into_iter().enumerate() {
            w.attend(Sess::new(i as u32 + 1, P1, day));
        }
        w
    }

    /// Adds a session and its honest claim.
    pub fn attend(&mut self, s: Sess) -> &mut World {
        self.claims.push(s.claim(&format!("C{H1}-{:07}", s.n)));
        self.sessions.push(s.build());
        self
    }

    pub fn dataset(&self) -> Dataset<'_> {
        Dataset {
            period: november(),
            sessions: &self.sessions,
            claims: &self.claims,
            plans: &self.plans,
            integrity: &self.integrity,
        }
    }

    pub fn run(&self) -> Vec<Finding> {
        reconcile(&Ruleset::default_rules(), &self.dataset())
    }

    pub fn run_with(&self, rules: &Ruleset) -> Vec<Finding> {
        reconcile(rules, &self.dataset())
    }
}

pub fn event(kind: IntegrityKind, records: &[RecordId]) -> IntegrityEvent {
    IntegrityEvent {
        kind,
        terminal_id: format!("T-{H1}-01"),
        hospital_code: Some(H1.into()),
        seq: Some(7),
        record_ids: records.to_vec(),
        missing: None,
        measured_ms: None,
        at_ms: at(20, 9, 0),
        date: None,
    }
}

pub fn of_rule<'f>(findings: &'f [Finding], rule: &str) -> Vec<&'f Finding> {
    findings.iter().filter(|f| f.rule_id == rule).collect()
}
