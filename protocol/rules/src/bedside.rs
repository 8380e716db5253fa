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
    pub drug_code: Option<String>,
    pub dose: Option<Dose>,
    /// Local date of the session.
    pub date: Date,
}

/// A session the patient already had this week (from the terminal's own
/// records or its roster cache): today's count against the daily limit,
/// the week's against the weekly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorSession {
    pub date: Date,
    pub kind: TreatmentKind,
}

/// Something [`check_session_start`] accepts as an earlier session: a
/// [`PriorSession`], or a bare [`TreatmentKind`] meaning "one today".
pub trait AsPrior {
    fn as_prior(&self, today: Date) -> PriorSession;
}

impl AsPrior for PriorSession {
    fn as_prior(&self, _today: Date) -> PriorSession {
        *self
    }
}

impl AsPrior for TreatmentKind {
    fn as_prior(&self, today: Date) -> PriorSession {
        PriorSession {
            date: today,
            kind: *self,
        }
    }
}

/// One bedside verdict with the nurse-facing reason: the rule's title and
/// what exactly broke it, in Chinese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BedsideVerdict {
    pub rule: RuleId,
    /// `rule.code()`: the id as written in the configuration and findings.
    pub rule_id: &'static str,
    /// Refuse the session (事中控制); otherwise warn (事前提醒).
    pub refuse: bool,
    pub zh: String,
    pub en: String,
}

fn refuses(ruleset: &Ruleset, rule: RuleId) -> Option<bool> {
    let r = ruleset.rule(rule);
    if !r.enabled {
        return None;
    }
    match r.bedside {
        BedsideAction::Refuse => Some(true),
        BedsideAction::Warn => Some(false),
        BedsideAction::Off => None,
    }
}

fn verdict(ruleset: &Ruleset, rule: RuleId, refuse: bool, reason: Text) -> BedsideVerdict {
    let title = &ruleset.rule(rule).title;
    BedsideVerdict {
        rule,
        rule_id: rule.code(),
        refuse,
        zh: format!("{}：{}", title.zh, reason.zh),
        en: format!("{}: {}", title.en, reason.en),
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

/// Checks a session before it opens. `plans` are the patient's plans (an
/// `Option<&TreatmentPlan>`, a slice, ...; any dates: those in force on the
/// session's date are used), `prior` the patient's sessions already held
/// this week (today's included; bare [`TreatmentKind`]s count as today's).
/// Refusals come first, then warnings, each in rule order.
pub fn check_session_start<'p>(
    ruleset: &Ruleset,
    plans: impl IntoIterator<Item = &'p TreatmentPlan>,
    proposed: &ProposedSession,
    prior: &[impl AsPrior],
) -> Vec<BedsideVerdict> {
    let mut out = Vec::new();
    let own: Vec<&TreatmentPlan> = plans.into_iter().collect();
    let prior: Vec<PriorSession> = prior.iter().map(|p| p.as_prior(proposed.date)).collect();
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
        if let Some(refuse) = refuses(ruleset, breach.rule) {
            out.push(verdict(ruleset, breach.rule, refuse, breach.reason));
        }
    }

    let in_force: Vec<&TreatmentPlan> = own
        .iter()
        .copied()
        .filter(|p| p.covers(proposed.date) && p.kinds.contains(&proposed.kind))
        .collect();

    if proposed.kind.is_centre_dialysis()
        && let Some(refuse) = refuses(ruleset, RuleId::FrequencyDay)
    {
        let max = ruleset.int(RuleId::FrequencyDay, "max_centre_dialysis_per_day");
        let today = prior
            .iter()
            .filter(|s| s.date == proposed.date && s.kind.is_centre_dialysis())
            .count() as i64;
        if today + 1 > max {
            out.push(verdict(
                ruleset,
                RuleId::FrequencyDay,
                refuse,
                Text {
                    zh: format!("今日已透析 {today} 次（每日上限 {max} 次）"),
                    en: format!("already dialysed {today} time(s) today (limit {max} a day)"),
                },
            ));
        }
    }

    if let Some(refuse) = refuses(ruleset, RuleId::FrequencyWeek) {
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
                out.push(verdict(
                    ruleset,
                    RuleId::FrequencyWeek,
                    refuse,
                    Text {
                        zh: format!("本周已治疗 {done} 次，已达每周 {limit} 次的上限"),
                        en: format!(
                            "{done} session(s) already this week: the weekly limit of {limit} is reached"
                        ),
                    },
                ));
            }
        }
    }

    if let Some(refuse) = refuses(ruleset, RuleId::PlanExpiring) {
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
                out.push(verdict(
                    ruleset,
                    RuleId::PlanExpiring,
                    refuse,
                    Text {
                        zh: format!("五定计划将于 {to} 到期（剩 {left} 天），请及时续办"),
                        en: format!(
                            "the 五定 plan expires on {to} ({left} day(s) left); renew it in time"
                        ),
                    },
                ));
            }
        }
    }

    out.sort_by_key(|v| (!v.refuse, v.rule));
    out
}
