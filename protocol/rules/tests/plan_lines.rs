//! The case page's "五定 plan against what happened": the lines and their
//! breaches agree with the checks the engine and the bedside run.

use wuding_protocol::{Date, Dose, TreatmentKind, TreatmentPlan};
use wuding_rules::RuleId;
use wuding_rules::Ruleset;
use wuding_rules::fivefixed::{ServiceFacts, check_against_plans, plan_lines};

fn plan() -> TreatmentPlan {
    TreatmentPlan {
        plan_id: "PL-7".into(),
        insured_id: "330106196811020025".into(),
        hospital_code: "H33010200017".into(),
        department_code: "ONC-DAY".into(),
        doctor_ids: vec!["D0311".into(), "D0312".into()],
        kinds: vec![TreatmentKind::CHEMO],
        drug_code: Some("XL01XA01".into()),
        max_dose: Some(Dose::parse_text("75mg").unwrap()),
        max_sessions_per_week: None,
        valid_from: Date::constant(2026, 10, 1),
        valid_to: Date::constant(2027, 3, 31),
    }
}

#[test]
fn each_item_shows_plan_and_fact_and_only_real_breaches_are_marked() {
    let plan = plan();
    let dose = Dose::parse_text("90mg").unwrap();
    let facts = ServiceFacts {
        hospital_code: "H33010200017",
        department_code: "ONC-DAY",
        doctor_id: "D0999",
        kind: TreatmentKind::CHEMO,
        drug_code: Some("XL01XA01"),
        dose: Some(&dose),
        date: Date::constant(2026, 11, 3),
    };
    let rules = Ruleset::default_rules();
    let (used, lines) = plan_lines(&rules, &[&plan], &facts).expect("a plan is in force");
    assert_eq!(used.plan_id, "PL-7");
    let items: Vec<&str> = lines.iter().map(|l| l.item).collect();
    assert_eq!(
        items,
        [
            "hospital",
            "department",
            "doctor",
            "treatment",
            "drug",
            "dose"
        ]
    );
    let breached: Vec<RuleId> = lines
        .iter()
        .filter(|l| l.breach.is_some())
        .map(|l| l.rule)
        .collect();
    assert_eq!(breached, [RuleId::PlanDoctor, RuleId::PlanDose]);
    let checked: Vec<RuleId> = check_against_plans(&rules, &[&plan], &facts)
        .iter()
        .map(|b| b.rule)
        .collect();
    assert_eq!(breached, checked, "same breaches as the engine's check");
    let doctor = &lines[2];
    assert_eq!(doctor.planned, "D0311, D0312");
    assert_eq!(doctor.actual, "D0999");
    assert!(lines[5].planned.contains("75"), "{:?}", lines[5]);
    assert!(lines[5].actual.contains("90"), "{:?}", lines[5]);

    // A disabled rule is shown but not marked.
    let lenient = rules.with_enabled(RuleId::PlanDose, false);
    let (_, lines) = plan_lines(&lenient, &[&plan], &facts).unwrap();
    assert!(lines[5].breach.is_none());
    assert!(lines[2].breach.is_some());
}

#[test]
fn no_plan_in_force_gives_no_lines() {
    let plan = plan();
    let facts = ServiceFacts {
        hospital_code: "H33010200017",
        department_code: "ONC-DAY",
        doctor_id: "D0311",
        kind: TreatmentKind::CHEMO,
        drug_code: None,
        dose: None,
        date: Date::constant(2027, 6, 1),
    };
    assert!(plan_lines(&Ruleset::default_rules(), &[&plan], &facts).is_none());
}
