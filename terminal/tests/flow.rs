//! The session flow, driven event by event with virtual time.

use wuding_protocol::{
    Closure, Dose, FallbackReason, Finger, IdentityEvidence, Record, RecordId, TemplateRef,
    TreatmentKind, TreatmentPlan,
};
use wuding_terminal::flow::*;
use wuding_terminal::messages::{Advice, Text};

const T0: i64 = 1_794_787_331_000; // 2026-11-16 08:02:11 +08:00

/// A single-layer stand-in for the rule engine: refuses or warns on demand.
#[derive(Default)]
struct Policy {
    refuse: bool,
    warn: bool,
}

impl BedsidePolicy for Policy {
    fn check(
        &self,
        _: &PatientContext,
        p: &ProposedSession,
        today: &[TreatmentKind],
    ) -> Vec<Verdict> {
        let mut v = Vec::new();
        if self.refuse
            || (p.kind.is_centre_dialysis() && today.iter().any(|k| k.is_centre_dialysis()))
        {
            v.push(Verdict {
                refuse: true,
                rule_id: "frequency_day".into(),
                reason: Text::new("今日已透析", "Already dialysed today"),
            });
        }
        if self.warn {
            v.push(Verdict {
                refuse: false,
                rule_id: "plan_expiring".into(),
                reason: Text::new("计划即将到期", "Plan expires soon"),
            });
        }
        v
    }
}

fn prices() -> PriceList {
    let mut p = PriceList::default();
    p.unit_price_fen.insert("003105010010000".into(), 42_000);
    p.unit_price_fen.insert("C-DIALYSER".into(), 9_800);
    p
}

fn patient(fingers: Vec<Finger>) -> PatientContext {
    PatientContext {
        insured_id: "330102195403170012".into(),
        card_uid: "04A1B2C3".into(),
        display_name: "王*明".into(),
        fingers,
        plan: Some(TreatmentPlan {
            plan_id: "PL-1".into(),
            insured_id: "330102195403170012".into(),
            hospital_code: "H33010200017".into(),
            department_code: "NEPH-HD".into(),
            doctor_ids: vec!["D0107".into()],
            kinds: vec![TreatmentKind::HD, TreatmentKind::HDF],
            drug_code: None,
            max_dose: None,
            max_sessions_per_week: Some(3),
            valid_from: wuding_protocol::Date::constant(2026, 1, 1),
            valid_to: wuding_protocol::Date::constant(2026, 12, 31),
        }),
        sessions_today: vec![],
    }
}

fn nurse() -> StaffRef {
    StaffRef {
        staff_id: "N0231".into(),
        display_name: "李护士".into(),
    }
}

fn card(p: &PatientContext) -> Event {
    Event::CardTapped {
        card_uid: p.card_uid.clone(),
        owner: CardOwner::Patient(Box::new(p.clone())),
    }
}

fn matched(score: u16) -> Event {
    Event::Finger(FingerResult::Matched {
        score,
        template_ref: TemplateRef([0x5a; 32]),
    })
}

fn logged_in(policy: Policy) -> Flow<Policy> {
    let mut flow = Flow::new(FlowConfig::example(), policy, prices(), vec![]);
    flow.handle(T0 - 60_000, Event::NurseLoggedIn(nurse()));
    flow
}

fn screens(actions: &[Action]) -> Vec<&Screen> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Show(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn signed(actions: &[Action]) -> Option<(Record, Option<String>)> {
    actions.iter().find_map(|a| match a {
        Action::Sign { record, closes } => Some(((**record).clone(), closes.clone())),
        _ => None,
    })
}

fn persisted(actions: &[Action]) -> Option<OpenSession> {
    actions.iter().find_map(|a| match a {
        Action::PersistOpen(s) => Some((**s).clone()),
        _ => None,
    })
}

/// Checks a patient in on the first finger; returns the open session.
fn check_in(flow: &mut Flow<Policy>, p: &PatientContext, t: i64) -> OpenSession {
    let out = flow.handle(t, card(p));
    assert!(out.contains(&Action::VerifyFinger {
        insured_id: p.insured_id.clone(),
        finger: p.fingers[0]
    }));
    let out = flow.handle(t + 900, matched(140));
    let session = persisted(&out).expect("open session persisted before anything is shown as done");
    let out = flow.handle(
        t + 950,
        Event::Persisted {
            bed: session.bed.clone(),
        },
    );
    assert!(out.contains(&Action::Indicate(Signal::Success)));
    assert!(matches!(screens(&out)[..], [Screen::SessionOpen { .. }]));
    session
}

#[test]
fn locked_until_a_nurse_logs_in() {
    let mut flow = Flow::new(FlowConfig::example(), Policy::default(), prices(), vec![]);
    let p = patient(vec![Finger::RightIndex]);
    let out = flow.handle(T0, card(&p));
    assert!(matches!(screens(&out)[..], [Screen::Locked { .. }]));
    assert!(!out.iter().any(|a| matches!(a, Action::VerifyFinger { .. })));
    let out = flow.handle(T0, Event::NurseLoginFailed);
    assert!(out.contains(&Action::Indicate(Signal::Failure)));
    let out = flow.handle(T0, Event::NurseLoggedIn(nurse()));
    assert!(matches!(screens(&out)[..], [Screen::Idle { .. }]));
}

#[test]
fn check_in_then_check_out_signs_one_complete_record() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![Finger::RightIndex, Finger::RightMiddle]);
    let session = check_in(&mut flow, &p, T0);
    assert_eq!(session.bed, "B01");
    assert_eq!(session.kind, TreatmentKind::HD);
    assert_eq!(session.doctor_id, "D0107");
    assert_eq!(session.nurse_id, "N0231");

    flow.handle(
        T0 + 3_600_000,
        Event::Nurse(NurseAction::Dispense {
            bed: "B01".into(),
            code: "C-DIALYSER".into(),
            quantity: 1,
        }),
    );

    let t_out = T0 + 4 * 3_600_000;
    let out = flow.handle(t_out, card(&p));
    assert!(out.contains(&Action::VerifyFinger {
        insured_id: p.insured_id.clone(),
        finger: Finger::RightIndex
    }));
    let out = flow.handle(t_out + 800, matched(97));
    let (record, closes) = signed(&out).expect("check-out signs");
    assert_eq!(closes.as_deref(), Some("B01"));
    let Record::Session(s) = &record else {
        panic!("session record")
    };
    assert_eq!(s.closure, Closure::Completed);
    assert_eq!(s.check_in.at_ms, T0 + 900);
    assert_eq!(s.check_out.as_ref().unwrap().at_ms, t_out + 800);
    assert_eq!(s.charge.total_fen, 42_000 + 9_800);
    assert_eq!(s.duration_min(), Some(239));
    record.encode().expect("the flow produces valid records");

    let out = flow.handle(
        t_out + 900,
        Event::Signed {
            record_id: RecordId([1; 32]),
            seq: 7,
        },
    );
    match screens(&out)[..] {
        [Screen::CheckedOut { total_fen, bed, .. }] => {
            assert_eq!(*total_fen, 51_800);
            assert_eq!(bed, "B01");
        }
        ref other => panic!("{other:?}"),
    }
    assert_eq!(flow.open_sessions().count(), 0);
}

#[test]
fn worn_finger_retries_then_second_finger_then_supervised_fallback() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![Finger::LeftIndex, Finger::LeftMiddle]);
    flow.handle(T0, card(&p));
    // Three failures on the first finger, with advice.
    let out = flow.handle(
        T0 + 1_000,
        Event::Finger(FingerResult::PoorImage(Advice::Moisten)),
    );
    match screens(&out)[..] {
        [
            Screen::PlaceFinger {
                attempt: 2,
                finger: Finger::LeftIndex,
                message,
                ..
            },
        ] => {
            assert!(message.zh.contains("润湿"), "{}", message.zh);
        }
        ref other => panic!("{other:?}"),
    }
    flow.handle(T0 + 2_000, Event::Finger(FingerResult::NoMatch));
    let out = flow.handle(T0 + 3_000, Event::Finger(FingerResult::NoFinger));
    // Then the second finger, by name.
    assert!(out.contains(&Action::VerifyFinger {
        insured_id: p.insured_id.clone(),
        finger: Finger::LeftMiddle
    }));
    flow.handle(T0 + 4_000, Event::Finger(FingerResult::NoMatch));
    flow.handle(T0 + 5_000, Event::Finger(FingerResult::NoMatch));
    let out = flow.handle(T0 + 6_000, Event::Finger(FingerResult::NoMatch));
    assert!(matches!(screens(&out)[..], [Screen::ChooseFallback { .. }]));
    // The nurse cannot witness her own fallback.
    let out = flow.handle(
        T0 + 7_000,
        Event::Nurse(NurseAction::Fallback {
            reason: FallbackReason::FingerprintUnreadable,
            witness_id: "N0231".into(),
        }),
    );
    assert!(out.contains(&Action::Indicate(Signal::Failure)));
    assert!(persisted(&out).is_none());
    let out = flow.handle(
        T0 + 8_000,
        Event::Nurse(NurseAction::Fallback {
            reason: FallbackReason::FingerprintUnreadable,
            witness_id: "N0198".into(),
        }),
    );
    let session = persisted(&out).expect("fallback opens the session");
    assert_eq!(
        session.check_in.identity,
        IdentityEvidence::Supervised {
            reason: FallbackReason::FingerprintUnreadable,
            nurse_id: "N0231".into(),
            witness_id: "N0198".into(),
            attempts: 6,
        }
    );
}

#[test]
fn a_later_match_counts_every_attempt() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![Finger::RightIndex]);
    flow.handle(T0, card(&p));
    flow.handle(T0 + 1_000, Event::Finger(FingerResult::NoMatch));
    let out = flow.handle(T0 + 2_000, matched(88));
    let s = persisted(&out).unwrap();
    assert!(matches!(
        s.check_in.identity,
        IdentityEvidence::Fingerprint {
            attempts: 2,
            score: 88,
            ..
        }
    ));
}

#[test]
fn red_rule_refuses_at_the_bedside() {
    let mut flow = logged_in(Policy::default());
    let mut p = patient(vec![Finger::RightIndex]);
    p.sessions_today = vec![TreatmentKind::HD];
    flow.handle(T0, card(&p));
    let out = flow.handle(T0 + 900, matched(150));
    assert!(persisted(&out).is_none());
    assert!(out.contains(&Action::Indicate(Signal::Failure)));
    match screens(&out)[..] {
        [Screen::Refused { verdicts, .. }] => assert_eq!(verdicts[0].rule_id, "frequency_day"),
        ref other => panic!("{other:?}"),
    }
    assert_eq!(flow.open_sessions().count(), 0);
}

#[test]
fn soft_rule_warns_and_the_nurse_confirms() {
    let mut flow = logged_in(Policy {
        warn: true,
        ..Policy::default()
    });
    let p = patient(vec![Finger::RightIndex]);
    flow.handle(T0, card(&p));
    let out = flow.handle(T0 + 900, matched(150));
    assert!(persisted(&out).is_none());
    assert!(matches!(screens(&out)[..], [Screen::Warnings { .. }]));
    let out = flow.handle(T0 + 5_000, Event::Nurse(NurseAction::ConfirmWarnings));
    assert!(persisted(&out).is_some());
}

#[test]
fn nurse_may_choose_bed_and_treatment_before_the_session_opens() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![Finger::RightIndex]);
    flow.handle(T0, card(&p));
    flow.handle(T0 + 100, Event::Nurse(NurseAction::ChooseBed("B03".into())));
    flow.handle(
        T0 + 200,
        Event::Nurse(NurseAction::ChooseTreatment {
            kind: TreatmentKind::HDF,
            service_code: "003105010040000".into(),
            drug_code: None,
            dose: None,
        }),
    );
    let s = persisted(&flow.handle(T0 + 900, matched(150))).unwrap();
    assert_eq!((s.bed.as_str(), s.kind), ("B03", TreatmentKind::HDF));
}

#[test]
fn missing_check_out_is_signed_as_such() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![Finger::RightIndex]);
    check_in(&mut flow, &p, T0);
    assert!(signed(&flow.handle(T0 + 9 * 3_600_000, Event::Tick)).is_none());
    let out = flow.handle(T0 + 10 * 3_600_000 + 1_000, Event::Tick);
    let (record, closes) = signed(&out).expect("closed by the terminal");
    assert_eq!(closes.as_deref(), Some("B01"));
    let Record::Session(s) = &record else {
        panic!()
    };
    assert_eq!(s.closure, Closure::MissingCheckout);
    assert!(s.check_out.is_none());
    record.encode().unwrap();
    assert_eq!(flow.open_sessions().count(), 0);
}

#[test]
fn open_sessions_survive_a_restart() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![Finger::RightIndex]);
    let session = check_in(&mut flow, &p, T0);
    // The process dies; a new flow starts from what storage kept.
    let mut flow = Flow::new(
        FlowConfig::example(),
        Policy::default(),
        prices(),
        vec![session],
    );
    flow.handle(T0 + 3_600_000, Event::NurseLoggedIn(nurse()));
    flow.handle(T0 + 4 * 3_600_000, card(&p));
    let out = flow.handle(T0 + 4 * 3_600_000 + 500, matched(120));
    let (record, _) = signed(&out).expect("check-out after restart");
    let Record::Session(s) = record else { panic!() };
    assert_eq!(s.check_in.at_ms, T0 + 900);
}

#[test]
fn prompts_time_out_back_to_idle() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![Finger::RightIndex]);
    flow.handle(T0, card(&p));
    assert!(screens(&flow.handle(T0 + 59_000, Event::Tick)).is_empty());
    let out = flow.handle(T0 + 61_000, Event::Tick);
    match screens(&out)[..] {
        [Screen::Idle { message, .. }] => assert_eq!(message.en, "Timed out: cancelled"),
        ref other => panic!("{other:?}"),
    }
    // A late finger result after the timeout changes nothing.
    assert!(persisted(&flow.handle(T0 + 62_000, matched(150))).is_none());
}

#[test]
fn enrolment_captures_builds_and_signs() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![]);
    flow.handle(T0, Event::Nurse(NurseAction::StartEnrolment));
    let out = flow.handle(T0 + 100, card(&p));
    assert!(matches!(
        screens(&out)[..],
        [Screen::EnrolChooseFinger { .. }]
    ));
    let out = flow.handle(
        T0 + 200,
        Event::Nurse(NurseAction::ChooseFinger(Finger::RightIndex)),
    );
    assert!(out.contains(&Action::EnrolCapture { capture: 1 }));
    let out = flow.handle(T0 + 300, Event::Enrol(EnrolResult::Captured { ok: true }));
    assert!(out.contains(&Action::EnrolCapture { capture: 2 }));
    // A bad capture is repeated, not counted.
    let out = flow.handle(T0 + 400, Event::Enrol(EnrolResult::Captured { ok: false }));
    assert!(out.contains(&Action::EnrolCapture { capture: 2 }));
    flow.handle(T0 + 500, Event::Enrol(EnrolResult::Captured { ok: true }));
    let out = flow.handle(T0 + 600, Event::Enrol(EnrolResult::Captured { ok: true }));
    assert!(out.contains(&Action::EnrolBuild {
        insured_id: p.insured_id.clone(),
        finger: Finger::RightIndex
    }));
    let out = flow.handle(
        T0 + 700,
        Event::Enrol(EnrolResult::Stored {
            template_ref: TemplateRef([7; 32]),
            slot: 12,
        }),
    );
    let (record, closes) = signed(&out).unwrap();
    assert!(closes.is_none());
    let Record::Enrolment(e) = &record else {
        panic!()
    };
    assert_eq!(
        (e.finger, e.module_slot, e.captures),
        (Finger::RightIndex, 12, 3)
    );
    record.encode().unwrap();
    let out = flow.handle(
        T0 + 800,
        Event::Signed {
            record_id: RecordId([2; 32]),
            seq: 1,
        },
    );
    assert!(matches!(screens(&out)[..], [Screen::EnrolDone { .. }]));
}

#[test]
fn a_finger_enrolled_under_another_patient_is_refused() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![]);
    flow.handle(T0, Event::Nurse(NurseAction::StartEnrolment));
    flow.handle(T0 + 100, card(&p));
    flow.handle(
        T0 + 200,
        Event::Nurse(NurseAction::ChooseFinger(Finger::RightIndex)),
    );
    for i in 0..3 {
        flow.handle(
            T0 + 300 + i,
            Event::Enrol(EnrolResult::Captured { ok: true }),
        );
    }
    let out = flow.handle(
        T0 + 700,
        Event::Enrol(EnrolResult::Duplicate {
            other_insured_id: "330106196811020025".into(),
        }),
    );
    assert!(signed(&out).is_none());
    assert!(out.contains(&Action::Indicate(Signal::Failure)));
    let audit: Vec<&String> = out
        .iter()
        .filter_map(|a| match a {
            Action::Audit(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(audit.len(), 1);
    assert!(
        !audit[0].contains("330106196811020025"),
        "ids are masked in logs: {}",
        audit[0]
    );
}

#[test]
fn patient_without_template_goes_to_supervised_confirmation() {
    let mut flow = logged_in(Policy::default());
    let p = patient(vec![]);
    let out = flow.handle(T0, card(&p));
    assert!(matches!(screens(&out)[..], [Screen::ChooseFallback { .. }]));
    let out = flow.handle(
        T0 + 1_000,
        Event::Nurse(NurseAction::Fallback {
            reason: FallbackReason::TemplateUnavailable,
            witness_id: "N0198".into(),
        }),
    );
    let s = persisted(&out).unwrap();
    assert!(!s.check_in.identity.is_fingerprint());
}

#[test]
fn no_free_bed_refuses_a_new_check_in() {
    let mut flow = logged_in(Policy::default());
    for (i, uid) in ["04000001", "04000002", "04000003"].iter().enumerate() {
        let mut p = patient(vec![Finger::RightIndex]);
        p.insured_id = format!("P{i}");
        p.card_uid = (*uid).into();
        check_in(&mut flow, &p, T0 + i as i64 * 10_000);
    }
    let mut p = patient(vec![Finger::RightIndex]);
    p.insured_id = "P9".into();
    let out = flow.handle(T0 + 100_000, card(&p));
    assert!(!out.iter().any(|a| matches!(a, Action::VerifyFinger { .. })));
    assert!(out.contains(&Action::Indicate(Signal::Failure)));
}

#[test]
fn chemo_session_carries_plan_drug_and_dose() {
    let mut flow = logged_in(Policy::default());
    let mut p = patient(vec![Finger::RightIndex]);
    let plan = p.plan.as_mut().unwrap();
    plan.kinds = vec![TreatmentKind::CHEMO];
    plan.drug_code = Some("XL01XA01".into());
    plan.max_dose = Some(Dose::parse_text("75mg").unwrap());
    let s = check_in(&mut flow, &p, T0);
    assert_eq!(s.kind, TreatmentKind::CHEMO);
    assert_eq!(s.drug_code.as_deref(), Some("XL01XA01"));
    assert_eq!(s.dose.as_ref().unwrap().amount_milli, 75_000);
}

#[test]
fn local_dates_follow_the_terminal_offset() {
    // 2026-11-15 23:30 UTC is 2026-11-16 07:30 in China.
    let ms = 1_794_785_400_000;
    assert_eq!(
        local_date(ms, 480),
        wuding_protocol::Date::constant(2026, 11, 16)
    );
    assert_eq!(
        local_date(ms, 0),
        wuding_protocol::Date::constant(2026, 11, 15)
    );
}

#[test]
fn identifiers_are_masked_for_logs() {
    assert_eq!(mask_id("330102195403170012"), "3301************12");
    assert_eq!(mask_uid("04A1B2C3"), "…B2C3");
}

#[test]
fn the_shared_rule_engine_refuses_and_warns_at_the_bedside() {
    use wuding_terminal::policy::RulesPolicy;
    let mut flow = Flow::new(
        FlowConfig::example(),
        RulesPolicy(wuding_rules::Ruleset::default_rules()),
        prices(),
        vec![],
    );
    flow.handle(T0 - 60_000, Event::NurseLoggedIn(nurse()));
    // A second centre dialysis the same day: refused, with the reason.
    let mut p = patient(vec![Finger::RightIndex]);
    p.sessions_today = vec![TreatmentKind::HD];
    flow.handle(T0, card(&p));
    let out = flow.handle(T0 + 900, matched(150));
    match screens(&out)[..] {
        [Screen::Refused { verdicts, .. }] => {
            assert_eq!(verdicts[0].rule_id, "frequency_day");
            assert_eq!(
                verdicts[0].reason.zh,
                "同日重复透析：今日已透析 1 次（每日上限 1 次）"
            );
        }
        ref other => panic!("{other:?}"),
    }
    // A plan that ends in three days: a warning the nurse confirms.
    let mut p = patient(vec![Finger::RightIndex]);
    p.plan.as_mut().unwrap().valid_to = wuding_protocol::Date::constant(2026, 11, 19);
    flow.handle(T0 + 2_000, Event::Nurse(NurseAction::Cancel));
    flow.handle(T0 + 3_000, card(&p));
    let out = flow.handle(T0 + 3_900, matched(150));
    assert!(matches!(screens(&out)[..], [Screen::Warnings { .. }]));
}
