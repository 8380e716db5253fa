//! One case per rule: a minimal dataset that must trigger it with the
//! default severity (and the money at stake), and an honest dataset close
//! to it that must not.

mod common;

use common::*;
use wuding_protocol::{Dose, TreatmentKind};
use wuding_rules::{IntegrityKind, RuleId, Ruleset, Severity, Subject};

struct Case {
    /// Must produce at least one finding of the rule.
    trigger: World,
    /// Close to `trigger`, honest: no finding of the rule.
    honest: World,
    /// Money at stake over the rule's findings, when the case pins it.
    money: Option<u64>,
    /// Findings of the rule the trigger must produce, when pinned.
    count: Option<usize>,
    rules: Ruleset,
}

impl Case {
    fn new(trigger: World, honest: World) -> Case {
        Case {
            trigger,
            honest,
            money: None,
            count: Some(1),
            rules: Ruleset::default_rules(),
        }
    }
    fn money(mut self, fen: u64) -> Case {
        self.money = Some(fen);
        self
    }
    fn count(mut self, n: Option<usize>) -> Case {
        self.count = n;
        self
    }
}

fn check(rule: &str, severity: Severity, case: Case) {
    let found = case.trigger.run_with(&case.rules);
    let mine = of_rule(&found, rule);
    assert!(!mine.is_empty(), "{rule} did not fire: {found:#?}");
    if let Some(n) = case.count {
        assert_eq!(mine.len(), n, "{rule}: {mine:#?}");
    }
    for f in &mine {
        assert_eq!(f.severity, severity, "{rule}");
        assert!(!f.explanation.zh.is_empty() && !f.explanation.en.is_empty());
        assert!(f.hospital_code.is_some(), "{rule}: names a hospital");
        assert_eq!(f.ruleset_version, case.rules.version);
        if let Some(id) = RuleId::from_code(rule) {
            let expected: Vec<&str> = case.rules.rule(id).params.keys().copied().collect();
            let got: Vec<&str> = f.params.keys().map(String::as_str).collect();
            assert_eq!(got, expected, "{rule}: every parameter is named");
        }
        assert!(
            !f.claim_ids.is_empty()
                || !f.record_ids.is_empty()
                || matches!(
                    f.subject,
                    Subject::Hospital(_)
                        | Subject::Nurse(_)
                        | Subject::Terminal(_)
                        | Subject::Chain(_)
                ),
            "{rule}: a finding rests on evidence"
        );
    }
    if let Some(fen) = case.money {
        assert_eq!(
            mine.iter().map(|f| f.amount_fen).sum::<u64>(),
            fen,
            "{rule}"
        );
    }
    let honest = case.honest.run_with(&case.rules);
    assert!(
        of_rule(&honest, rule).is_empty(),
        "{rule} fired on the honest dataset: {honest:#?}"
    );
}

macro_rules! cases {
    ($($rule:ident: $severity:ident => $build:expr;)*) => {
        $(
            #[test]
            fn $rule() {
                check(stringify!($rule), Severity::$severity, $build);
            }
        )*
        const COVERED: &[&str] = &[$(stringify!($rule)),*];
    };
}

fn with(mut w: World, f: impl FnOnce(&mut World)) -> World {
    f(&mut w);
    w
}

/// The honest world with its last session changed (and claimed as changed).
fn last(f: impl FnOnce(&mut Sess)) -> World {
    let mut w = World::honest();
    w.sessions.pop();
    w.claims.pop();
    let mut s = Sess::new(6, P1, 13);
    f(&mut s);
    w.attend(s);
    w
}

fn fallback_world(n: usize, fallbacks: usize, by: &str) -> World {
    // n sessions spread over patients and days; `fallbacks` of them by
    // supervised fallback, all by one nurse on one terminal.
    let mut w = World::default();
    for i in 0..n {
        let patient = if by == "patient" {
            P1.to_owned()
        } else {
            format!("P51010000{:05}", i / 3)
        };
        let day =
            [2, 4, 6, 9, 11, 13, 16, 18, 20, 23, 25, 27][if by == "patient" { i } else { i % 3 }];
        w.plans.push(dialysis_plan(&patient));
        let mut s = Sess::new(i as u32 + 1, &patient, day);
        s.fallback = i < fallbacks;
        w.attend(s);
    }
    w.plans.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
    w.plans.dedup();
    w
}

fn peer_world(outlier_sessions: u32) -> World {
    // Five hospitals, ten patients each; claims only (peer statistics are
    // about what hospitals claim).
    let mut w = World::default();
    for h in 0..5 {
        let hospital = format!("H5101040000{h}");
        let per_patient = if h == 4 { outlier_sessions } else { 12 };
        for p in 0..10 {
            let patient = format!("P5101{h}0000{p:03}");
            for k in 0..per_patient {
                let day = 1 + (k as i8) * 2;
                let mut s = Sess::new(0, &patient, day).at_hospital(&hospital);
                s.n = h * 1000 + p * 50 + k;
                w.claims.push(s.claim(&format!("C{hospital}-{:07}", s.n)));
            }
        }
    }
    w
}

cases! {
    phantom_session: Red => Case::new(
        with(World::honest(), |w| {
            // Tuesday: claimed, nobody attended.
            w.claims.push(Sess::new(99, P1, 3).claim("C-PHANTOM"));
        }),
        World::honest(),
    ).money(HD_FEN);

    inflated_count: Red => Case::new(
        with(World::honest(), |w| {
            let c = w.claims.iter_mut().find(|c| c.service_date == d(4)).unwrap();
            c.quantity = 2;
            c.amount_fen = 2 * HD_FEN;
        }),
        // Two units on two days, each attested: honest.
        World::honest(),
    ).money(HD_FEN);

    service_swapped: Red => Case::new(
        with(World::honest(), |w| {
            let c = w.claims.iter_mut().find(|c| c.service_date == d(6)).unwrap();
            c.service_kind = TreatmentKind::HDF;
            c.service_code = "HDF".into();
            c.amount_fen = HDF_FEN;
        }),
        // HDF claimed where HDF was attested.
        last(|s| *s = s.clone().kind(TreatmentKind::HDF)),
    ).money(HDF_FEN - HD_FEN);

    amount_above_charge: Red => Case::new(
        with(World::honest(), |w| w.claims[2].amount_fen += 1_000),
        World::honest(),
    ).money(1_000);

    supervised_fallback: Green => Case::new(
        last(|s| s.fallback = true),
        World::honest(),
    ).money(HD_FEN);

    fallback_rate_terminal: Yellow => Case::new(
        fallback_world(40, 11, "terminal"),
        fallback_world(40, 10, "terminal"),
    );

    fallback_rate_nurse: Yellow => Case::new(
        fallback_world(30, 8, "nurse"),
        fallback_world(30, 7, "nurse"),
    );

    fallback_rate_patient: Yellow => Case::new(
        fallback_world(12, 8, "patient"),
        fallback_world(12, 7, "patient"),
    );

    short_dialysis: Yellow => Case::new(
        last(|s| s.minutes = Some(150)),
        last(|s| s.minutes = Some(180)),
    ).money(HD_FEN);

    short_with_fallback: Red => Case::new(
        last(|s| {
            s.minutes = Some(150);
            s.fallback = true;
        }),
        with(last(|s| s.minutes = Some(150)), |w| {
            let mut s = Sess::new(7, P1, 16);
            s.fallback = true;
            w.attend(s);
        }),
    ).money(HD_FEN);

    fallback_pricier_service: Yellow => Case::new(
        last(|s| {
            *s = s.clone().kind(TreatmentKind::HDF);
            s.fallback = true;
        }),
        with(last(|s| *s = s.clone().kind(TreatmentKind::HDF)), |w| {
            let mut s = Sess::new(7, P1, 16);
            s.fallback = true;
            w.attend(s);
        }),
    ).money(HDF_FEN);

    missing_checkout: Yellow => Case::new(
        last(|s| s.minutes = None),
        World::honest(),
    ).money(HD_FEN);

    frequency_day: Red => Case::new(
        with(World::honest(), |w| {
            // A second centre dialysis on Wednesday afternoon, at H2.
            let mut s = Sess::new(50, P1, 4).at_hospital(H2);
            s.start_ms = at(4, 14, 0);
            w.attend(s);
        }),
        with(World::honest(), |w| {
            // Peritoneal dialysis at home the same day is no centre dialysis.
            let mut s = Sess::new(50, P1, 4).kind(TreatmentKind::PD);
            s.start_ms = at(4, 14, 0);
            w.plans[0].kinds.push(TreatmentKind::PD);
            w.attend(s);
        }),
    ).money(HD_FEN);

    frequency_week: Yellow => Case::new(
        with(World::honest(), |w| {
            w.attend(Sess::new(50, P1, 5));
        }),
        with(World::honest(), |w| {
            // The fourth session falls in the next ISO week.
            w.attend(Sess::new(50, P1, 16));
        }),
    ).money(HD_FEN);

    frequency_month: Green => Case::new(
        {
            let mut w = World::default();
            let mut plan = dialysis_plan(P1);
            plan.max_sessions_per_week = Some(4);
            w.plans.push(plan);
            for (i, day) in [2, 3, 4, 6, 9, 10, 11, 13, 16, 17, 18, 20, 23, 24, 25].into_iter().enumerate() {
                w.attend(Sess::new(i as u32 + 1, P1, day));
            }
            w
        },
        {
            let mut w = World::default();
            let mut plan = dialysis_plan(P1);
            plan.max_sessions_per_week = Some(4);
            w.plans.push(plan);
            for (i, day) in [2, 3, 4, 6, 9, 10, 11, 13, 16, 17, 18, 20, 23, 24].into_iter().enumerate() {
                w.attend(Sess::new(i as u32 + 1, P1, day));
            }
            w
        },
    ).money(HD_FEN);

    overlap_places: Red => Case::new(
        with(World::default(), |w| {
            w.plans.push(chemo_plan(P1));
            w.plans.push(dialysis_plan(P1));
            w.attend(Sess::new(1, P1, 2));
            // Chemotherapy at H2 from 11:00 while on dialysis at H1 until 12:00.
            let mut c = chemo(2, P1, 2).at_hospital(H2);
            c.start_ms = at(2, 11, 0);
            w.attend(c);
        }),
        with(World::default(), |w| {
            w.plans.push(chemo_plan(P1));
            w.plans.push(dialysis_plan(P1));
            w.attend(Sess::new(1, P1, 2));
            // From 11:51: nine minutes, under the ten-minute threshold.
            let mut c = chemo(2, P1, 2).at_hospital(H2);
            c.start_ms = at(2, 11, 51);
            w.attend(c);
        }),
    ).money(HD_FEN);

    no_plan: Yellow => Case::new(
        with(World::honest(), |w| w.plans.clear()),
        World::honest(),
    ).count(Some(6)).money(6 * HD_FEN);

    plan_hospital: Red => Case::new(
        last(|s| *s = s.clone().at_hospital(H2)),
        World::honest(),
    ).money(HD_FEN);

    plan_department: Yellow => Case::new(
        last(|s| s.department = "ONC".into()),
        World::honest(),
    ).money(HD_FEN);

    plan_doctor: Yellow => Case::new(
        last(|s| s.doctor = format!("{H1}D99")),
        // The plan's second doctor.
        last(|s| s.doctor = format!("{H1}D02")),
    ).money(HD_FEN);

    plan_kind: Red => Case::new(
        last(|s| *s = s.clone().kind(TreatmentKind::HP)),
        last(|s| *s = s.clone().kind(TreatmentKind::HDF)),
    ).money(HDF_FEN);

    plan_drug: Red => Case::new(
        with(World::default(), |w| {
            w.plans.push(chemo_plan(P1));
            let mut c = chemo(1, P1, 3);
            c.drug = Some("L01XA01".into());
            w.attend(c);
        }),
        with(World::default(), |w| {
            w.plans.push(chemo_plan(P1));
            w.attend(chemo(1, P1, 3));
        }),
    ).money(80_000);

    plan_dose: Red => Case::new(
        with(World::default(), |w| {
            w.plans.push(chemo_plan(P1));
            let mut c = chemo(1, P1, 3);
            c.dose = Some(Dose::parse_text("130.5mg").unwrap());
            w.attend(c);
        }),
        with(World::default(), |w| {
            w.plans.push(chemo_plan(P1));
            let mut c = chemo(1, P1, 3);
            c.dose = Some(Dose::parse_text("129mg").unwrap());
            w.attend(c);
        }),
    ).money(80_000);

    bad_signature: Red => integrity_case(IntegrityKind::BadSignature, true);
    unknown_key: Red => integrity_case(IntegrityKind::UnknownKey, true);
    revoked_key: Red => integrity_case(IntegrityKind::Revoked, true);
    after_revocation: Yellow => integrity_case(IntegrityKind::AfterRevocation, false);
    refused_record: Red => integrity_case(IntegrityKind::Malformed, true);
    chain_fork: Red => integrity_case(IntegrityKind::Fork, false);
    chain_broken_link: Red => integrity_case(IntegrityKind::BrokenLink, false);

    chain_gap: Yellow => Case::new(
        with(World::honest(), |w| {
            let mut e = event(IntegrityKind::Gap, &[]);
            e.missing = Some((5, 6));
            w.integrity.push(e);
        }),
        World::honest(),
    );

    clock_skew: Yellow => Case::new(
        // Signed three hours after the server received it.
        last(|s| s.delay_ms = -3 * 3_600_000),
        last(|s| s.delay_ms = -5 * 60_000),
    ).money(HD_FEN);

    backdated: Yellow => Case::new(
        with(World::honest(), |w| {
            let mut e = event(IntegrityKind::Backdated, &[w.sessions[1].record_id]);
            e.measured_ms = Some(20 * 60_000);
            w.integrity.push(e);
        }),
        with(World::honest(), |w| {
            let mut e = event(IntegrityKind::Backdated, &[w.sessions[1].record_id]);
            e.measured_ms = Some(5 * 60_000);
            w.integrity.push(e);
        }),
    ).money(HD_FEN);

    late_sync: Green => Case::new(
        last(|s| s.delay_ms = 80 * 3_600_000),
        last(|s| s.delay_ms = 70 * 3_600_000),
    ).money(HD_FEN);

    peer_sessions: Yellow => Case::new(peer_world(14), peer_world(13));
}

/// An ingest event about one accepted, claimed record; the honest
/// neighbour is the same data without the event.
fn integrity_case(kind: IntegrityKind, money: bool) -> Case {
    let trigger = with(World::honest(), |w| {
        let id = w.sessions[2].record_id;
        let mut ids = vec![id];
        if kind == IntegrityKind::Fork {
            ids.push(wuding_protocol::RecordId([0xEE; 32]));
        }
        w.integrity.push(event(kind, &ids));
    });
    let case = Case::new(trigger, World::honest());
    if money { case.money(HD_FEN) } else { case }
}

#[test]
fn every_rule_and_composite_has_a_case() {
    let rules = Ruleset::default_rules();
    let mut expected: Vec<&str> = RuleId::ALL
        .iter()
        .filter(|r| rules.rule(**r).severity.is_some())
        .map(|r| r.code())
        .collect();
    expected.extend(rules.composites.iter().map(|c| c.id.as_str()));
    expected.sort();
    let mut covered = COVERED.to_vec();
    covered.sort();
    assert_eq!(covered, expected);
}

#[test]
fn the_honest_world_produces_no_findings() {
    let found = World::honest().run();
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_rule_turned_off_finds_nothing() {
    let w = with(World::honest(), |w| {
        w.claims.push(Sess::new(99, P1, 3).claim("C-PHANTOM"));
    });
    let off = Ruleset::default_rules().with_enabled(RuleId::PhantomSession, false);
    assert!(of_rule(&w.run_with(&off), "phantom_session").is_empty());
}

#[test]
fn findings_carry_the_evidence_they_rest_on() {
    let w = with(World::honest(), |w| {
        let c = w
            .claims
            .iter_mut()
            .find(|c| c.service_date == d(6))
            .unwrap();
        c.service_kind = TreatmentKind::HDF;
        c.service_code = "HDF".into();
        c.amount_fen = HDF_FEN;
    });
    let found = w.run();
    let f = of_rule(&found, "service_swapped")[0];
    assert_eq!(f.hospital_code.as_deref(), Some(H1));
    assert_eq!(f.insured_id.as_deref(), Some(P1));
    assert_eq!(f.claim_ids, vec![format!("C{H1}-0000003")]);
    assert_eq!(f.record_ids, vec![w.sessions[2].record_id]);
    assert_eq!(f.date, Some(d(6)));
    assert_eq!(f.subject, Subject::Claim(format!("C{H1}-0000003")));
    assert!(
        f.explanation
            .en
            .contains("HDF claimed where HD was attested")
    );
}

#[test]
fn plan_expiring_is_a_bedside_reminder_only() {
    let mut w = World::honest();
    w.plans[0].valid_to = d(14);
    assert!(of_rule(&w.run(), "plan_expiring").is_empty());
    let rules = Ruleset::default_rules();
    assert_eq!(rules.rule(RuleId::PlanExpiring).severity, None);
}
