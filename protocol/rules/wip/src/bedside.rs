//! The checks the terminal runs before it opens a session. They come from
//! the same rule definitions (and the same configuration) as the server's
//! 五定 and frequency reconciliation rules: a rule's `bedside` setting says
//! whether a breach refuses the session (事中控制), warns the nurse
//! (事前提醒), or is left to reconciliation.

use serde::Serialize;
use wuding_protocol::{Date, Dose, TreatmentKind, TreatmentPlan};

use crate::config::{BedsideAction, RuleId, Ruleset};
use crate::fivefixed::{ServiceFacts, check_against_plans};
use crate::model::{Text, days_from_date};

/// What the nurse is about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedSession {
    pub hospital_code: String,
    pub department_code: String,
    pub doctor_id: String,
    pub kind: TreatmentKind,
    pub service_code: String,
    pub drug_code: Option<String>,
    pub dose: Option<Dose>,
    /// Local date of the session.
    pub date: Date,
}

/// A session the patient already had (from the terminal's own records or
/// its roster cache): today's for the daily limit, this week's for the
/// weekly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorSession {
    pub date: Date,
    pub kind: TreatmentKind,
}

/// Refuse or warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Refuse,
    Warn,
}

/// One bedside verdict with the nurse-facing reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BedsideVerdict {
    pub verdict: Verdict,
    pub rule_id: RuleId,
    pub reason: Text,
}

fn verdict_of(ruleset: &Ruleset, rule: RuleId) -> Option<Verdict> {
    let r = ruleset.rule(rule);
    if !r.enabled {
        return None;
    }
    match r.bedside {
        BedsideAction::Refuse => Some(Verdict::Refuse),
        BedsideAction::Warn => Some(Verdict::Warn),
        BedsideAction::Off => None,
    }
}

fn iso_week(d: Date) -> (i16, i8) {
    let w = d.iso_week_date();
    (w.year(), w.week())
}

/// Kinds counted together against one frequency limit: centre dialysis
/// variants share one limit (HD alternating with HDF is still one session).
pub(crate) fn same_family(a: TreatmentKind, b: TreatmentKind) -> bool {
    a == b || (a.is_centre_dialysis() && b.is_centre_dialysis())
}

/// Checks a session before it opens. `plans` are the patient's plans (any
/// dates: the one in force on the session's date is used), `prior` the
/// patient's sessions already held this week (today's included).
/// Refusals come first.
pub fn check_session_start(
    ruleset: &Ruleset,
    plans: &[TreatmentPlan],
    proposed: &ProposedSession,
    prior: &[PriorSession],
) -> Vec<BedsideVerdict> {
    let mut out = Vec::new();
    let own: Vec<&TreatmentPlan> = plans.iter().collect();
    let facts = ServiceFacts {
        hospital_code: &proposed.hospital_code,
        department_code: &proposed.department_code,
        doctor_id: &proposed.doctor_id,
        kind: proposed.kind,
        drug_code: proposed.drug_code.as_deref(),
        dose: proposed.dose.as_ref(),
        date: proposed.date,
    };
    for breach in check_against_plans(ruleset, &own, &facts) {
        if let Some(verdict) = verdict_of(ruleset, breach.rule) {
            out.push(BedsideVerdict {
                verdict,
                rule_id: breach.rule,
                reason: breach.reason,
            });
        }
    }

    let in_force: Vec<&TreatmentPlan> = own
        .iter()
        .copied()
        .filter(|p| p.covers(proposed.date) && p.kinds.contains(&proposed.kind))
        .collect();

    if proposed.kind.is_centre_dialysis()
        && let Some(verdict) = verdict_of(ruleset, RuleId::FrequencyDay)
    {
        let max = ruleset.int(RuleId::FrequencyDay, "max_centre_dialysis_per_day");
        let today = prior
            .iter()
            .filter(|s| s.date == proposed.date && s.kind.is_centre_dialysis())
            .count() as i64;
        if today + 1 > max {
            out.push(BedsideVerdict {
                verdict,
                rule_id: RuleId::FrequencyDay,
                reason: Text {
                    zh: format!("今日已透析 {today} 次（每日上限 {max} 次）"),
                    en: format!("already dialysed {today} time(s) today (limit {max} a day)"),
                },
            });
        }
    }

    if let Some(verdict) = verdict_of(ruleset, RuleId::FrequencyWeek) {
        let limit = in_force
            .iter()
            .filter_map(|p| p.max_sessions_per_week)
            .map(i64::from)
            .max()
            .or_else(|| {
                ruleset.kind_int(RuleId::FrequencyWeek, "default_max_per_week", proposed.kind)
            });
        if let Some(limit) = limit {
            let week = iso_week(proposed.date);
            let done = prior
                .iter()
                .filter(|s| iso_week(s.date) == week && same_family(s.kind, proposed.kind))
                .count() as i64;
            if done + 1 > limit {
                out.push(BedsideVerdict {
                    verdict,
                    rule_id: RuleId::FrequencyWeek,
                    reason: Text {
                        zh: format!("本周已治疗 {done} 次，已达每周 {limit} 次的上限"),
                        en: format!(
                            "{done} session(s) already this week: the weekly limit of {limit} is reached"
                        ),
                    },
                });
            }
        }
    }

    if let Some(verdict) = verdict_of(ruleset, RuleId::PlanExpiring) {
        let days = ruleset.int(RuleId::PlanExpiring, "days");
        // The plan that lasts longest among those in force: a successor
        // plan already in force means nothing is about to expire.
        if let Some(to) = in_force.iter().map(|p| p.valid_to).max() {
            let successor = own.iter().any(|p| {
                p.kinds.contains(&proposed.kind)
                    && p.valid_to > to
                    && days_from_date(p.valid_from) <= days_from_date(to) + 1
            });
            let left = days_from_date(to) - days_from_date(proposed.date);
            if left < days && !successor {
                out.push(BedsideVerdict {
                    verdict,
                    rule_id: RuleId::PlanExpiring,
                    reason: Text {
                        zh: format!("五定计划将于 {to} 到期（剩 {left} 天），请及时续办"),
                        en: format!(
                            "the 五定 plan expires on {to} ({left} day(s) left); renew it in time"
                        ),
                    },
                });
            }
        }
    }

    out.sort_by_key(|v| (v.verdict != Verdict::Refuse, v.rule_id));
    out
}
