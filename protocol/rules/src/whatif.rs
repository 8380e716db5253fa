//! Threshold what-if: how many findings, and how much money, a rule would
//! produce over a dataset for each candidate value of one parameter. Lets
//! an administrator set thresholds so the number of cases matches what
//! inspectors can check.

use serde::Serialize;

use crate::config::{ConfigError, RuleId, Ruleset, Severity};
use crate::engine::{CrossTallies, reconcile_part};
use crate::model::{Dataset, Period};

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
    let mut sweep = Sweep::new(ruleset, rule, param, candidates)?;
    sweep.add_part(data);
    Ok(sweep.finish(data.period))
}

/// A what-if over a period taken one share of the patients at a time
/// (as [`crate::reconcile_part`]): [`Sweep::add_part`] for each share,
/// then [`Sweep::finish`]. Gives the rows [`sweep`] gives over the whole.
pub struct Sweep {
    rule: RuleId,
    /// Per candidate: its text, its ruleset, findings and money so far,
    /// and the cross-patient tallies so far.
    trials: Vec<(String, Ruleset, usize, u64, CrossTallies)>,
}

impl Sweep {
    pub fn new(
        ruleset: &Ruleset,
        rule: RuleId,
        param: &str,
        candidates: &[toml::Value],
    ) -> Result<Sweep, ConfigError> {
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
        let mut trials = Vec::with_capacity(candidates.len());
        for value in candidates {
            let trial = only.with_param(rule, param, value)?;
            trials.push((value.to_string(), trial, 0, 0, CrossTallies::default()));
        }
        Ok(Sweep { rule, trials })
    }

    /// Runs every candidate over one share of the patients.
    pub fn add_part(&mut self, data: &Dataset<'_>) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (_, trial, findings, amount, tallies) in &mut self.trials {
            let part = reconcile_part(trial, data, threads);
            *findings += part.findings.len();
            *amount = part
                .findings
                .iter()
                .map(|f| f.amount_fen)
                .fold(*amount, u64::saturating_add);
            tallies.merge(part.tallies);
        }
    }

    /// The rows, the cross-patient findings of the merged tallies added.
    pub fn finish(self, period: Period) -> Vec<WhatIfRow> {
        let rule = self.rule;
        self.trials
            .into_iter()
            .map(|(value, trial, findings, amount, tallies)| {
                let cross = tallies.findings(&trial, period);
                WhatIfRow {
                    value,
                    findings: findings + cross.len(),
                    amount_fen: cross
                        .iter()
                        .map(|f| f.amount_fen)
                        .fold(amount, u64::saturating_add),
                    severity: trial.active(rule),
                }
            })
            .collect()
    }
}
