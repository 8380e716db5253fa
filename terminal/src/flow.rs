//! The bedside session flow as a pure state machine.
//!
//! `Flow::handle(now_ms, event)` takes one event (a card read, a finger
//! result, a nurse action, a timer tick, a storage confirmation) and returns
//! the actions the adapters must carry out (show a screen, drive the
//! fingerprint module, persist an open session, sign and store a record).
//! No IO and no clock inside: every path is tested without devices or sleeps.
//!
//! Durability rule: the flow never tells the nurse "done" before the
//! adapter has confirmed that what matters is on disk (`Event::Persisted`,
//! `Event::Signed`).

use std::collections::BTreeMap;

use serde::Serialize;
use wuding_protocol::{
    Attestation, Charge, ChargeItem, Closure, Dose, EnrolmentRecord, FallbackReason, Finger,
    IdentityEvidence, PatientRef, Record, RecordId, SessionRecord, TemplateRef, TreatmentKind,
    TreatmentPlan, format_yuan,
};

use crate::messages::{self, Advice, Text};

/// Settings the flow needs (from the terminal's config file).
#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub terminal_id: String,
    pub hospital_code: String,
    pub department_code: String,
    pub utc_offset_min: i16,
    /// Beds or chairs this terminal serves.
    pub beds: Vec<String>,
    /// The doctor responsible for sessions whose plan names none.
    pub duty_doctor_id: String,
    /// Captures tried on one finger before moving to the next.
    pub captures_per_finger: u8,
    /// Captures merged into one template at enrolment (2 or 3).
    pub enrol_captures: u8,
    /// How long a prompt waits for a card, a finger or the nurse.
    pub prompt_timeout_ms: i64,
    /// After how long an open session is closed as "missing check-out".
    pub missing_checkout_after_ms: i64,
    /// A nurse is logged out after this long without activity.
    pub nurse_idle_logout_ms: i64,
}

impl FlowConfig {
    pub fn example() -> FlowConfig {
        FlowConfig {
            terminal_id: "T-330102-0007".into(),
            hospital_code: "H33010200017".into(),
            department_code: "NEPH-HD".into(),
            utc_offset_min: 480,
            beds: vec!["B01".into(), "B02".into(), "B03".into()],
            duty_doctor_id: "D0107".into(),
            captures_per_finger: 3,
            enrol_captures: 3,
            prompt_timeout_ms: 60_000,
            missing_checkout_after_ms: 10 * 3_600_000,
            nurse_idle_logout_ms: 30 * 60_000,
        }
    }
}

/// A patient as the roster cache knows them, resolved by the adapter from
/// the card UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientContext {
    pub insured_id: String,
    pub card_uid: String,
    /// Masked name for the screen (e.g. "张*华"); never leaves the terminal.
    pub display_name: String,
    /// Enrolled fingers in the order to try them.
    pub fingers: Vec<Finger>,
    /// The 五定 plan in force today, if any.
    pub plan: Option<TreatmentPlan>,
    /// Sessions already attested today (any terminal this one knows of).
    pub sessions_today: Vec<TreatmentKind>,
}

/// Staff as the roster knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffRef {
    pub staff_id: String,
    pub display_name: String,
}

/// Who a tapped card belongs to (looked up by the adapter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOwner {
    Patient(Box<PatientContext>),
    Staff(StaffRef),
    Unknown,
}

/// What the nurse is about to start, checked at the bedside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedSession {
    pub hospital_code: String,
    pub department_code: String,
    pub doctor_id: String,
    pub kind: TreatmentKind,
    pub service_code: String,
    pub drug_code: Option<String>,
    pub dose: Option<Dose>,
    /// Local date of the session.
    pub date: wuding_protocol::Date,
}

/// One bedside verdict: refuse (事中控制) or warn (事前提醒).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub refuse: bool,
    pub rule_id: String,
    pub reason: Text,
}

/// The bedside checks (五定 and frequency), supplied by the rule engine.
pub trait BedsidePolicy {
    fn check(
        &self,
        patient: &PatientContext,
        proposed: &ProposedSession,
        today_sessions: &[TreatmentKind],
    ) -> Vec<Verdict>;
}

/// Prices the terminal charges from (the hospital's price list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceList {
    pub unit_price_fen: BTreeMap<String, u64>,
}

/// Result of `Action::VerifyFinger` (load template, capture, 1:1 match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerResult {
    Matched {
        score: u16,
        template_ref: TemplateRef,
    },
    NoMatch,
    NoFinger,
    PoorImage(Advice),
    DeviceFault,
}

/// Results of the enrolment device steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrolResult {
    /// One capture turned into features (or not).
    Captured {
        ok: bool,
    },
    /// Template built, searched 1:N and stored.
    Stored {
        template_ref: TemplateRef,
        slot: u16,
    },
    /// The 1:N search found this finger under another patient.
    Duplicate {
        other_insured_id: String,
    },
    /// The captures could not be combined.
    Failed,
    DeviceFault,
}

/// What the nurse does on the touchscreen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NurseAction {
    Logout,
    StartEnrolment,
    ChooseFinger(Finger),
    /// Change the treatment before the session opens (within the plan).
    ChooseTreatment {
        kind: TreatmentKind,
        service_code: String,
        drug_code: Option<String>,
        dose: Option<Dose>,
    },
    ChooseBed(String),
    /// Proceed despite warnings.
    ConfirmWarnings,
    /// Supervised fallback; the witness has authenticated (card + PIN).
    Fallback {
        reason: FallbackReason,
        witness_id: String,
    },
    /// Record extra dispensed items for the charge at check-out.
    Dispense {
        bed: String,
        code: String,
        quantity: u32,
    },
    Cancel,
}

/// Events into the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Tick,
    CardTapped {
        card_uid: String,
        owner: CardOwner,
    },
    NurseLoggedIn(StaffRef),
    NurseLoginFailed,
    Nurse(NurseAction),
    Finger(FingerResult),
    Enrol(EnrolResult),
    /// The adapter stored an open session durably.
    Persisted {
        bed: String,
    },
    /// The adapter signed and stored a record durably (outbox + chain head,
    /// and closed the open session it names, in one transaction).
    Signed {
        record_id: RecordId,
        seq: u64,
    },
    /// Storing failed; nothing was lost, the flow may retry.
    StoreFailed,
}

/// Buzzer and LED patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Success,
    Failure,
    Attention,
}

/// Actions out of the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Show(Screen),
    Indicate(Signal),
    /// Load the patient's template for `finger`, capture, match 1:1.
    VerifyFinger {
        insured_id: String,
        finger: Finger,
    },
    /// Capture one image and extract features into buffer `capture` (1-based).
    EnrolCapture {
        capture: u8,
    },
    /// Combine the captures, search 1:N for duplicates, store, upload.
    EnrolBuild {
        insured_id: String,
        finger: Finger,
    },
    /// Persist (or replace) an open session.
    PersistOpen(Box<OpenSession>),
    /// Sign and store `record` atomically with the chain head; the chain
    /// position in `record` is filled in by the adapter. When `closes` names a
    /// bed, its open session is removed in the same transaction.
    Sign {
        record: Box<Record>,
        closes: Option<String>,
    },
    /// A line for the local audit log (no personal data beyond ids).
    Audit(String),
}

/// A session between check-in and check-out, kept durably by the adapter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenSession {
    pub bed: String,
    pub patient: PatientRef,
    pub display_name: String,
    pub nurse_id: String,
    pub doctor_id: String,
    pub kind: TreatmentKind,
    pub service_code: String,
    pub drug_code: Option<String>,
    pub dose: Option<Dose>,
    pub check_in: Attestation,
    /// The finger that matched at check-in (tried first at check-out).
    pub finger: Option<Finger>,
    /// Extra items dispensed during the session: (code, quantity).
    pub dispensed: Vec<(String, u32)>,
}

/// What the screen shows. The web UI renders it; tests assert on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "screen", rename_all = "snake_case")]
pub enum Screen {
    Locked {
        message: Text,
    },
    Idle {
        nurse: String,
        message: Text,
    },
    PlaceFinger {
        patient: String,
        finger: Finger,
        attempt: u8,
        message: Text,
    },
    ChooseFallback {
        patient: String,
        message: Text,
    },
    Warnings {
        patient: String,
        verdicts: Vec<Verdict>,
    },
    Refused {
        patient: String,
        verdicts: Vec<Verdict>,
    },
    Saving {
        message: Text,
    },
    SessionOpen {
        patient: String,
        bed: String,
        message: Text,
    },
    CheckedOut {
        patient: String,
        bed: String,
        total_fen: u64,
        message: Text,
    },
    EnrolTapCard {
        message: Text,
    },
    EnrolChooseFinger {
        patient: String,
        message: Text,
    },
    EnrolCapture {
        patient: String,
        finger: Finger,
        capture: u8,
        of: u8,
        message: Text,
    },
    EnrolDone {
        patient: String,
        finger: Finger,
        message: Text,
    },
    Notice {
        message: Text,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Locked,
    Idle,
    /// Matching a finger for check-in or check-out.
    Verifying(Box<Verification>),
    /// Fingerprint exhausted or impossible: waiting for the nurse's fallback.
    AwaitFallback(Box<Verification>),
    /// Checks passed with warnings: waiting for the nurse to confirm.
    AwaitConfirm(Box<Verification>),
    /// Waiting for the adapter to persist the open session or sign.
    Saving(Box<Verification>),
    EnrolAwaitCard,
    EnrolAwaitFinger(Box<PatientContext>),
    EnrolCapturing {
        patient: Box<PatientContext>,
        finger: Finger,
        capture: u8,
    },
    EnrolBuilding {
        patient: Box<PatientContext>,
        finger: Finger,
    },
    EnrolSigning {
        patient: Box<PatientContext>,
        finger: Finger,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Verification {
    purpose: Purpose,
    patient: PatientContext,
    /// Index into `patient.fingers` and captures tried on it.
    finger_index: usize,
    attempts_on_finger: u8,
    attempts_total: u8,
    /// Evidence once established.
    evidence: Option<(IdentityEvidence, Option<Finger>)>,
    /// The treatment proposed (check-in only).
    proposed: Option<ProposedSession>,
    bed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    CheckIn,
    CheckOut,
}

/// The flow's state.
pub struct Flow<P> {
    config: FlowConfig,
    policy: P,
    prices: PriceList,
    nurse: Option<StaffRef>,
    last_activity_ms: i64,
    step: Step,
    deadline_ms: Option<i64>,
    open: BTreeMap<String, OpenSession>,
}

impl<P: BedsidePolicy> Flow<P> {
    /// A flow resuming with the open sessions found in storage.
    pub fn new(
        config: FlowConfig,
        policy: P,
        prices: PriceList,
        open: Vec<OpenSession>,
    ) -> Flow<P> {
        Flow {
            config,
            policy,
            prices,
            nurse: None,
            last_activity_ms: 0,
            step: Step::Locked,
            deadline_ms: None,
            open: open.into_iter().map(|s| (s.bed.clone(), s)).collect(),
        }
    }

    pub fn open_sessions(&self) -> impl Iterator<Item = &OpenSession> {
        self.open.values()
    }

    pub fn nurse(&self) -> Option<&StaffRef> {
        self.nurse.as_ref()
    }

    pub fn set_prices(&mut self, prices: PriceList) {
        self.prices = prices;
    }

    /// The screen for the current state (for a UI that connects late).
    pub fn screen(&self) -> Screen {
        match (&self.step, &self.nurse) {
            (Step::Locked, _) | (_, None) => Screen::Locked {
                message: messages::tap_nurse_card(),
            },
            (_, Some(nurse)) => Screen::Idle {
                nurse: nurse.display_name.clone(),
                message: messages::tap_patient_card(),
            },
        }
    }

    /// Handles one event at time `now_ms` (Unix milliseconds, from the
    /// adapter's clock).
    pub fn handle(&mut self, now_ms: i64, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(event, Event::Tick) {
            self.last_activity_ms = now_ms;
        }
        match event {
            Event::Tick => self.on_tick(now_ms, &mut out),
            Event::NurseLoggedIn(staff) => {
                out.push(Action::Audit(format!("nurse {} logged in", staff.staff_id)));
                self.nurse = Some(staff);
                self.go_idle(&mut out, messages::tap_patient_card());
            }
            Event::NurseLoginFailed => {
                out.push(Action::Indicate(Signal::Failure));
                out.push(Action::Show(Screen::Locked {
                    message: messages::wrong_pin(),
                }));
            }
            Event::CardTapped { card_uid, owner } => {
                self.on_card(now_ms, card_uid, owner, &mut out)
            }
            Event::Nurse(action) => self.on_nurse(now_ms, action, &mut out),
            Event::Finger(result) => self.on_finger(now_ms, result, &mut out),
            Event::Enrol(result) => self.on_enrol(now_ms, result, &mut out),
            Event::Persisted { bed } => self.on_persisted(bed, &mut out),
            Event::Signed { record_id, seq } => self.on_signed(record_id, seq, &mut out),
            Event::StoreFailed => {
                out.push(Action::Indicate(Signal::Failure));
                out.push(Action::Show(Screen::Notice {
                    message: messages::save_failed(),
                }));
                // Back to where the nurse can retry; nothing was lost.
                self.step = if self.nurse.is_some() {
                    Step::Idle
                } else {
                    Step::Locked
                };
                self.deadline_ms = None;
            }
        }
        out
    }

    fn go_idle(&mut self, out: &mut Vec<Action>, message: Text) {
        self.deadline_ms = None;
        match &self.nurse {
            Some(nurse) => {
                self.step = Step::Idle;
                out.push(Action::Show(Screen::Idle {
                    nurse: nurse.display_name.clone(),
                    message,
                }));
            }
            None => {
                self.step = Step::Locked;
                out.push(Action::Show(Screen::Locked {
                    message: messages::tap_nurse_card(),
                }));
            }
        }
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        // Sessions nobody checked out are closed and signed as such. One at
        // a time, and never while another record is being saved.
        let busy = matches!(self.step, Step::Saving(_) | Step::EnrolSigning { .. });
        if !busy
            && let Some(stale) = self
                .open
                .values()
                .find(|s| now_ms - s.check_in.at_ms >= self.config.missing_checkout_after_ms)
                .cloned()
        {
            let record = self.session_record(&stale, None, Closure::MissingCheckout, now_ms);
            out.push(Action::Audit(format!(
                "missing check-out closed at bed {}",
                stale.bed
            )));
            out.push(Action::Sign {
                record: Box::new(Record::Session(record)),
                closes: Some(stale.bed.clone()),
            });
            // Keep the current step; the Signed event for a closure that is
            // not the step's own is recognised by the bed leaving `open`.
            self.open.remove(&stale.bed);
            return;
        }
        if let Some(deadline) = self.deadline_ms
            && now_ms >= deadline
            && !busy
        {
            out.push(Action::Indicate(Signal::Attention));
            self.go_idle(out, messages::timed_out());
        }
        if self.nurse.is_some()
            && now_ms - self.last_activity_ms >= self.config.nurse_idle_logout_ms
            && matches!(self.step, Step::Idle)
        {
            if let Some(n) = self.nurse.take() {
                out.push(Action::Audit(format!(
                    "nurse {} logged out (idle)",
                    n.staff_id
                )));
            }
            self.go_idle(out, messages::tap_nurse_card());
        }
    }

    fn on_card(&mut self, now_ms: i64, card_uid: String, owner: CardOwner, out: &mut Vec<Action>) {
        match (&self.step, owner) {
            (_, CardOwner::Unknown) => {
                out.push(Action::Indicate(Signal::Failure));
                out.push(Action::Audit(format!(
                    "unknown card {}",
                    mask_uid(&card_uid)
                )));
                out.push(Action::Show(Screen::Notice {
                    message: messages::unknown_card(),
                }));
            }
            // A staff card while locked: the UI asks for the PIN; the adapter
            // verifies it and sends NurseLoggedIn / NurseLoginFailed.
            (Step::Locked, CardOwner::Staff(_)) => {}
            (Step::Locked, CardOwner::Patient(_)) => {
                out.push(Action::Indicate(Signal::Attention));
                out.push(Action::Show(Screen::Locked {
                    message: messages::tap_nurse_card(),
                }));
            }
            (Step::Idle, CardOwner::Patient(patient)) => {
                self.begin_verification(now_ms, *patient, out)
            }
            (Step::EnrolAwaitCard, CardOwner::Patient(patient)) => {
                self.deadline_ms = Some(now_ms + self.config.prompt_timeout_ms);
                out.push(Action::Show(Screen::EnrolChooseFinger {
                    patient: patient.display_name.clone(),
                    message: messages::enrol_choose_finger(),
                }));
                self.step = Step::EnrolAwaitFinger(patient);
            }
            // Any other card mid-flow is ignored (a patient tapping twice).
            _ => {}
        }
    }

    fn begin_verification(&mut self, now_ms: i64, patient: PatientContext, out: &mut Vec<Action>) {
        let open_bed = self
            .open
            .values()
            .find(|s| s.patient.insured_id == patient.insured_id)
            .map(|s| s.bed.clone());
        let purpose = if open_bed.is_some() {
            Purpose::CheckOut
        } else {
            Purpose::CheckIn
        };
        let mut fingers = patient.fingers.clone();
        if let Some(bed) = &open_bed
            && let Some(f) = self.open[bed].finger
        {
            // Try the finger that matched at check-in first.
            fingers.retain(|x| *x != f);
            fingers.insert(0, f);
        }
        let proposed =
            (purpose == Purpose::CheckIn).then(|| self.default_proposal(&patient, now_ms));
        let bed = open_bed.or_else(|| self.free_bed());
        if purpose == Purpose::CheckIn && bed.is_none() {
            out.push(Action::Indicate(Signal::Failure));
            out.push(Action::Show(Screen::Notice {
                message: messages::no_free_bed(),
            }));
            return;
        }
        let verification = Verification {
            purpose,
            patient: PatientContext { fingers, ..patient },
            finger_index: 0,
            attempts_on_finger: 0,
            attempts_total: 0,
            evidence: None,
            proposed,
            bed,
        };
        self.deadline_ms = Some(now_ms + self.config.prompt_timeout_ms);
        if verification.patient.fingers.is_empty() {
            out.push(Action::Indicate(Signal::Attention));
            out.push(Action::Show(Screen::ChooseFallback {
                patient: verification.patient.display_name.clone(),
                message: messages::no_template(),
            }));
            self.step = Step::AwaitFallback(Box::new(verification));
            return;
        }
        let finger = verification.patient.fingers[0];
        out.push(Action::VerifyFinger {
            insured_id: verification.patient.insured_id.clone(),
            finger,
        });
        out.push(Action::Show(Screen::PlaceFinger {
            patient: verification.patient.display_name.clone(),
            finger,
            attempt: 1,
            message: messages::place_finger(finger.name_zh(), &finger.name_en()),
        }));
        self.step = Step::Verifying(Box::new(verification));
    }

    fn default_proposal(&self, patient: &PatientContext, now_ms: i64) -> ProposedSession {
        let date = local_date(now_ms, self.config.utc_offset_min);
        match &patient.plan {
            Some(plan) => ProposedSession {
                hospital_code: self.config.hospital_code.clone(),
                department_code: self.config.department_code.clone(),
                doctor_id: plan
                    .doctor_ids
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.config.duty_doctor_id.clone()),
                kind: plan.kinds[0],
                service_code: default_service_code(plan.kinds[0]).into(),
                drug_code: plan.drug_code.clone(),
                dose: plan.max_dose.clone(),
                date,
            },
            None => ProposedSession {
                hospital_code: self.config.hospital_code.clone(),
                department_code: self.config.department_code.clone(),
                doctor_id: self.config.duty_doctor_id.clone(),
                kind: TreatmentKind::HD,
                service_code: default_service_code(TreatmentKind::HD).into(),
                drug_code: None,
                dose: None,
                date,
            },
        }
    }

    fn free_bed(&self) -> Option<String> {
        self.config
            .beds
            .iter()
            .find(|b| !self.open.contains_key(*b))
            .cloned()
    }

    fn on_finger(&mut self, now_ms: i64, result: FingerResult, out: &mut Vec<Action>) {
        let Step::Verifying(mut v) = std::mem::replace(&mut self.step, Step::Idle) else {
            // A late result after a timeout or cancel: nothing to do.
            return;
        };
        let finger = v.patient.fingers[v.finger_index];
        v.attempts_on_finger += 1;
        v.attempts_total = v.attempts_total.saturating_add(1);
        self.deadline_ms = Some(now_ms + self.config.prompt_timeout_ms);
        let advice = match result {
            FingerResult::Matched {
                score,
                template_ref,
            } => {
                v.evidence = Some((
                    IdentityEvidence::Fingerprint {
                        finger,
                        score,
                        template_ref,
                        attempts: v.attempts_total,
                    },
                    Some(finger),
                ));
                self.identity_established(now_ms, v, out);
                return;
            }
            FingerResult::DeviceFault => {
                out.push(Action::Indicate(Signal::Failure));
                out.push(Action::Show(Screen::ChooseFallback {
                    patient: v.patient.display_name.clone(),
                    message: messages::device_fault(),
                }));
                self.step = Step::AwaitFallback(v);
                return;
            }
            FingerResult::NoMatch => Advice::PressFlat,
            FingerResult::NoFinger => Advice::NoFinger,
            FingerResult::PoorImage(advice) => advice,
        };
        out.push(Action::Indicate(Signal::Attention));
        if v.attempts_on_finger < self.config.captures_per_finger {
            out.push(Action::VerifyFinger {
                insured_id: v.patient.insured_id.clone(),
                finger,
            });
            out.push(Action::Show(Screen::PlaceFinger {
                patient: v.patient.display_name.clone(),
                finger,
                attempt: v.attempts_on_finger + 1,
                message: messages::retry_finger(finger.name_zh(), &finger.name_en(), advice),
            }));
            self.step = Step::Verifying(v);
        } else if v.finger_index + 1 < v.patient.fingers.len() {
            v.finger_index += 1;
            v.attempts_on_finger = 0;
            let next = v.patient.fingers[v.finger_index];
            out.push(Action::VerifyFinger {
                insured_id: v.patient.insured_id.clone(),
                finger: next,
            });
            out.push(Action::Show(Screen::PlaceFinger {
                patient: v.patient.display_name.clone(),
                finger: next,
                attempt: 1,
                message: messages::second_finger(next.name_zh(), &next.name_en()),
            }));
            self.step = Step::Verifying(v);
        } else {
            out.push(Action::Show(Screen::ChooseFallback {
                patient: v.patient.display_name.clone(),
                message: messages::fallback_offered(),
            }));
            self.step = Step::AwaitFallback(v);
        }
    }

    /// The patient is identified (finger or supervised fallback).
    fn identity_established(&mut self, now_ms: i64, v: Box<Verification>, out: &mut Vec<Action>) {
        match v.purpose {
            Purpose::CheckIn => {
                let proposed = v.proposed.clone().expect("check-in has a proposal");
                let verdicts = self
                    .policy
                    .check(&v.patient, &proposed, &v.patient.sessions_today);
                if verdicts.iter().any(|x| x.refuse) {
                    out.push(Action::Indicate(Signal::Failure));
                    for x in verdicts.iter().filter(|x| x.refuse) {
                        out.push(Action::Audit(format!(
                            "check-in refused by rule {}",
                            x.rule_id
                        )));
                    }
                    out.push(Action::Show(Screen::Refused {
                        patient: v.patient.display_name.clone(),
                        verdicts,
                    }));
                    self.step = Step::Idle;
                    self.deadline_ms = None;
                } else if !verdicts.is_empty() {
                    out.push(Action::Indicate(Signal::Attention));
                    out.push(Action::Show(Screen::Warnings {
                        patient: v.patient.display_name.clone(),
                        verdicts,
                    }));
                    self.step = Step::AwaitConfirm(v);
                } else {
                    self.open_session(now_ms, v, out);
                }
            }
            Purpose::CheckOut => self.check_out(now_ms, v, out),
        }
    }

    fn open_session(&mut self, now_ms: i64, v: Box<Verification>, out: &mut Vec<Action>) {
        let (identity, finger) = v.evidence.clone().expect("identity established");
        let proposed = v.proposed.clone().expect("check-in has a proposal");
        let bed = v.bed.clone().expect("check-in has a bed");
        let session = OpenSession {
            bed: bed.clone(),
            patient: PatientRef {
                insured_id: v.patient.insured_id.clone(),
                card_uid: v.patient.card_uid.clone(),
            },
            display_name: v.patient.display_name.clone(),
            nurse_id: self
                .nurse
                .as_ref()
                .map(|n| n.staff_id.clone())
                .unwrap_or_default(),
            doctor_id: proposed.doctor_id.clone(),
            kind: proposed.kind,
            service_code: proposed.service_code.clone(),
            drug_code: proposed.drug_code.clone(),
            dose: proposed.dose.clone(),
            check_in: Attestation {
                at_ms: now_ms,
                identity,
            },
            finger,
            dispensed: Vec::new(),
        };
        out.push(Action::PersistOpen(Box::new(session.clone())));
        out.push(Action::Show(Screen::Saving {
            message: messages::session_open(&bed),
        }));
        self.open.insert(bed, session);
        self.step = Step::Saving(v);
    }

    fn check_out(&mut self, now_ms: i64, v: Box<Verification>, out: &mut Vec<Action>) {
        let bed = v.bed.clone().expect("check-out has a bed");
        let Some(session) = self.open.get(&bed).cloned() else {
            self.go_idle(out, messages::cancelled());
            return;
        };
        let (identity, _) = v.evidence.clone().expect("identity established");
        let record = self.session_record(
            &session,
            Some(Attestation {
                at_ms: now_ms,
                identity,
            }),
            Closure::Completed,
            now_ms,
        );
        out.push(Action::Sign {
            record: Box::new(Record::Session(record)),
            closes: Some(bed),
        });
        out.push(Action::Show(Screen::Saving {
            message: messages::tap_patient_card(),
        }));
        self.step = Step::Saving(v);
    }

    /// The charge: the service once, the drug or dispensed items at their
    /// price-list prices. Unknown codes are charged at zero and logged,
    /// never guessed.
    fn charge_for(&self, session: &OpenSession) -> Charge {
        let mut items = vec![ChargeItem::new(
            session.service_code.clone(),
            1,
            self.price(&session.service_code),
        )];
        for (code, quantity) in &session.dispensed {
            items.push(ChargeItem::new(code.clone(), *quantity, self.price(code)));
        }
        Charge::from_items(items)
    }

    fn price(&self, code: &str) -> u64 {
        self.prices.unit_price_fen.get(code).copied().unwrap_or(0)
    }

    fn session_record(
        &self,
        s: &OpenSession,
        check_out: Option<Attestation>,
        closure: Closure,
        now_ms: i64,
    ) -> SessionRecord {
        SessionRecord {
            terminal_id: self.config.terminal_id.clone(),
            // The adapter assigns the chain position when it signs.
            seq: 1,
            prev: RecordId::GENESIS,
            signed_at_ms: now_ms.max(s.check_in.at_ms),
            utc_offset_min: self.config.utc_offset_min,
            hospital_code: self.config.hospital_code.clone(),
            department_code: self.config.department_code.clone(),
            bed: s.bed.clone(),
            machine: None,
            patient: s.patient.clone(),
            nurse_id: s.nurse_id.clone(),
            doctor_id: s.doctor_id.clone(),
            treatment: wuding_protocol::Treatment {
                kind: s.kind,
                service_code: s.service_code.clone(),
                drug_code: s.drug_code.clone(),
                dose: s.dose.clone(),
            },
            check_in: s.check_in.clone(),
            check_out,
            closure,
            charge: self.charge_for(s),
        }
    }

    fn on_nurse(&mut self, now_ms: i64, action: NurseAction, out: &mut Vec<Action>) {
        if self.nurse.is_none() {
            return;
        }
        match action {
            NurseAction::Logout => {
                if let Some(n) = self.nurse.take() {
                    out.push(Action::Audit(format!("nurse {} logged out", n.staff_id)));
                }
                self.go_idle(out, messages::tap_nurse_card());
            }
            NurseAction::Cancel => {
                if matches!(self.step, Step::Saving(_) | Step::EnrolSigning { .. }) {
                    return; // the record is being written; it cannot be cancelled
                }
                self.go_idle(out, messages::cancelled());
            }
            NurseAction::StartEnrolment => {
                if matches!(self.step, Step::Idle) {
                    self.deadline_ms = Some(now_ms + self.config.prompt_timeout_ms);
                    self.step = Step::EnrolAwaitCard;
                    out.push(Action::Show(Screen::EnrolTapCard {
                        message: messages::enrol_tap_card(),
                    }));
                }
            }
            NurseAction::ChooseFinger(finger) => {
                if !matches!(self.step, Step::EnrolAwaitFinger(_)) {
                    return;
                }
                if let Step::EnrolAwaitFinger(patient) =
                    std::mem::replace(&mut self.step, Step::Idle)
                {
                    self.deadline_ms = Some(now_ms + self.config.prompt_timeout_ms);
                    out.push(Action::EnrolCapture { capture: 1 });
                    out.push(Action::Show(Screen::EnrolCapture {
                        patient: patient.display_name.clone(),
                        finger,
                        capture: 1,
                        of: self.config.enrol_captures,
                        message: messages::enrol_capture(
                            finger.name_zh(),
                            &finger.name_en(),
                            1,
                            self.config.enrol_captures,
                        ),
                    }));
                    self.step = Step::EnrolCapturing {
                        patient,
                        finger,
                        capture: 1,
                    };
                }
            }
            NurseAction::ChooseTreatment {
                kind,
                service_code,
                drug_code,
                dose,
            } => {
                if let Step::Verifying(v) | Step::AwaitFallback(v) | Step::AwaitConfirm(v) =
                    &mut self.step
                    && let Some(p) = v.proposed.as_mut()
                {
                    p.kind = kind;
                    p.service_code = service_code;
                    p.drug_code = drug_code;
                    p.dose = dose;
                }
            }
            NurseAction::ChooseBed(bed) => {
                if let Step::Verifying(v) | Step::AwaitFallback(v) | Step::AwaitConfirm(v) =
                    &mut self.step
                    && v.purpose == Purpose::CheckIn
                    && self.config.beds.contains(&bed)
                    && !self.open.contains_key(&bed)
                {
                    v.bed = Some(bed);
                }
            }
            NurseAction::ConfirmWarnings => {
                if !matches!(self.step, Step::AwaitConfirm(_)) {
                    return;
                }
                if let Step::AwaitConfirm(v) = std::mem::replace(&mut self.step, Step::Idle) {
                    out.push(Action::Audit("warnings confirmed by nurse".into()));
                    self.open_session(now_ms, v, out);
                }
            }
            NurseAction::Fallback { reason, witness_id } => {
                let nurse_id = self
                    .nurse
                    .as_ref()
                    .map(|n| n.staff_id.clone())
                    .unwrap_or_default();
                if witness_id == nurse_id || witness_id.is_empty() {
                    out.push(Action::Indicate(Signal::Failure));
                    return;
                }
                let step = std::mem::replace(&mut self.step, Step::Idle);
                match step {
                    Step::AwaitFallback(mut v) | Step::Verifying(mut v) => {
                        out.push(Action::Audit(format!(
                            "supervised fallback {} witnessed by {witness_id}",
                            reason.code()
                        )));
                        v.evidence = Some((
                            IdentityEvidence::Supervised {
                                reason,
                                nurse_id,
                                witness_id,
                                attempts: v.attempts_total,
                            },
                            None,
                        ));
                        self.identity_established(now_ms, v, out);
                    }
                    other => self.step = other,
                }
            }
            NurseAction::Dispense {
                bed,
                code,
                quantity,
            } => {
                if let Some(s) = self.open.get_mut(&bed)
                    && quantity > 0
                {
                    s.dispensed.push((code, quantity));
                    out.push(Action::PersistOpen(Box::new(s.clone())));
                }
            }
        }
    }

    fn on_enrol(&mut self, now_ms: i64, result: EnrolResult, out: &mut Vec<Action>) {
        let step = std::mem::replace(&mut self.step, Step::Idle);
        self.deadline_ms = Some(now_ms + self.config.prompt_timeout_ms);
        match (step, result) {
            (
                Step::EnrolCapturing {
                    patient,
                    finger,
                    capture,
                },
                EnrolResult::Captured { ok },
            ) => {
                let next = if ok { capture + 1 } else { capture };
                if !ok {
                    out.push(Action::Indicate(Signal::Attention));
                }
                if next > self.config.enrol_captures {
                    out.push(Action::EnrolBuild {
                        insured_id: patient.insured_id.clone(),
                        finger,
                    });
                    self.step = Step::EnrolBuilding { patient, finger };
                } else {
                    out.push(Action::EnrolCapture { capture: next });
                    out.push(Action::Show(Screen::EnrolCapture {
                        patient: patient.display_name.clone(),
                        finger,
                        capture: next,
                        of: self.config.enrol_captures,
                        message: messages::enrol_capture(
                            finger.name_zh(),
                            &finger.name_en(),
                            next,
                            self.config.enrol_captures,
                        ),
                    }));
                    self.step = Step::EnrolCapturing {
                        patient,
                        finger,
                        capture: next,
                    };
                }
            }
            (
                Step::EnrolBuilding { patient, finger },
                EnrolResult::Stored { template_ref, slot },
            ) => {
                let record = EnrolmentRecord {
                    terminal_id: self.config.terminal_id.clone(),
                    seq: 1,
                    prev: RecordId::GENESIS,
                    signed_at_ms: now_ms,
                    utc_offset_min: self.config.utc_offset_min,
                    hospital_code: self.config.hospital_code.clone(),
                    department_code: self.config.department_code.clone(),
                    patient: PatientRef {
                        insured_id: patient.insured_id.clone(),
                        card_uid: patient.card_uid.clone(),
                    },
                    nurse_id: self
                        .nurse
                        .as_ref()
                        .map(|n| n.staff_id.clone())
                        .unwrap_or_default(),
                    finger,
                    template_ref,
                    captures: self.config.enrol_captures,
                    module_slot: slot,
                };
                out.push(Action::Sign {
                    record: Box::new(Record::Enrolment(record)),
                    closes: None,
                });
                self.step = Step::EnrolSigning { patient, finger };
            }
            (Step::EnrolBuilding { .. }, EnrolResult::Duplicate { other_insured_id }) => {
                out.push(Action::Indicate(Signal::Failure));
                out.push(Action::Audit(format!(
                    "enrolment refused: finger already enrolled under {}",
                    mask_id(&other_insured_id)
                )));
                out.push(Action::Show(Screen::Notice {
                    message: messages::enrol_duplicate(),
                }));
                self.step = Step::Idle;
            }
            (Step::EnrolBuilding { .. }, EnrolResult::Failed) => {
                out.push(Action::Indicate(Signal::Failure));
                out.push(Action::Show(Screen::Notice {
                    message: messages::enrol_failed(),
                }));
                self.step = Step::Idle;
            }
            (
                Step::EnrolCapturing { .. } | Step::EnrolBuilding { .. },
                EnrolResult::DeviceFault,
            ) => {
                out.push(Action::Indicate(Signal::Failure));
                out.push(Action::Show(Screen::Notice {
                    message: messages::device_fault(),
                }));
                self.step = Step::Idle;
            }
            (other, _) => {
                // A stale device result: keep whatever we were doing.
                self.step = other;
            }
        }
    }

    fn on_persisted(&mut self, bed: String, out: &mut Vec<Action>) {
        if let Step::Saving(v) = &self.step
            && v.purpose == Purpose::CheckIn
            && v.bed.as_deref() == Some(bed.as_str())
        {
            let patient = v.patient.display_name.clone();
            out.push(Action::Indicate(Signal::Success));
            out.push(Action::Audit(format!("session opened at bed {bed}")));
            out.push(Action::Show(Screen::SessionOpen {
                patient,
                message: messages::session_open(&bed),
                bed,
            }));
            self.step = Step::Idle;
            self.deadline_ms = None;
        }
    }

    fn on_signed(&mut self, record_id: RecordId, seq: u64, out: &mut Vec<Action>) {
        out.push(Action::Audit(format!(
            "record {} signed at seq {seq}",
            record_id.short()
        )));
        match std::mem::replace(&mut self.step, Step::Idle) {
            Step::Saving(v) if v.purpose == Purpose::CheckOut => {
                let bed = v.bed.clone().unwrap_or_default();
                let total = self
                    .open
                    .get(&bed)
                    .map(|s| self.charge_for(s).total_fen)
                    .unwrap_or(0);
                self.open.remove(&bed);
                out.push(Action::Indicate(Signal::Success));
                out.push(Action::Show(Screen::CheckedOut {
                    patient: v.patient.display_name.clone(),
                    message: messages::checked_out(&format_yuan(total)),
                    bed,
                    total_fen: total,
                }));
                self.deadline_ms = None;
            }
            Step::EnrolSigning { patient, finger } => {
                out.push(Action::Indicate(Signal::Success));
                out.push(Action::Show(Screen::EnrolDone {
                    patient: patient.display_name.clone(),
                    finger,
                    message: messages::enrol_done(finger.name_zh(), &finger.name_en()),
                }));
                self.deadline_ms = None;
            }
            // A missing-check-out closure signed in the background.
            other => self.step = other,
        }
    }
}

/// The default catalogue code of each treatment kind (price lists map codes
/// to prices; hospitals whose codes differ set them in the plan's kinds).
pub fn default_service_code(kind: TreatmentKind) -> &'static str {
    match kind {
        TreatmentKind::HD => "003105010010000",
        TreatmentKind::HDF => "003105010040000",
        TreatmentKind::HF => "003105010020000",
        TreatmentKind::HP => "003105010030000",
        TreatmentKind::PD => "003105020010000",
        TreatmentKind::CHEMO => "311201001",
        TreatmentKind::RADIO => "240300001",
        TreatmentKind::ANTIREJECT => "ANTIREJECT-DISP",
    }
}

/// The local calendar date of a Unix-millisecond instant.
pub fn local_date(now_ms: i64, utc_offset_min: i16) -> wuding_protocol::Date {
    let secs = now_ms.div_euclid(1000) + i64::from(utc_offset_min) * 60;
    let days = secs.div_euclid(86_400);
    wuding_protocol::Date::constant(1970, 1, 1)
        .checked_add(jiff::Span::new().days(days))
        .expect("dates between 1970 and 2200 are in range")
}

/// A card UID for logs: the last four hex digits only.
pub fn mask_uid(uid: &str) -> String {
    let tail: String = uid
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// An insured id for logs: first four and last two characters.
pub fn mask_id(id: &str) -> String {
    if id.len() <= 6 {
        return "*".repeat(id.len());
    }
    format!(
        "{}{}{}",
        &id[..4],
        "*".repeat(id.len() - 6),
        &id[id.len() - 2..]
    )
}
