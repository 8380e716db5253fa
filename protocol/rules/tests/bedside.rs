//! The bedside checks (事中控制 / 事前提醒) from the shared rule library:
//! the landed behaviour the terminal relies on, under the new rule ids.

use wuding_protocol::{Date, Dose, TreatmentKind, TreatmentPlan};
use wuding_rules::{
    ConfigError, DEFAULT_RULES, PriorSession, ProposedSession, RuleId, Ruleset, check_session_start,
};

fn plan() -> TreatmentPlan {
    TreatmentPlan {
        plan_id: "PL-2".into(),
        insured_id: "330106196811020025".into(),
        hospital_code: "H33010200017".into(),
        department_code: "ONC-DAY".into(),
        doctor_ids: vec!["D0311".into()],
        kinds: vec![TreatmentKind::CHEMO],
        drug_code: Some("XL01XA01".into()),
        max_dose: Some(Dose::parse_text("75mg").unwrap()),
        max_sessions_per_week: None,
        valid_from: Date::constant(2026, 10, 1),
        valid_to: Date::constant(2027, 3, 31),
    }
}

fn proposed() -> ProposedSession {
    ProposedSession {
        hospital_code: "H33010200017".into(),
        department_code: "ONC-DAY".into(),
        doctor_id: "D0311".into(),
        kind: TreatmentKind::CHEMO,
        drug_code: Some("XL01XA01".into()),
        dose: Some(Dose::parse_text("75mg").unwrap()),
        date: Date::constant(2026, 11, 16),
    }
}

fn ids(p: ProposedSession, today: &[TreatmentKind]) -> Vec<&'static str> {
    check_session_start(&Ruleset::default_rules(), Some(&plan()), &p, today)
        .into_iter()
        .map(|v| v.rule_id)
        .collect()
}

#[test]
fn the_shipped_rules_are_valid_and_complete() {
    let r = Ruleset::default_rules();
    assert_eq!(r.version, "2");
    assert_eq!(r.rules().count(), RuleId::ALL.len());
    assert!(RuleId::ALL.iter().all(|id| r.rule(*id).id == *id));
}

#[test]
fn a_session_inside_the_plan_breaks_nothing() {
    assert!(ids(proposed(), &[]).is_empty());
}

#[test]
fn each_fixed_item_is_checked() {
    type Mutation = fn(&mut ProposedSession);
    let cases: Vec<(&str, bool, Mutation)> = vec![
        ("plan_hospital", true, |p| {
            p.hospital_code = "H44030500003".into()
        }),
        ("plan_department", true, |p| {
            p.department_code = "ONC-WARD".into()
        }),
        ("plan_doctor", true, |p| p.doctor_id = "D0999".into()),
        ("plan_kind", true, |p| p.kind = TreatmentKind::RADIO),
        ("plan_drug", true, |p| p.drug_code = Some("XL01BC02".into())),
        ("plan_dose", true, |p| {
            p.dose = Some(Dose::parse_text("75.001mg").unwrap())
        }),
        ("plan_dose", true, |p| {
            p.dose = Some(Dose::parse_text("75g").unwrap())
        }),
        ("plan_expiring", false, |p| {
            p.date = Date::constant(2027, 3, 28)
        }),
        ("no_plan", false, |p| p.date = Date::constant(2027, 4, 1)),
    ];
    for (rule, refuse, mutate) in cases {
        let mut p = proposed();
        mutate(&mut p);
        let v = check_session_start(
            &Ruleset::default_rules(),
            Some(&plan()),
            &p,
            &[] as &[TreatmentKind],
        );
        assert_eq!(v.len(), 1, "{rule}: {v:?}");
        assert_eq!(v[0].rule_id, rule);
        assert_eq!(v[0].refuse, refuse, "{rule}");
        assert!(!v[0].zh.is_empty() && !v[0].en.is_empty());
    }
}

#[test]
fn a_second_centre_dialysis_the_same_day_is_refused() {
    let mut p = proposed();
    p.kind = TreatmentKind::HD;
    p.drug_code = None;
    p.dose = None;
    let no_plan: Option<&TreatmentPlan> = None;
    let verdicts = check_session_start(
        &Ruleset::default_rules(),
        no_plan,
        &p,
        &[TreatmentKind::HDF],
    );
    let refused: Vec<_> = verdicts
        .iter()
        .filter(|v| v.refuse)
        .map(|v| v.rule_id)
        .collect();
    assert_eq!(refused, vec!["frequency_day"]);
    let warned: Vec<_> = verdicts
        .iter()
        .filter(|v| !v.refuse)
        .map(|v| v.rule_id)
        .collect();
    assert_eq!(warned, vec!["no_plan"]);
    // Peritoneal dialysis at home is not a centre dialysis.
    p.kind = TreatmentKind::PD;
    assert!(
        !check_session_start(&Ruleset::default_rules(), no_plan, &p, &[TreatmentKind::HD])
            .iter()
            .any(|v| v.refuse)
    );
}

#[test]
fn the_weekly_count_of_the_plan_is_checked_from_prior_sessions() {
    let mut plan = plan();
    plan.kinds = vec![TreatmentKind::HD, TreatmentKind::HDF];
    plan.drug_code = None;
    plan.max_dose = None;
    plan.max_sessions_per_week = Some(2);
    let mut p = proposed();
    p.kind = TreatmentKind::HD;
    p.drug_code = None;
    p.dose = None;
    // 2026-11-16 is a Monday; 11-17 and 11-18 are in the same ISO week.
    p.date = Date::constant(2026, 11, 19);
    let prior = [
        PriorSession {
            date: Date::constant(2026, 11, 16),
            kind: TreatmentKind::HD,
        },
        PriorSession {
            date: Date::constant(2026, 11, 18),
            kind: TreatmentKind::HDF,
        },
    ];
    let v = check_session_start(&Ruleset::default_rules(), Some(&plan), &p, &prior);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, RuleId::FrequencyWeek);
    assert!(!v[0].refuse, "the weekly count warns");
    // The week before does not count.
    let v = check_session_start(&Ruleset::default_rules(), Some(&plan), &p, &prior[..1]);
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn thresholds_and_actions_come_from_the_file() {
    let text = DEFAULT_RULES
        .replace(
            "max_centre_dialysis_per_day = 1",
            "max_centre_dialysis_per_day = 2",
        )
        .replace(
            "[rules.plan_hospital]\nseverity = \"red\"\nbedside = \"refuse\"",
            "[rules.plan_hospital]\nseverity = \"red\"\nbedside = \"warn\"",
        );
    let rules = Ruleset::parse(&text).unwrap();
    let mut p = proposed();
    p.kind = TreatmentKind::HD;
    p.hospital_code = "H44030500003".into();
    let v = check_session_start(&rules, Some(&plan()), &p, &[TreatmentKind::HD]);
    assert!(
        !v.iter().any(|x| x.rule_id == "frequency_day"),
        "two a day allowed now"
    );
    let hospital = v.iter().find(|x| x.rule_id == "plan_hospital").unwrap();
    assert!(!hospital.refuse, "the file made it a warning");
    // A rule turned off is not checked at the bedside either.
    let off = Ruleset::default_rules().with_enabled(RuleId::PlanHospital, false);
    let v = check_session_start(&off, Some(&plan()), &p, &[] as &[TreatmentKind]);
    assert!(!v.iter().any(|x| x.rule_id == "plan_hospital"));
}

#[test]
fn bad_rule_files_get_specific_errors() {
    assert_eq!(
        Ruleset::parse(&DEFAULT_RULES.replace("[rules.no_plan]", "[rules.no_plans]")),
        Err(ConfigError::UnknownRule("no_plans".into()))
    );
    assert_eq!(
        Ruleset::parse(&DEFAULT_RULES.replace("days = 7", "")),
        Err(ConfigError::MissingParameter {
            rule: "plan_expiring".into(),
            param: "days"
        })
    );
    assert!(matches!(
        Ruleset::parse(&DEFAULT_RULES.replacen("severity = \"red\"", "severity = \"purple\"", 1)),
        Err(ConfigError::BadField { ref rule, ref field, .. }) if rule == "phantom_session" && field == "severity"
    ));
}
