//! The rule engine: 五定 plan checks shared by the terminal's bedside checks
//! and the server's reconciliation, with rules and thresholds in a versioned
//! TOML file (`rules/default.toml`). Each rule has an id, a description in
//! Chinese and English, parameters, a reconciliation severity (red /
//! yellow / green) and a bedside action (refuse / warn / off).
//!
//! **Architecture Invariant:** pure: no IO, no clock, no database. Inputs
//! in, verdicts out.
//!
//! Built so far: the rule library and the bedside checks. Reconciliation
//! (claims against attested sessions) is the next part (issue 8).

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Deserialize;
use thiserror::Error;
use wuding_protocol::{Dose, TreatmentKind, TreatmentPlan};

/// The rule library shipped with wuding.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// Every rule id this engine knows.
pub const RULE_IDS: [&str; 9] = [
    "FIVE_FIXED_HOSPITAL",
    "FIVE_FIXED_DEPARTMENT",
    "FIVE_FIXED_DOCTOR",
    "FIVE_FIXED_KIND",
    "FIVE_FIXED_DRUG",
    "FIVE_FIXED_DOSE",
    "NO_PLAN",
    "DAILY_DIALYSIS",
    "PLAN_EXPIRING",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Red,
    Yellow,
    Green,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BedsideAction {
    Refuse,
    Warn,
    Off,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub severity: Severity,
    pub bedside: BedsideAction,
    pub zh: String,
    pub en: String,
    #[serde(default)]
    pub params: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    pub version: u32,
    pub rules: BTreeMap<String, Rule>,
}

#[derive(Debug, Error, PartialEq)]
pub enum RulesError {
    #[error("rule file: {0}")]
    Parse(String),
    #[error("rule file: unknown rule `{0}`")]
    UnknownRule(String),
    #[error("rule file: rule `{0}` is missing")]
    MissingRule(&'static str),
    #[error("rule file: rule `{rule}` needs parameter `{param}`")]
    MissingParam {
        rule: &'static str,
        param: &'static str,
    },
}

impl Ruleset {
    pub fn parse(text: &str) -> Result<Ruleset, RulesError> {
        let set: Ruleset = toml::from_str(text).map_err(|e| RulesError::Parse(e.to_string()))?;
        for id in set.rules.keys() {
            if !RULE_IDS.contains(&id.as_str()) {
                return Err(RulesError::UnknownRule(id.clone()));
            }
        }
        for id in RULE_IDS {
            if !set.rules.contains_key(id) {
                return Err(RulesError::MissingRule(id));
            }
        }
        for (rule, param) in [("DAILY_DIALYSIS", "max_per_day"), ("PLAN_EXPIRING", "days")] {
            if !set.rules[rule].params.contains_key(param) {
                return Err(RulesError::MissingParam { rule, param });
            }
        }
        Ok(set)
    }

    pub fn default_rules() -> Ruleset {
        Ruleset::parse(DEFAULT_RULES).expect("the shipped rule file is valid")
    }

    fn rule(&self, id: &str) -> &Rule {
        &self.rules[id]
    }

    fn param(&self, id: &str, name: &str) -> i64 {
        self.rules[id].params[name]
    }
}

/// What the nurse is about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedSession {
    pub hospital_code: String,
    pub department_code: String,
    pub doctor_id: String,
    pub kind: TreatmentKind,
    pub drug_code: Option<String>,
    pub dose: Option<Dose>,
    /// Local date of the session.
    pub date: Date,
}

/// One bedside verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedsideVerdict {
    pub rule_id: &'static str,
    pub refuse: bool,
    pub zh: String,
    pub en: String,
}

/// The 五定 and frequency rules that apply to a proposed session: which
/// rule ids it breaks. Shared by bedside checks and reconciliation.
pub fn plan_violations(
    rules: &Ruleset,
    plan: Option<&TreatmentPlan>,
    proposed: &ProposedSession,
    kinds_today: &[TreatmentKind],
) -> Vec<&'static str> {
    let mut broken = Vec::new();
    let centre_today = kinds_today
        .iter()
        .filter(|k| k.is_centre_dialysis())
        .count() as i64;
    if proposed.kind.is_centre_dialysis()
        && centre_today >= rules.param("DAILY_DIALYSIS", "max_per_day")
    {
        broken.push("DAILY_DIALYSIS");
    }
    let Some(plan) = plan.filter(|p| p.covers(proposed.date)) else {
        broken.push("NO_PLAN");
        return broken;
    };
    if plan.hospital_code != proposed.hospital_code {
        broken.push("FIVE_FIXED_HOSPITAL");
    }
    if plan.department_code != proposed.department_code {
        broken.push("FIVE_FIXED_DEPARTMENT");
    }
    if !plan.doctor_ids.contains(&proposed.doctor_id) {
        broken.push("FIVE_FIXED_DOCTOR");
    }
    if !plan.kinds.contains(&proposed.kind) {
        broken.push("FIVE_FIXED_KIND");
    }
    if plan.drug_code.is_some()
        && proposed.drug_code.is_some()
        && plan.drug_code != proposed.drug_code
    {
        broken.push("FIVE_FIXED_DRUG");
    }
    if let (Some(max), Some(dose)) = (&plan.max_dose, &proposed.dose)
        && (max.unit != dose.unit || dose.amount_milli > max.amount_milli)
    {
        broken.push("FIVE_FIXED_DOSE");
    }
    let days_left = proposed
        .date
        .until(plan.valid_to)
        .map(|s| s.get_days())
        .unwrap_or(i32::MAX);
    if i64::from(days_left) < rules.param("PLAN_EXPIRING", "days") {
        broken.push("PLAN_EXPIRING");
    }
    broken
}

/// The bedside checks before a session opens: refusals (事中控制) and
/// warnings (事前提醒), from the same rules reconciliation grades with.
pub fn check_session_start(
    rules: &Ruleset,
    plan: Option<&TreatmentPlan>,
    proposed: &ProposedSession,
    kinds_today: &[TreatmentKind],
) -> Vec<BedsideVerdict> {
    plan_violations(rules, plan, proposed, kinds_today)
        .into_iter()
        .filter_map(|id| {
            let rule = rules.rule(id);
            match rule.bedside {
                BedsideAction::Off => None,
                action => Some(BedsideVerdict {
                    rule_id: id,
                    refuse: action == BedsideAction::Refuse,
                    zh: rule.zh.clone(),
                    en: rule.en.clone(),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        plan_violations(&Ruleset::default_rules(), Some(&plan()), &p, today)
    }

    #[test]
    fn the_shipped_rules_are_valid_and_complete() {
        let r = Ruleset::default_rules();
        assert_eq!(r.version, 1);
        assert_eq!(r.rules.len(), RULE_IDS.len());
    }

    #[test]
    fn a_session_inside_the_plan_breaks_nothing() {
        assert!(ids(proposed(), &[]).is_empty());
    }

    #[test]
    fn each_fixed_item_is_checked() {
        type Mutation = fn(&mut ProposedSession);
        let cases: Vec<(&str, Mutation)> = vec![
            ("FIVE_FIXED_HOSPITAL", |p| {
                p.hospital_code = "H44030500003".into()
            }),
            ("FIVE_FIXED_DEPARTMENT", |p| {
                p.department_code = "ONC-WARD".into()
            }),
            ("FIVE_FIXED_DOCTOR", |p| p.doctor_id = "D0999".into()),
            ("FIVE_FIXED_KIND", |p| p.kind = TreatmentKind::RADIO),
            ("FIVE_FIXED_DRUG", |p| p.drug_code = Some("XL01BC02".into())),
            ("FIVE_FIXED_DOSE", |p| {
                p.dose = Some(Dose::parse_text("75.001mg").unwrap())
            }),
            ("FIVE_FIXED_DOSE", |p| {
                p.dose = Some(Dose::parse_text("75g").unwrap())
            }),
            ("PLAN_EXPIRING", |p| p.date = Date::constant(2027, 3, 28)),
            ("NO_PLAN", |p| p.date = Date::constant(2027, 4, 1)),
        ];
        for (rule, mutate) in cases {
            let mut p = proposed();
            mutate(&mut p);
            assert_eq!(ids(p, &[]), vec![rule]);
        }
    }

    #[test]
    fn a_second_centre_dialysis_the_same_day_is_refused() {
        let mut p = proposed();
        p.kind = TreatmentKind::HD;
        let verdicts =
            check_session_start(&Ruleset::default_rules(), None, &p, &[TreatmentKind::HDF]);
        let refused: Vec<_> = verdicts
            .iter()
            .filter(|v| v.refuse)
            .map(|v| v.rule_id)
            .collect();
        assert_eq!(refused, vec!["DAILY_DIALYSIS"]);
        let warned: Vec<_> = verdicts
            .iter()
            .filter(|v| !v.refuse)
            .map(|v| v.rule_id)
            .collect();
        assert_eq!(warned, vec!["NO_PLAN"]);
        // Peritoneal dialysis at home is not a centre dialysis.
        p.kind = TreatmentKind::PD;
        assert!(
            !check_session_start(&Ruleset::default_rules(), None, &p, &[TreatmentKind::HD])
                .iter()
                .any(|v| v.refuse)
        );
    }

    #[test]
    fn thresholds_and_actions_come_from_the_file() {
        let text = DEFAULT_RULES
            .replace("max_per_day = 1", "max_per_day = 2")
            .replacen("bedside = \"refuse\"", "bedside = \"warn\"", 1);
        let rules = Ruleset::parse(&text).unwrap();
        let mut p = proposed();
        p.kind = TreatmentKind::HD;
        p.hospital_code = "H44030500003".into();
        let v = check_session_start(&rules, Some(&plan()), &p, &[TreatmentKind::HD]);
        assert!(
            !v.iter().any(|x| x.rule_id == "DAILY_DIALYSIS"),
            "two a day allowed now"
        );
        let hospital = v
            .iter()
            .find(|x| x.rule_id == "FIVE_FIXED_HOSPITAL")
            .unwrap();
        assert!(!hospital.refuse, "the file made it a warning");
    }

    #[test]
    fn bad_rule_files_get_specific_errors() {
        assert_eq!(
            Ruleset::parse(&DEFAULT_RULES.replace("[rules.NO_PLAN]", "[rules.NO_PLANS]")),
            Err(RulesError::UnknownRule("NO_PLANS".into()))
        );
        assert_eq!(
            Ruleset::parse(&DEFAULT_RULES.replace("days = 7", "")),
            Err(RulesError::MissingParam {
                rule: "PLAN_EXPIRING",
                param: "days"
            })
        );
        assert!(matches!(
            Ruleset::parse(&DEFAULT_RULES.replace("severity = \"red\"", "severity = \"purple\"")),
            Err(RulesError::Parse(_))
        ));
    }
}
