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

/// A session on 2026-11-03 that keeps to every item [`plan`] fixes, given
/// `dose`.
fn on_plan(dose: &Dose) -> ServiceFacts<'_> {
    ServiceFacts {
        hospital_code: "H33010200017",
        department_code: "ONC-DAY",
        doctor_id: "D0311",
        kind: TreatmentKind::CHEMO,
        drug_code: Some("XL01XA01"),
        dose: Some(dose),
        date: Date::constant(2026, 11, 3),
    }
}

#[test]
fn each_item_shows_plan_and_fact_and_only_real_breaches_are_marked() {
    let plan = plan();
    let dose = Dose::parse_text("90mg").unwrap();
    let facts = ServiceFacts {
        doctor_id: "D0999",
        ..on_plan(&dose)
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

/// With several plans in force, the facts are held against the one they
/// breach least (the first of equals), whatever else the others fix, and
/// a plan out of force on the day is not considered.
#[test]
fn the_plan_breached_least_is_the_one_reported() {
    let rules = Ruleset::default_rules();
    let dose = Dose::parse_text("75mg").unwrap();
    let facts = on_plan(&dose);
    // Two breaches: another hospital and department.
    let elsewhere = TreatmentPlan {
        plan_id: "PL-1".into(),
        hospital_code: "H33010200099".into(),
        department_code: "ONC-WARD".into(),
        ..plan()
    };
    // One breach: another drug.
    let other_drug = TreatmentPlan {
        plan_id: "PL-2".into(),
        drug_code: Some("XL01BC02".into()),
        ..plan()
    };
    // One breach as well: another doctor.
    let other_doctor = TreatmentPlan {
        plan_id: "PL-3".into(),
        doctor_ids: vec!["D0400".into()],
        ..plan()
    };
    // None, but expired before the day.
    let expired = TreatmentPlan {
        plan_id: "PL-0".into(),
        valid_to: Date::constant(2026, 10, 31),
        ..plan()
    };
    let rules_of = |plans: &[&TreatmentPlan]| -> Vec<RuleId> {
        check_against_plans(&rules, plans, &facts)
            .iter()
            .map(|b| b.rule)
            .collect()
    };
    let used =
        |plans: &[&TreatmentPlan]| plan_lines(&rules, plans, &facts).unwrap().0.plan_id.clone();
    let all = [&expired, &elsewhere, &other_drug, &other_doctor];
    assert_eq!(rules_of(&all), [RuleId::PlanDrug]);
    assert_eq!(used(&all), "PL-2");
    let reversed = [&other_doctor, &other_drug, &elsewhere, &expired];
    assert_eq!(rules_of(&reversed), [RuleId::PlanDoctor]);
    assert_eq!(used(&reversed), "PL-3");
    // A plan the facts keep to wins over any before it.
    let kept = plan();
    assert!(rules_of(&[&elsewhere, &other_drug, &kept, &other_doctor]).is_empty());
    assert_eq!(
        used(&[&elsewhere, &other_drug, &kept, &other_doctor]),
        "PL-7"
    );
    // Only the expired plan: none in force, so chemotherapy has no plan.
    assert_eq!(rules_of(&[&expired]), [RuleId::NoPlan]);
}
