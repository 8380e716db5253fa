//! Whole-run properties: stable finding ids whatever the input order,
//! the threshold what-if, and no panic on arbitrary small datasets.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use wuding_protocol::{ClaimLine, Date, Dose, RecordId, TreatmentKind, TreatmentPlan};
use wuding_rules::whatif::sweep;
use wuding_rules::{
    ConfigError, Dataset, IntegrityEvent, IntegrityKind, Period, RuleId, Ruleset, reconcile,
    reconcile_on,
};

/// A month with something wrong in almost every way at once.
fn messy_world() -> World {
    let mut w = World::honest();
    w.plans.push(chemo_plan(P2));
    w.plans.push(dialysis_plan(P2));
    // phantom, inflated, swapped, above charge
    w.claims.push(Sess::new(90, P1, 3).claim("C-PHANTOM"));
    w.claims[1].quantity = 2;
    w.claims[1].amount_fen = 2 * HD_FEN;
    w.claims[2].service_kind = TreatmentKind::HDF;
    w.claims[2].amount_fen = HDF_FEN;
    w.claims[3].amount_fen += 700;
    // short with fallback, missing checkout, late, skewed
    let mut s = Sess::new(20, P2, 2);
    s.minutes = Some(100);
    s.fallback = true;
    w.attend(s);
    let mut s = Sess::new(21, P2, 4);
    s.minutes = None;
    s.delay_ms = 90 * 3_600_000;
    w.attend(s);
    let mut s = Sess::new(22, P2, 6).kind(TreatmentKind::HDF);
    s.delay_ms = -2 * 3_600_000;
    s.fallback = true;
    w.attend(s);
    // second dialysis and overlap at H2, outside the plan
    let mut s = Sess::new(23, P2, 6).at_hospital(H2);
    s.start_ms = at(6, 10, 0);
    w.attend(s);
    // chemo off the plan's drug and dose
    let mut c = chemo(24, P2, 10);
    c.drug = Some("L01XA01".into());
    c.dose = Some(Dose::parse_text("140mg").unwrap());
    w.attend(c);
    // a patient with no plan, and a fourth session in a week
    w.attend(Sess::new(25, "P5101000009999", 16));
    for (i, day) in [16, 17, 18, 19].into_iter().enumerate() {
        w.attend(Sess::new(30 + i as u32, P1, day));
    }
    // integrity events
    let id = w.sessions[0].record_id;
    w.integrity
        .push(event(IntegrityKind::BadSignature, &[RecordId([9; 32])]));
    w.integrity
        .push(event(IntegrityKind::Fork, &[id, RecordId([8; 32])]));
    let mut gap = event(IntegrityKind::Gap, &[]);
    gap.missing = Some((40, 41));
    w.integrity.push(gap);
    let mut skew = event(IntegrityKind::ClockSkew, &[w.sessions[8].record_id]);
    skew.measured_ms = Some(2 * 3_600_000);
    w.integrity.push(skew);
    w
}

/// A fixed permutation (no randomness in tests): reverse, then rotate.
fn shuffled<T: Clone>(items: &[T], k: usize) -> Vec<T> {
    let mut v: Vec<T> = items.iter().rev().cloned().collect();
    if !v.is_empty() {
        let n = v.len();
        v.rotate_left(k % n);
    }
    v
}

#[test]
fn the_messy_world_trips_many_rules() {
    let found = messy_world().run();
    let rules: BTreeSet<&str> = found.iter().map(|f| f.rule_id.as_str()).collect();
    for r in [
        "phantom_session",
        "inflated_count",
        "service_swapped",
        "amount_above_charge",
        "short_with_fallback",
        "missing_checkout",
        "late_sync",
        "clock_skew",
        "frequency_day",
        "overlap_places",
        "plan_hospital",
        "plan_drug",
        "plan_dose",
        "no_plan",
        "frequency_week",
        "bad_signature",
        "chain_fork",
        "chain_gap",
        "fallback_pricier_service",
    ] {
        assert!(rules.contains(r), "{r} missing from {rules:?}");
    }
}

#[test]
fn same_data_same_findings_whatever_the_order() {
    let w = messy_world();
    let first = w.run();
    assert_eq!(first, w.run(), "a second run changes nothing");
    let ids: BTreeSet<_> = first.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), first.len(), "one finding per id");
    for k in [0, 1, 3, 7, 11] {
        let s = World {
            sessions: shuffled(&w.sessions, k),
            claims: shuffled(&w.claims, k + 2),
            plans: shuffled(&w.plans, k),
            integrity: shuffled(&w.integrity, k + 1),
        };
        assert_eq!(s.run(), first, "permutation {k}");
    }
}

#[test]
fn one_thread_or_two_give_the_same_findings_in_the_same_order() {
    let w = messy_world();
    let data = w.dataset();
    let rules = lenient_rules();
    let one = reconcile_on(&rules, &data, 1);
    assert!(one.len() > 20, "the messy world trips many rules");
    assert_eq!(reconcile_on(&rules, &data, 2), one);
    assert_eq!(reconcile_on(&rules, &data, 8), one);
    // A defect both measured here and reported by ingest is one finding,
    // whichever thread measured it.
    let skew: Vec<_> = one.iter().filter(|f| f.rule_id == "clock_skew").collect();
    let ids: BTreeSet<_> = skew.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), skew.len());
}

#[test]
fn new_data_updates_findings_instead_of_duplicating_them() {
    let w = messy_world();
    let before = w.run();
    // More evidence arrives: another honest patient, and a second phantom.
    let mut more = w.clone();
    more.plans.push(dialysis_plan("P5101000007777"));
    more.attend(Sess::new(80, "P5101000007777", 2));
    more.claims.push(Sess::new(91, P1, 5).claim("C-PHANTOM-2"));
    let after = more.run();
    let after_ids: BTreeSet<_> = after.iter().map(|f| f.id).collect();
    for f in &before {
        assert!(
            after_ids.contains(&f.id),
            "{} {:?} kept its id",
            f.rule_id,
            f.subject
        );
    }
    assert!(after.iter().any(|f| f.claim_ids == ["C-PHANTOM-2"]));
    // The id is the rule and the subject: the same claim, worse, is the
    // same finding.
    let mut worse = w.clone();
    worse.claims[3].amount_fen += 5_000;
    let a = before
        .iter()
        .find(|f| f.rule_id == "amount_above_charge")
        .unwrap();
    let b = worse
        .run()
        .into_iter()
        .find(|f| f.rule_id == "amount_above_charge")
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(b.amount_fen, a.amount_fen + 5_000);
}

fn overcharged_world() -> World {
    let mut w = World::honest();
    for (i, extra) in [300, 800, 1_500, 4_000, 0, 0].into_iter().enumerate() {
        w.claims[i].amount_fen += extra;
    }
    w
}

#[test]
fn what_if_counts_fall_as_the_threshold_rises_and_money_matches() {
    let w = overcharged_world();
    let rules = Ruleset::default_rules();
    let candidates: Vec<toml::Value> = [0, 500, 1_000, 2_000, 5_000]
        .into_iter()
        .map(toml::Value::Integer)
        .collect();
    let rows = sweep(
        &rules,
        &w.dataset(),
        RuleId::AmountAboveCharge,
        "tolerance_fen",
        &candidates,
    )
    .unwrap();
    let counts: Vec<usize> = rows.iter().map(|r| r.findings).collect();
    assert_eq!(counts, [4, 3, 2, 1, 0]);
    let money: Vec<u64> = rows.iter().map(|r| r.amount_fen).collect();
    assert_eq!(money, [6_600, 6_300, 5_500, 4_000, 0]);
    // Each row is what reconcile gives with that threshold.
    for (row, value) in rows.iter().zip(&candidates) {
        let trial = rules
            .with_param(RuleId::AmountAboveCharge, "tolerance_fen", value)
            .unwrap();
        let direct: Vec<_> = reconcile(&trial, &w.dataset())
            .into_iter()
            .filter(|f| f.rule_id == "amount_above_charge")
            .collect();
        assert_eq!(row.findings, direct.len());
        assert_eq!(
            row.amount_fen,
            direct.iter().map(|f| f.amount_fen).sum::<u64>()
        );
        assert_eq!(row.value, value.to_string());
    }
}

#[test]
fn what_if_over_rates_and_delays_is_monotone() {
    let w = messy_world();
    let rules = Ruleset::default_rules();
    let hours: Vec<toml::Value> = [1, 24, 72, 89, 90, 200]
        .into_iter()
        .map(toml::Value::Integer)
        .collect();
    let rows = sweep(
        &rules,
        &w.dataset(),
        RuleId::LateSync,
        "min_delay_hours",
        &hours,
    )
    .unwrap();
    let counts: Vec<usize> = rows.iter().map(|r| r.findings).collect();
    assert!(counts.windows(2).all(|p| p[0] >= p[1]), "{counts:?}");
    assert_eq!(counts[4], 1);
    assert_eq!(counts[5], 0);

    let mut many = World::default();
    for i in 0..12u32 {
        let patient = format!("P51010000{:05}", i);
        many.plans.push(dialysis_plan(&patient));
        let mut s = Sess::new(i + 1, &patient, 2 + (i % 5) as i8);
        s.fallback = i < 5;
        many.attend(s);
    }
    let rules = rules
        .with_param(
            RuleId::FallbackRateNurse,
            "min_sessions",
            &toml::Value::Integer(10),
        )
        .unwrap();
    let rates: Vec<toml::Value> = [0.0, 0.2, 0.4, 0.45, 0.6, 1.0]
        .into_iter()
        .map(toml::Value::Float)
        .collect();
    let rows = sweep(
        &rules,
        &many.dataset(),
        RuleId::FallbackRateNurse,
        "max_rate",
        &rates,
    )
    .unwrap();
    let counts: Vec<usize> = rows.iter().map(|r| r.findings).collect();
    assert_eq!(counts, [1, 1, 1, 0, 0, 0]);
    assert!(rows[0].amount_fen == 5 * HD_FEN);
}

#[test]
fn what_if_refuses_a_candidate_the_file_would_refuse() {
    let w = World::honest();
    let rules = Ruleset::default_rules();
    assert!(matches!(
        sweep(
            &rules,
            &w.dataset(),
            RuleId::FallbackRateNurse,
            "max_rate",
            &[toml::Value::Float(0.2), toml::Value::Float(2.0)]
        ),
        Err(ConfigError::BadParameter { .. })
    ));
    assert!(matches!(
        sweep(
            &rules,
            &w.dataset(),
            RuleId::PhantomSession,
            "threshold",
            &[]
        ),
        Err(ConfigError::UnknownParameter { .. })
    ));
}

// ------------------------------------------------------------- proptest

const KINDS: [TreatmentKind; 8] = TreatmentKind::ALL;

fn kind() -> impl Strategy<Value = TreatmentKind> {
    (0usize..KINDS.len()).prop_map(|i| KINDS[i])
}

fn patient() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(P1.to_owned()),
        Just(P2.to_owned()),
        Just("P3".to_owned())
    ]
}

fn hospital() -> impl Strategy<Value = String> {
    prop_oneof![Just(H1.to_owned()), Just(H2.to_owned())]
}

fn money() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..200_000, Just(u64::MAX), Just(u64::MAX / 3)]
}

fn dose() -> impl Strategy<Value = Option<Dose>> {
    prop_oneof![
        Just(None),
        Just(Some(Dose::parse_text("130mg").unwrap())),
        Just(Some(Dose::parse_text("2Gy").unwrap())),
        Just(Some(Dose::parse_text("0.5mg").unwrap())),
    ]
}

prop_compose! {
    fn session()(n in 0u32..40, p in patient(), h in hospital(), k in kind(),
                 day in -3i8..34, minute in 0i64..2_000, minutes in proptest::option::of(-30i64..600),
                 fallback in any::<bool>(), charge in money(), delay in -10_000_000_000i64..10_000_000_000,
                 terminal in 0u8..3, nurse in 0u8..3, d in dose(), drug in proptest::option::of("L01XA0[1-3]")) -> Sess {
        let mut s = Sess::new(n, &p, 1).at_hospital(&h).kind(k);
        s.start_ms = at(1, 0, 0) + (i64::from(day) - 1) * 86_400_000 + minute * 60_000;
        s.minutes = minutes;
        s.fallback = fallback;
        s.charge_fen = charge;
        s.delay_ms = delay;
        s.terminal = format!("T-{h}-{terminal}");
        s.nurse = format!("{h}N{nurse}");
        s.dose = d;
        s.drug = drug;
        s
    }
}

prop_compose! {
    fn claim()(id in 0u32..60, p in patient(), h in hospital(), k in kind(), day in 1i8..31,
               quantity in 0u32..4, amount in money(), d in dose(),
               drug in proptest::option::of("L01XA0[1-3]"), doctor in 0u8..3) -> ClaimLine {
        let mut s = Sess::new(id, &p, day).at_hospital(&h).kind(k);
        s.dose = d;
        s.drug = drug;
        s.doctor = format!("{h}D0{doctor}");
        let mut c = s.claim(&format!("C{id}"));
        c.quantity = quantity;
        c.amount_fen = amount;
        c
    }
}

prop_compose! {
    fn plan()(p in patient(), h in hospital(), kinds in proptest::collection::vec(kind(), 0..3),
              per_week in proptest::option::of(0u8..6), from in 1i8..28, len in -5i64..60, max_dose in dose(),
              drug in proptest::option::of("L01XA0[1-3]"), id in 0u8..4) -> TreatmentPlan {
        let mut plan = dialysis_plan(&p);
        plan.plan_id = format!("PL-{p}-{id}");
        plan.hospital_code = h;
        plan.kinds = kinds;
        plan.max_sessions_per_week = per_week;
        plan.valid_from = d(from);
        plan.valid_to = d(from).checked_add(jiff::Span::new().days(len)).unwrap_or(d(from));
        plan.max_dose = max_dose;
        plan.drug_code = drug;
        plan
    }
}

fn integrity_kind() -> impl Strategy<Value = IntegrityKind> {
    (0usize..IntegrityKind::ALL.len()).prop_map(|i| IntegrityKind::ALL[i])
}

prop_compose! {
    fn integrity()(k in integrity_kind(), ids in proptest::collection::vec(0u32..45, 0..3),
                   seq in proptest::option::of(0u64..50), missing in proptest::option::of((0u64..50, 0u64..50)),
                   measured in proptest::option::of(any::<i64>()), day in proptest::option::of(-2i8..33)) -> IntegrityEvent {
        let mut e = event(k, &[]);
        e.record_ids = ids.into_iter().map(|n| Sess::new(n, P1, 1).id()).collect();
        e.seq = seq;
        e.missing = missing;
        e.measured_ms = measured;
        e.date = day.and_then(|d| Date::new(2026, 11, 1).ok()?.checked_add(jiff::Span::new().days(i64::from(d) - 1)).ok());
        e
    }
}

fn lenient_rules() -> Ruleset {
    // Every threshold at its most sensitive, so that every code path runs.
    let r = Ruleset::default_rules();
    let i = toml::Value::Integer;
    let r = r
        .with_param(RuleId::FallbackRateTerminal, "min_sessions", &i(1))
        .unwrap();
    let r = r
        .with_param(RuleId::FallbackRateNurse, "min_sessions", &i(1))
        .unwrap();
    let r = r
        .with_param(RuleId::FallbackRatePatient, "min_sessions", &i(1))
        .unwrap();
    let r = r
        .with_param(RuleId::PeerSessions, "min_patients", &i(1))
        .unwrap();
    let r = r
        .with_param(RuleId::PeerSessions, "min_peers", &i(2))
        .unwrap();
    r.with_param(RuleId::OverlapPlaces, "min_overlap_minutes", &i(0))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn reconcile_never_panics_and_is_order_independent(
        sessions in proptest::collection::vec(session(), 0..25),
        claims in proptest::collection::vec(claim(), 0..25),
        plans in proptest::collection::vec(plan(), 0..5),
        integrity in proptest::collection::vec(integrity(), 0..5),
        lenient in any::<bool>(),
    ) {
        // Record ids and claim ids are unique in a store.
        let mut seen = BTreeSet::new();
        let sessions: Vec<_> = sessions.into_iter().filter(|s| seen.insert(s.n)).map(|s| s.build()).collect();
        let mut seen = BTreeSet::new();
        let claims: Vec<_> = claims.into_iter().filter(|c| seen.insert(c.claim_id.clone())).collect();
        let mut seen = BTreeSet::new();
        let plans: Vec<_> = plans.into_iter().filter(|p| seen.insert(p.plan_id.clone())).collect();
        let rules = if lenient { lenient_rules() } else { Ruleset::default_rules() };
        let period = Period::month(2026, 11).unwrap();
        let data = Dataset { period, sessions: &sessions, claims: &claims, plans: &plans, integrity: &integrity };
        let found = reconcile(&rules, &data);
        prop_assert_eq!(&reconcile_on(&rules, &data, 1), &found, "one thread");
        prop_assert_eq!(&reconcile_on(&rules, &data, 2), &found, "two threads");
        for f in &found {
            prop_assert!(!f.rule_id.is_empty());
            prop_assert!(f.date.is_none_or(|d| period.contains(d)) || f.rule_id.starts_with("fallback_rate"));
        }
        let ids: BTreeSet<_> = found.iter().map(|f| f.id).collect();
        prop_assert_eq!(ids.len(), found.len());
        let rs: Vec<_> = sessions.iter().rev().cloned().collect();
        let rc: Vec<_> = claims.iter().rev().cloned().collect();
        let rp: Vec<_> = plans.iter().rev().cloned().collect();
        let ri: Vec<_> = integrity.iter().rev().cloned().collect();
        let reversed = Dataset { period, sessions: &rs, claims: &rc, plans: &rp, integrity: &ri };
        prop_assert_eq!(reconcile(&rules, &reversed), found);
    }
}
