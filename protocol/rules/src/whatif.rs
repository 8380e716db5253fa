//! Threshold what-if: how many findings, and how much money, a rule would
//! produce over a dataset for each candidate value of one parameter. Lets
//! an administrator set thresholds so the number of cases matches what
//! inspectors can check.

use serde::Serialize;

use crate::config::{ConfigError, RuleId, Ruleset, Severity};
use crate::engine::reconcile;
use crate::model::Dataset;

/// The outcome for one candidate value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhatIfRow {
    /// The candidate, as written in the configuration.
    pub value: String,
    pub findings: usize,
    pub amount_fen: u64,
    pub severity: Option<Severity>,
}

/// Runs `rule` alone (every other rule and composite off) once per
/// candidate value of `param`. A candidate the configuration would refuse
/// is refused here too, with the same error.
pub fn sweep(
    ruleset: &Ruleset,
    data: &Dataset<'_>,
    rule: RuleId,
    param: &str,
    candidates: &[toml::Value],
) -> Result<Vec<WhatIfRow>, ConfigError> {
    if !rule.params().iter().any(|s| s.name == param) {
        return Err(ConfigError::UnknownParameter {
            rule: rule.code().into(),
            param: param.into(),
        });
    }
    let mut only = ruleset.clone();
    for r in RuleId::ALL {
        if *r != rule {
            only = only.with_enabled(*r, false);
        }
    }
    only = only.with_enabled(rule, true);
    only.composites.clear();
    let mut rows = Vec::with_capacity(candidates.len());
    for value in candidates {
        let trial = only.with_param(rule, param, value)?;
        let findings = reconcile(&trial, data);
        rows.push(WhatIfRow {
            value: value.to_string(),
            findings: findings.len(),
            amount_fen: findings
                .iter()
                .map(|f| f.amount_fen)
                .fold(0, u64::saturating_add),
            severity: trial.active(rule),
        });
    }
    Ok(rows)
}
