//! The rule configuration: a versioned TOML file naming every rule, its
//! severity, its bedside action (for 五定 and frequency rules), its texts in
//! Chinese and English and its parameters; plus composite rules built from
//! per-session conditions.
//!
//! Parsing is strict: an unknown rule, a missing rule, an unknown, missing
//! or ill-typed parameter, an unknown condition in a composite: each is its
//! own [`ConfigError`] naming the rule and the parameter.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use wuding_protocol::TreatmentKind;

use crate::Text;

/// The default configuration shipped with wuding.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// How a finding is graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Conclusive: pay nothing for it, act at once.
    Red,
    /// Needs a person to verify.
    Yellow,
    /// Warning: keep tracking.
    Green,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Red => "red",
            Severity::Yellow => "yellow",
            Severity::Green => "green",
        }
    }

    pub fn from_code(code: &str) -> Option<Severity> {
        [Severity::Red, Severity::Yellow, Severity::Green]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the terminal does when a bedside check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BedsideAction {
    /// Refuse to open the session (事中控制).
    Refuse,
    /// Open it, but show the nurse a warning (事前提醒).
    Warn,
    /// Not checked at the bedside.
    Off,
}

impl BedsideAction {
    fn from_code(code: &str) -> Option<BedsideAction> {
        match code {
            "refuse" => Some(BedsideAction::Refuse),
            "warn" => Some(BedsideAction::Warn),
            "off" => Some(BedsideAction::Off),
            _ => None,
        }
    }
}

/// Where a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Post-hoc reconciliation only.
    Reconcile,
    /// Reconciliation and the bedside check (one definition, both places).
    Both,
    /// The bedside only (a reminder that has no post-hoc meaning).
    Bedside,
}

macro_rules! rules {
    ($($variant:ident = $code:literal, $scope:ident;)*) => {
        /// Every built-in rule.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RuleId { $($variant,)* }

        impl RuleId {
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];

            /// The id used in the configuration and in findings.
            pub fn code(self) -> &'static str {
                match self { $(RuleId::$variant => $code,)* }
            }

            pub fn scope(self) -> Scope {
                match self { $(RuleId::$variant => Scope::$scope,)* }
            }
        }
    };
}

rules! {
    PhantomSession = "phantom_session", Reconcile;
    InflatedCount = "inflated_count", Reconcile;
    ServiceSwapped = "service_swapped", Reconcile;
    AmountAboveCharge = "amount_above_charge", Reconcile;
    SupervisedFallback = "supervised_fallback", Reconcile;
    FallbackRateTerminal = "fallback_rate_terminal", Reconcile;
    FallbackRateNurse = "fallback_rate_nurse", Reconcile;
    FallbackRatePatient = "fallback_rate_patient", Reconcile;
    ShortDialysis = "short_dialysis", Reconcile;
    MissingCheckout = "missing_checkout", Reconcile;
    FrequencyDay = "frequency_day", Both;
    FrequencyWeek = "frequency_week", Both;
    FrequencyMonth = "frequency_month", Reconcile;
    OverlapPlaces = "overlap_places", Reconcile;
    NoPlan = "no_plan", Both;
    PlanHospital = "plan_hospital", Both;
    PlanDepartment = "plan_department", Both;
    PlanDoctor = "plan_doctor", Both;
    PlanKind = "plan_kind", Both;
    PlanDrug = "plan_drug", Both;
    PlanDose = "plan_dose", Both;
    PlanExpiring = "plan_expiring", Bedside;
    BadSignature = "bad_signature", Reconcile;
    UnknownKey = "unknown_key", Reconcile;
    RevokedKey = "revoked_key", Reconcile;
    AfterRevocation = "after_revocation", Reconcile;
    RefusedRecord = "refused_record", Reconcile;
    ChainGap = "chain_gap", Reconcile;
    ChainFork = "chain_fork", Reconcile;
    ChainBrokenLink = "chain_broken_link", Reconcile;
    ClockSkew = "clock_skew", Reconcile;
    Backdated = "backdated", Reconcile;
    LateSync = "late_sync", Reconcile;
    PeerSessions = "peer_sessions", Reconcile;
}

impl RuleId {
    pub fn from_code(code: &str) -> Option<RuleId> {
        RuleId::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// The parameters this rule takes, and their types.
    pub fn params(self) -> &'static [ParamSpec] {
        use ParamKind::*;
        macro_rules! p {
            ($name:literal, $kind:expr) => {
                ParamSpec {
                    name: $name,
                    kind: $kind,
                }
            };
        }
        match self {
            RuleId::AmountAboveCharge => &[p!(
                "tolerance_fen",
                Int {
                    min: 0,
                    max: 100_000_000
                }
            )],
            RuleId::FallbackRateTerminal
            | RuleId::FallbackRateNurse
            | RuleId::FallbackRatePatient => &[
                p!("max_rate", Ratio),
                p!(
                    "min_sessions",
                    Int {
                        min: 1,
                        max: 1_000_000
                    }
                ),
            ],
            RuleId::ShortDialysis => &[p!("min_minutes", KindInts { min: 1, max: 1440 })],
            RuleId::MissingCheckout => &[p!("kinds", Kinds)],
            RuleId::FrequencyDay => &[p!("max_centre_dialysis_per_day", Int { min: 1, max: 10 })],
            RuleId::FrequencyWeek => &[p!("default_max_per_week", KindInts { min: 1, max: 50 })],
            RuleId::FrequencyMonth => &[p!("max_per_month", KindInts { min: 1, max: 200 })],
            RuleId::OverlapPlaces => &[
                p!("min_overlap_minutes", Int { min: 0, max: 1440 }),
                p!("open_session_minutes", Int { min: 1, max: 1440 }),
            ],
            RuleId::NoPlan => &[p!("kinds", Kinds)],
            RuleId::PlanExpiring => &[p!("days", Int { min: 1, max: 365 })],
            RuleId::ClockSkew => &[p!(
                "min_skew_minutes",
                Int {
                    min: 0,
                    max: 1_000_000
                }
            )],
            RuleId::Backdated => &[p!(
                "min_minutes",
                Int {
                    min: 0,
                    max: 1_000_000
                }
            )],
            RuleId::LateSync => &[p!(
                "min_delay_hours",
                Int {
                    min: 0,
                    max: 1_000_000
                }
            )],
            RuleId::PeerSessions => &[
                p!("kinds", Kinds),
                p!(
                    "max_ratio_to_median",
                    Float {
                        min: 1.0,
                        max: 100.0
                    }
                ),
                p!(
                    "min_patients",
                    Int {
                        min: 1,
                        max: 1_000_000
                    }
                ),
                p!(
                    "min_peers",
                    Int {
                        min: 2,
                        max: 1_000_000
                    }
                ),
            ],
            _ => &[],
        }
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    /// A number in 0..=1.
    Ratio,
    /// A list of treatment kind codes.
    Kinds,
    /// A table from treatment kind code to integer.
    KindInts {
        min: i64,
        max: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
}

/// A validated parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Kinds(Vec<TreatmentKind>),
    KindInts(BTreeMap<TreatmentKind, i64>),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Kinds(ks) => {
                let codes: Vec<&str> = ks.iter().map(|k| k.code()).collect();
                write!(f, "[{}]", codes.join(", "))
            }
            ParamValue::KindInts(m) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                write!(f, "{{{}}}", parts.join(", "))
            }
        }
    }
}

/// A bad rule configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("the rule configuration is not valid TOML: {0}")]
    Toml(String),
    #[error("`{0}` is not a known top-level key (expected version, rules, composites)")]
    UnknownKey(String),
    #[error("the configuration has no `version`")]
    MissingVersion,
    #[error("`version` must be a non-empty string or a positive whole number")]
    BadVersion,
    #[error("unknown rule id `{0}`")]
    UnknownRule(String),
    #[error(
        "rule `{0}` is missing from the configuration (list it, with enabled = false to turn it off)"
    )]
    MissingRule(&'static str),
    #[error("rule `{rule}`: `{field}` {reason}")]
    BadField {
        rule: String,
        field: String,
        reason: String,
    },
    #[error("rule `{rule}`: unknown parameter `{param}`")]
    UnknownParameter { rule: String, param: String },
    #[error("rule `{rule}`: parameter `{param}` is missing")]
    MissingParameter { rule: String, param: &'static str },
    #[error("rule `{rule}`: parameter `{param}` {reason}")]
    BadParameter {
        rule: String,
        param: String,
        reason: String,
    },
    #[error("composite `{rule}`: unknown condition `{condition}`")]
    UnknownCondition { rule: String, condition: String },
    #[error("composite `{0}` clashes with a built-in rule id or another composite")]
    DuplicateId(String),
}

/// One rule as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    pub id: RuleId,
    pub enabled: bool,
    /// `None` for bedside-only rules.
    pub severity: Option<Severity>,
    pub bedside: BedsideAction,
    pub title: Text,
    pub description: Text,
    pub params: BTreeMap<&'static str, ParamValue>,
}

/// A per-session fact a composite rule can combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Check-in or check-out attested by supervised fallback.
    Fallback,
    /// Centre dialysis shorter than `short_dialysis`'s minimum.
    Short,
    /// Closed by the terminal without check-out.
    MissingCheckout,
    /// A claim line matched to the session names this kind.
    ClaimedKind(TreatmentKind),
    /// The session attested this kind.
    AttestedKind(TreatmentKind),
    /// The matched claim asks more than the bound charge.
    AmountAboveCharge,
}

impl Condition {
    fn parse(text: &str) -> Option<Condition> {
        match text {
            "fallback" => Some(Condition::Fallback),
            "short" => Some(Condition::Short),
            "missing_checkout" => Some(Condition::MissingCheckout),
            "amount_above_charge" => Some(Condition::AmountAboveCharge),
            _ => {
                let (name, kind) = text.split_once(':')?;
                let kind = TreatmentKind::from_code(kind)?;
                match name {
                    "claimed_kind" => Some(Condition::ClaimedKind(kind)),
                    "attested_kind" => Some(Condition::AttestedKind(kind)),
                    _ => None,
                }
            }
        }
    }

    /// The condition as written in the configuration.
    pub fn code(&self) -> String {
        match self {
            Condition::Fallback => "fallback".into(),
            Condition::Short => "short".into(),
            Condition::MissingCheckout => "missing_checkout".into(),
            Condition::AmountAboveCharge => "amount_above_charge".into(),
            Condition::ClaimedKind(k) => format!("claimed_kind:{k}"),
            Condition::AttestedKind(k) => format!("attested_kind:{k}"),
        }
    }
}

/// A composite rule: every `all` condition and, if any are listed, at least
/// one `any` condition hold for one attested session.
#[derive(Debug, Clone, PartialEq)]
pub struct Composite {
    pub id: String,
    pub enabled: bool,
    pub severity: Severity,
    pub title: Text,
    pub description: Text,
    pub all: Vec<Condition>,
    pub any: Vec<Condition>,
}

/// A parsed, validated rule configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Ruleset {
    pub version: String,
    rules: BTreeMap<RuleId, RuleConfig>,
    pub composites: Vec<Composite>,
}

impl Ruleset {
    /// The configuration shipped in `protocol/rules/rules/default.toml`.
    pub fn default_rules() -> Ruleset {
        // The shipped file is checked by the crate's tests; failing here
        // would mean the build itself is broken.
        Ruleset::parse(DEFAULT_RULES).expect("the shipped default.toml is valid")
    }

    pub fn parse(text: &str) -> Result<Ruleset, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml(e.to_string()))?;
        for key in table.keys() {
            if !matches!(key.as_str(), "version" | "rules" | "composites") {
                return Err(ConfigError::UnknownKey(key.clone()));
            }
        }
        let version = match table.get("version") {
            None => return Err(ConfigError::MissingVersion),
            Some(toml::Value::String(v)) if !v.trim().is_empty() => v.clone(),
            Some(toml::Value::Integer(v)) if *v > 0 => v.to_string(),
            Some(_) => return Err(ConfigError::BadVersion),
        };
        let empty = toml::Table::new();
        let rules_table = match table.get("rules") {
            None => &empty,
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                return Err(ConfigError::BadField {
                    rule: "*".into(),
                    field: "rules".into(),
                    reason: "must be a table of rules".into(),
                });
            }
        };
        if let Some(code) = rules_table.keys().find(|c| RuleId::from_code(c).is_none()) {
            return Err(ConfigError::UnknownRule(code.clone()));
        }
        let mut rules = BTreeMap::new();
        for (code, value) in rules_table {
            let id =
                RuleId::from_code(code).ok_or_else(|| ConfigError::UnknownRule(code.clone()))?;
            let t = as_table(code, "rule", value)?;
            rules.insert(id, parse_rule(id, t)?);
        }
        for id in RuleId::ALL {
            if !rules.contains_key(id) {
                return Err(ConfigError::MissingRule(id.code()));
            }
        }
        let mut composites = Vec::new();
        if let Some(value) = table.get("composites") {
            let t = as_table("composites", "composites", value)?;
            for (id, value) in t {
                if RuleId::from_code(id).is_some()
                    || composites.iter().any(|c: &Composite| &c.id == id)
                {
                    return Err(ConfigError::DuplicateId(id.clone()));
                }
                if id.is_empty()
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err(ConfigError::BadField {
                        rule: id.clone(),
                        field: "id".into(),
                        reason: "must be lower-case letters, digits and underscores".into(),
                    });
                }
                composites.push(parse_composite(id, as_table(id, "composite", value)?)?);
            }
        }
        Ok(Ruleset {
            version,
            rules,
            composites,
        })
    }

    /// The configuration of one rule.
    pub fn rule(&self, id: RuleId) -> &RuleConfig {
        // Every RuleId is present: `parse` refuses a configuration
        // missing one, and nothing removes them afterwards.
        &self.rules[&id]
    }

    pub fn rules(&self) -> impl Iterator<Item = &RuleConfig> {
        self.rules.values()
    }

    /// Severity of an enabled reconciliation rule, `None` if it is off.
    pub fn active(&self, id: RuleId) -> Option<Severity> {
        let r = self.rule(id);
        if r.enabled { r.severity } else { None }
    }

    /// A copy with one parameter replaced, validated like the file is.
    pub fn with_param(
        &self,
        rule: RuleId,
        param: &str,
        value: &toml::Value,
    ) -> Result<Ruleset, ConfigError> {
        let spec = rule
            .params()
            .iter()
            .find(|s| s.name == param)
            .ok_or_else(|| ConfigError::UnknownParameter {
                rule: rule.code().into(),
                param: param.into(),
            })?;
        let parsed = parse_param(rule.code(), spec, value)?;
        let mut copy = self.clone();
        if let Some(r) = copy.rules.get_mut(&rule) {
            r.params.insert(spec.name, parsed);
        }
        Ok(copy)
    }

    /// A copy with one rule's enabled flag set.
    pub fn with_enabled(&self, rule: RuleId, enabled: bool) -> Ruleset {
        let mut copy = self.clone();
        if let Some(r) = copy.rules.get_mut(&rule) {
            r.enabled = enabled;
        }
        copy
    }

    pub(crate) fn int(&self, rule: RuleId, name: &str) -> i64 {
        match self.rule(rule).params.get(name) {
            Some(ParamValue::Int(v)) => *v,
            // Validated at parse time; an absent value cannot happen.
            _ => 0,
        }
    }

    pub(crate) fn float(&self, rule: RuleId, name: &str) -> f64 {
        match self.rule(rule).params.get(name) {
            Some(ParamValue::Float(v)) => *v,
            Some(ParamValue::Int(v)) => *v as f64,
            _ => 0.0,
        }
    }

    pub(crate) fn kinds(&self, rule: RuleId, name: &str) -> &[TreatmentKind] {
        match self.rule(rule).params.get(name) {
            Some(ParamValue::Kinds(v)) => v,
            _ => &[],
        }
    }

    pub(crate) fn kind_int(&self, rule: RuleId, name: &str, kind: TreatmentKind) -> Option<i64> {
        match self.rule(rule).params.get(name) {
            Some(ParamValue::KindInts(m)) => m.get(&kind).copied(),
            _ => None,
        }
    }

    /// The parameters of a rule rendered for a finding.
    pub(crate) fn params_of(&self, rule: RuleId) -> BTreeMap<String, String> {
        self.rule(rule)
            .params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_string()))
            .collect()
    }
}

fn as_table<'a>(
    rule: &str,
    field: &str,
    value: &'a toml::Value,
) -> Result<&'a toml::Table, ConfigError> {
    value.as_table().ok_or_else(|| ConfigError::BadField {
        rule: rule.into(),
        field: field.into(),
        reason: "must be a table".into(),
    })
}

fn text_pair(rule: &str, t: &toml::Table, stem: &str) -> Result<Text, ConfigError> {
    let get = |lang: &str| -> Result<String, ConfigError> {
        let field = format!("{stem}_{lang}");
        match t.get(&field) {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(ConfigError::BadField {
                rule: rule.into(),
                field,
                reason: "must be a non-empty string".into(),
            }),
            None => Err(ConfigError::BadField {
                rule: rule.into(),
                field,
                reason: "is missing".into(),
            }),
        }
    };
    Ok(Text {
        zh: get("zh")?,
        en: get("en")?,
    })
}

fn get_bool(rule: &str, t: &toml::Table, field: &str, default: bool) -> Result<bool, ConfigError> {
    match t.get(field) {
        None => Ok(default),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(ConfigError::BadField {
            rule: rule.into(),
            field: field.into(),
            reason: "must be true or false".into(),
        }),
    }
}

fn get_severity(rule: &str, t: &toml::Table) -> Result<Option<Severity>, ConfigError> {
    match t.get("severity") {
        None => Ok(None),
        Some(toml::Value::String(s)) => {
            Severity::from_code(s)
                .map(Some)
                .ok_or_else(|| ConfigError::BadField {
                    rule: rule.into(),
                    field: "severity".into(),
                    reason: format!("`{s}` is not red, yellow or green"),
                })
        }
        Some(_) => Err(ConfigError::BadField {
            rule: rule.into(),
            field: "severity".into(),
            reason: "must be \"red\", \"yellow\" or \"green\"".into(),
        }),
    }
}

const RULE_FIELDS: &[&str] = &[
    "enabled",
    "severity",
    "bedside",
    "title_zh",
    "title_en",
    "description_zh",
    "description_en",
    "params",
];

fn parse_rule(id: RuleId, t: &toml::Table) -> Result<RuleConfig, ConfigError> {
    let code = id.code();
    for key in t.keys() {
        if !RULE_FIELDS.contains(&key.as_str()) {
            return Err(ConfigError::BadField {
                rule: code.into(),
                field: key.clone(),
                reason: "is not a rule field".into(),
            });
        }
    }
    let severity = get_severity(code, t)?;
    match (id.scope(), severity) {
        (Scope::Bedside, Some(_)) => {
            return Err(ConfigError::BadField {
                rule: code.into(),
                field: "severity".into(),
                reason: "is not allowed: the rule runs only at the bedside".into(),
            });
        }
        (Scope::Reconcile | Scope::Both, None) => {
            return Err(ConfigError::BadField {
                rule: code.into(),
                field: "severity".into(),
                reason: "is missing".into(),
            });
        }
        _ => {}
    }
    let bedside = match t.get("bedside") {
        None if id.scope() == Scope::Reconcile => BedsideAction::Off,
        None => {
            return Err(ConfigError::BadField {
                rule: code.into(),
                field: "bedside".into(),
                reason: "is missing (refuse, warn or off)".into(),
            });
        }
        Some(_) if id.scope() == Scope::Reconcile => {
            return Err(ConfigError::BadField {
                rule: code.into(),
                field: "bedside".into(),
                reason: "is not allowed: the rule is not checked at the bedside".into(),
            });
        }
        Some(toml::Value::String(s)) => {
            BedsideAction::from_code(s).ok_or_else(|| ConfigError::BadField {
                rule: code.into(),
                field: "bedside".into(),
                reason: format!("`{s}` is not refuse, warn or off"),
            })?
        }
        Some(_) => {
            return Err(ConfigError::BadField {
                rule: code.into(),
                field: "bedside".into(),
                reason: "must be \"refuse\", \"warn\" or \"off\"".into(),
            });
        }
    };
    let empty = toml::Table::new();
    let given = match t.get("params") {
        None => &empty,
        Some(v) => as_table(code, "params", v)?,
    };
    for key in given.keys() {
        if !id.params().iter().any(|s| s.name == key) {
            return Err(ConfigError::UnknownParameter {
                rule: code.into(),
                param: key.clone(),
            });
        }
    }
    let mut params = BTreeMap::new();
    for spec in id.params() {
        let value = given.get(spec.name).ok_or(ConfigError::MissingParameter {
            rule: code.into(),
            param: spec.name,
        })?;
        params.insert(spec.name, parse_param(code, spec, value)?);
    }
    Ok(RuleConfig {
        id,
        enabled: get_bool(code, t, "enabled", true)?,
        severity,
        bedside,
        title: text_pair(code, t, "title")?,
        description: text_pair(code, t, "description")?,
        params,
    })
}

fn parse_kind(rule: &str, param: &str, v: &str) -> Result<TreatmentKind, ConfigError> {
    TreatmentKind::from_code(v).ok_or_else(|| ConfigError::BadParameter {
        rule: rule.into(),
        param: param.into(),
        reason: format!("`{v}` is not a treatment kind (HD HDF HF HP PD CHEMO RADIO ANTIREJECT)"),
    })
}

fn parse_param(
    rule: &str,
    spec: &ParamSpec,
    value: &toml::Value,
) -> Result<ParamValue, ConfigError> {
    let bad = |reason: String| ConfigError::BadParameter {
        rule: rule.into(),
        param: spec.name.into(),
        reason,
    };
    let int_in = |v: &toml::Value, min: i64, max: i64| -> Result<i64, ConfigError> {
        match v {
            toml::Value::Integer(i) if (min..=max).contains(i) => Ok(*i),
            toml::Value::Integer(i) => Err(bad(format!("is {i}; must be between {min} and {max}"))),
            _ => Err(bad("must be a whole number".into())),
        }
    };
    match spec.kind {
        ParamKind::Int { min, max } => int_in(value, min, max).map(ParamValue::Int),
        ParamKind::Float { .. } | ParamKind::Ratio
            if matches!(value, toml::Value::Float(_) | toml::Value::Integer(_)) =>
        {
            let (min, max) = match spec.kind {
                ParamKind::Float { min, max } => (min, max),
                _ => (0.0, 1.0),
            };
            let f = match value {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                _ => f64::NAN,
            };
            if f.is_finite() && f >= min && f <= max {
                Ok(ParamValue::Float(f))
            } else {
                Err(bad(format!("is {f}; must be between {min} and {max}")))
            }
        }
        ParamKind::Float { .. } | ParamKind::Ratio => Err(bad("must be a number".into())),
        ParamKind::Kinds => {
            let list = value
                .as_array()
                .ok_or_else(|| bad("must be a list of treatment kinds".into()))?;
            let mut kinds = Vec::new();
            for item in list {
                let s = item
                    .as_str()
                    .ok_or_else(|| bad("must be a list of treatment kind codes".into()))?;
                let k = parse_kind(rule, spec.name, s)?;
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
            Ok(ParamValue::Kinds(kinds))
        }
        ParamKind::KindInts { min, max } => {
            let t = value
                .as_table()
                .ok_or_else(|| bad("must be a table like { HD = 180 }".into()))?;
            let mut map = BTreeMap::new();
            for (k, v) in t {
                map.insert(parse_kind(rule, spec.name, k)?, int_in(v, min, max)?);
            }
            Ok(ParamValue::KindInts(map))
        }
    }
}

const COMPOSITE_FIELDS: &[&str] = &[
    "enabled",
    "severity",
    "title_zh",
    "title_en",
    "description_zh",
    "description_en",
    "all",
    "any",
];

fn parse_composite(id: &str, t: &toml::Table) -> Result<Composite, ConfigError> {
    for key in t.keys() {
        if !COMPOSITE_FIELDS.contains(&key.as_str()) {
            return Err(ConfigError::BadField {
                rule: id.into(),
                field: key.clone(),
                reason: "is not a composite rule field".into(),
            });
        }
    }
    let severity = get_severity(id, t)?.ok_or_else(|| ConfigError::BadField {
        rule: id.into(),
        field: "severity".into(),
        reason: "is missing".into(),
    })?;
    let conditions = |field: &str| -> Result<Vec<Condition>, ConfigError> {
        let Some(v) = t.get(field) else {
            return Ok(Vec::new());
        };
        let list = v.as_array().ok_or_else(|| ConfigError::BadField {
            rule: id.into(),
            field: field.into(),
            reason: "must be a list of conditions".into(),
        })?;
        list.iter()
            .map(|item| {
                let s = item.as_str().ok_or_else(|| ConfigError::BadField {
                    rule: id.into(),
                    field: field.into(),
                    reason: "must be a list of condition strings".into(),
                })?;
                Condition::parse(s).ok_or_else(|| ConfigError::UnknownCondition {
                    rule: id.into(),
                    condition: s.into(),
                })
            })
            .collect()
    };
    let all = conditions("all")?;
    let any = conditions("any")?;
    if all.len() + usize::from(!any.is_empty()) < 2 {
        return Err(ConfigError::BadField {
            rule: id.into(),
            field: "all".into(),
            reason: "a composite needs at least two conditions together".into(),
        });
    }
    Ok(Composite {
        id: id.into(),
        enabled: get_bool(id, t, "enabled", true)?,
        severity,
        title: text_pair(id, t, "title")?,
        description: text_pair(id, t, "description")?,
        all,
        any,
    })
}
