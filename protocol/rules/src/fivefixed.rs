//! 五定 checks: one definition used by the bedside check before a session
//! opens and by reconciliation after the fact.

use wuding_protocol::{Date, Dose, TreatmentKind, TreatmentPlan, format_yuan};

use crate::config::{RuleId, Ruleset};
use crate::model::Text;

/// The facts of one session or claim that a plan constrains.
#[derive(Debug, Clone, Copy)]
pub struct ServiceFacts<'a> {
    pub hospital_code: &'a str,
    pub department_code: &'a str,
    pub doctor_id: &'a str,
    pub kind: TreatmentKind,
    pub drug_code: Option<&'a str>,
    pub dose: Option<&'a Dose>,
    pub date: Date,
}

/// One way a session or claim departs from the patient's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanBreach {
    pub rule: RuleId,
    pub reason: Text,
}

/// The plans among `plans` in force on `date`.
pub fn plans_in_force<'p>(
    plans: impl IntoIterator<Item = &'p TreatmentPlan>,
    date: Date,
) -> Vec<&'p TreatmentPlan> {
    plans.into_iter().filter(|p| p.covers(date)).collect()
}

fn dose_text(d: &Dose) -> String {
    d.to_string()
}

/// Which of the plan's fixed items the facts depart from, one flag each,
/// in the order [`breaches_of`] reports them: hospital, department, doctor,
/// treatment, drug, dose. No text is made.
fn departures(plan: &TreatmentPlan, facts: &ServiceFacts<'_>) -> [bool; 6] {
    [
        facts.hospital_code != plan.hospital_code,
        facts.department_code != plan.department_code,
        !plan.doctor_ids.iter().any(|d| d == facts.doctor_id),
        !plan.kinds.contains(&facts.kind),
        match (&plan.drug_code, facts.drug_code) {
            (Some(fixed), Some(given)) => fixed != given,
            (None, Some(_)) => true,
            _ => false,
        },
        match (&plan.max_dose, facts.dose) {
            (Some(max), Some(dose)) => {
                dose.unit != max.unit || dose.amount_milli > max.amount_milli
            }
            _ => false,
        },
    ]
}

/// Every breach of `plan` by `facts`.
pub fn breaches_of(plan: &TreatmentPlan, facts: &ServiceFacts<'_>) -> Vec<PlanBreach> {
    let mut out = Vec::new();
    let [hospital, department, doctor, kind, drug, dose] = departures(plan, facts);
    if hospital {
        out.push(PlanBreach {
            rule: RuleId::PlanHospital,
            reason: Text {
                zh: format!(
                    "定点医院为 {}，本次为 {}",
                    plan.hospital_code, facts.hospital_code
                ),
                en: format!(
                    "the plan fixes hospital {}; this is {}",
                    plan.hospital_code, facts.hospital_code
                ),
            },
        });
    }
    if department {
        out.push(PlanBreach {
            rule: RuleId::PlanDepartment,
            reason: Text {
                zh: format!(
                    "定点科室为 {}，本次为 {}",
                    plan.department_code, facts.department_code
                ),
                en: format!(
                    "the plan fixes department {}; this is {}",
                    plan.department_code, facts.department_code
                ),
            },
        });
    }
    if doctor {
        out.push(PlanBreach {
            rule: RuleId::PlanDoctor,
            reason: Text {
                zh: format!(
                    "医生 {} 不在定点医生 {} 之列",
                    facts.doctor_id,
                    plan.doctor_ids.join("、")
                ),
                en: format!(
                    "doctor {} is not among the plan's doctors ({})",
                    facts.doctor_id,
                    plan.doctor_ids.join(", ")
                ),
            },
        });
    }
    if kind {
        let kinds: Vec<&str> = plan.kinds.iter().map(|k| k.code()).collect();
        out.push(PlanBreach {
            rule: RuleId::PlanKind,
            reason: Text {
                zh: format!("治疗方式 {} 不在计划 ({}) 内", facts.kind, kinds.join("、")),
                en: format!(
                    "treatment {} is not covered by the plan ({})",
                    facts.kind,
                    kinds.join(", ")
                ),
            },
        });
    }
    match (&plan.drug_code, facts.drug_code) {
        (Some(fixed), Some(given)) if drug => out.push(PlanBreach {
            rule: RuleId::PlanDrug,
            reason: Text {
                zh: format!("定药品为 {fixed}，本次为 {given}"),
                en: format!("the plan fixes drug {fixed}; this is {given}"),
            },
        }),
        (None, Some(given)) if drug => out.push(PlanBreach {
            rule: RuleId::PlanDrug,
            reason: Text {
                zh: format!("计划未定药品，本次给药 {given}"),
                en: format!("the plan fixes no drug; {given} was given"),
            },
        }),
        _ => {}
    }
    if let (true, Some(max), Some(dose)) = (dose, &plan.max_dose, facts.dose) {
        out.push(PlanBreach {
            rule: RuleId::PlanDose,
            reason: Text {
                zh: format!("剂量 {} 超出定剂量 {}", dose_text(dose), dose_text(max)),
                en: format!(
                    "dose {} exceeds the plan's {}",
                    dose_text(dose),
                    dose_text(max)
                ),
            },
        });
    }
    out
}

/// Checks facts against the patient's plans in force on the date: the
/// breaches of the best-fitting plan, or `no_plan` when no plan is in
/// force for a kind that needs one. Disabled rules are left out.
pub fn check_against_plans(
    ruleset: &Ruleset,
    plans: &[&TreatmentPlan],
    facts: &ServiceFacts<'_>,
) -> Vec<PlanBreach> {
    let mut out = match best_plan(plans, facts) {
        Some((_, b)) => b,
        None if ruleset.kinds(RuleId::NoPlan, "kinds").contains(&facts.kind) => {
            vec![PlanBreach {
                rule: RuleId::NoPlan,
                reason: Text {
                    zh: format!("{} 当日无有效的五定计划", facts.date),
                    en: format!("no 五定 plan in force on {}", facts.date),
                },
            }]
        }
        None => Vec::new(),
    };
    out.retain(|b| ruleset.rule(b.rule).enabled);
    out
}

/// The plan in force on the facts' date that they breach least (the first
/// of several as good), with its breaches (every rule, enabled or not).
/// Plans are compared by their count of breaches; only the chosen one's are
/// written out, and a plan the facts keep to ends the search.
fn best_plan<'p>(
    plans: &[&'p TreatmentPlan],
    facts: &ServiceFacts<'_>,
) -> Option<(&'p TreatmentPlan, Vec<PlanBreach>)> {
    let mut best: Option<(&TreatmentPlan, usize)> = None;
    for plan in plans.iter().filter(|p| p.covers(facts.date)) {
        let n = departures(plan, facts).iter().filter(|d| **d).count();
        if best.is_none_or(|(_, cur)| n < cur) {
            best = Some((plan, n));
        }
        if n == 0 {
            break;
        }
    }
    best.map(|(plan, _)| (plan, breaches_of(plan, facts)))
}

/// One line of "the plan against what happened": an item the plan fixes,
/// its planned and actual values, and the breach when they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLine {
    /// hospital, department, doctor, treatment, drug or dose.
    pub item: &'static str,
    pub rule: RuleId,
    pub planned: String,
    pub actual: String,
    /// Set when the rule is enabled and the facts breach it.
    pub breach: Option<Text>,
}

/// The facts against the plan [`check_against_plans`] judges them by, item
/// by item (the breaches are exactly its breaches); `None` when no plan is
/// in force on the date.
pub fn plan_lines<'p>(
    ruleset: &Ruleset,
    plans: &[&'p TreatmentPlan],
    facts: &ServiceFacts<'_>,
) -> Option<(&'p TreatmentPlan, Vec<PlanLine>)> {
    let (plan, breaches) = best_plan(plans, facts)?;
    let breach = |rule: RuleId| {
        breaches
            .iter()
            .find(|b| b.rule == rule && ruleset.rule(rule).enabled)
            .map(|b| b.reason.clone())
    };
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "–".to_owned());
    let kinds: Vec<&str> = plan.kinds.iter().map(|k| k.code()).collect();
    let lines = [
        (
            "hospital",
            RuleId::PlanHospital,
            plan.hospital_code.clone(),
            facts.hospital_code.to_owned(),
        ),
        (
            "department",
            RuleId::PlanDepartment,
            plan.department_code.clone(),
            facts.department_code.to_owned(),
        ),
        (
            "doctor",
            RuleId::PlanDoctor,
            plan.doctor_ids.join(", "),
            facts.doctor_id.to_owned(),
        ),
        (
            "treatment",
            RuleId::PlanKind,
            kinds.join(", "),
            facts.kind.code().to_owned(),
        ),
        (
            "drug",
            RuleId::PlanDrug,
            or_dash(plan.drug_code.clone()),
            or_dash(facts.drug_code.map(str::to_owned)),
        ),
        (
            "dose",
            RuleId::PlanDose,
            or_dash(
                plan.max_dose
                    .as_ref()
                    .map(|d| format!("≤ {}", dose_text(d))),
            ),
            or_dash(facts.dose.map(dose_text)),
        ),
    ];
    Some((
        plan,
        lines
            .into_iter()
            .map(|(item, rule, planned, actual)| PlanLine {
                item,
                rule,
                planned,
                actual,
                breach: breach(rule),
            })
            .collect(),
    ))
}

/// Formats fen as `123.45 元` / `123.45 yuan`.
pub(crate) fn money(fen: u64) -> (String, String) {
    let y = format_yuan(fen);
    (format!("{y} 元"), format!("{y} yuan"))
}
