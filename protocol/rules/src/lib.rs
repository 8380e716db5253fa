//! The rule engine: 五定 plan checks shared by the terminal's bedside checks
//! and the server's reconciliation, and the reconciliation rules that grade
//! claims against attested sessions red / yellow / green.
//!
//! * [`Ruleset`]: the versioned TOML configuration (`rules/default.toml`):
//!   every rule's id, severity, bedside action, zh/en texts and parameters,
//!   and composite rules. Strictly parsed into typed [`ConfigError`]s.
//! * [`reconcile`]: claims, attested sessions, plans and integrity events
//!   of a period in, [`Finding`]s out, each with a stable [`FindingId`].
//! * [`check_session_start`]: the terminal's checks before a session opens,
//!   from the same rule definitions ([`fivefixed`]).
//! * [`whatif::sweep`]: findings and money per candidate threshold.
//!
//! **Architecture Invariant:** pure: no IO, no clock, no database. Inputs
//! in, findings out. Time enters only as data (record times, receipt
//! times, the period).

pub mod bedside;
mod config;
mod engine;
pub mod fivefixed;
pub mod fx;
mod model;
pub mod whatif;

pub use bedside::{AsPrior, BedsideVerdict, PriorSession, ProposedSession, check_session_start};
pub use config::{
    BedsideAction, Composite, Condition, ConfigError, DEFAULT_RULES, ParamKind, ParamSpec,
    ParamValue, RuleConfig, RuleId, Ruleset, Scope, Severity,
};
pub use engine::{
    CrossTallies, Numbered, NumberedRow, Part, reconcile, reconcile_on, reconcile_part,
    sort_findings,
};
pub use model::{
    AttestedSession, Dataset, Finding, FindingId, IntegrityEvent, IntegrityKind, Period, Presence,
    SessionFacts, Subject, Text, date_from_days, days_from_date, local_date,
};
