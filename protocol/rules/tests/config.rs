//! A bad rule configuration gets a specific, typed error naming the rule
//! and the parameter; a good one round-trips every value.

use wuding_rules::{ConfigError, DEFAULT_RULES, ParamValue, RuleId, Ruleset, Severity};

fn parse_with(from: &str, to: &str) -> Result<Ruleset, ConfigError> {
    assert!(DEFAULT_RULES.contains(from), "test fixture: {from}");
    Ruleset::parse(&DEFAULT_RULES.replacen(from, to, 1))
}

#[test]
fn the_default_file_parses_with_every_rule_and_its_parameters() {
    let r = Ruleset::default_rules();
    assert_eq!(r.rules().count(), RuleId::ALL.len());
    for id in RuleId::ALL {
        let rule = r.rule(*id);
        assert_eq!(
            rule.params.keys().copied().collect::<Vec<_>>(),
            id.params().iter().map(|p| p.name).collect::<Vec<_>>(),
            "{id}"
        );
        assert!(rule.enabled);
    }
    assert_eq!(
        r.rule(RuleId::AmountAboveCharge).params["tolerance_fen"],
        ParamValue::Int(0)
    );
    assert_eq!(r.active(RuleId::PhantomSession), Some(Severity::Red));
    let composites: Vec<&str> = r.composites.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        composites,
        ["fallback_pricier_service", "short_with_fallback"]
    );
}

#[test]
fn unknown_rule() {
    assert_eq!(
        parse_with("[rules.late_sync]", "[rules.late_sink]"),
        Err(ConfigError::UnknownRule("late_sink".into()))
    );
    // The landed upper-case ids are gone.
    assert_eq!(
        parse_with("[rules.plan_hospital]", "[rules.FIVE_FIXED_HOSPITAL]"),
        Err(ConfigError::UnknownRule("FIVE_FIXED_HOSPITAL".into()))
    );
}

#[test]
fn missing_rule() {
    let text = DEFAULT_RULES.replace(
        "[rules.backdated.params]\nmin_minutes = 10",
        "[rules.backdated.params]\nmin_minutes = 10\n[x]",
    );
    // (An unknown top-level key is reported before anything else.)
    assert_eq!(
        Ruleset::parse(&text),
        Err(ConfigError::UnknownKey("x".into()))
    );
    let start = DEFAULT_RULES.find("[rules.backdated]").unwrap();
    let end = DEFAULT_RULES.find("[rules.late_sync]").unwrap();
    let without = format!("{}{}", &DEFAULT_RULES[..start], &DEFAULT_RULES[end..]);
    assert_eq!(
        Ruleset::parse(&without),
        Err(ConfigError::MissingRule("backdated"))
    );
}

#[test]
fn bad_parameter_type() {
    assert_eq!(
        parse_with("tolerance_fen = 0", "tolerance_fen = \"0\""),
        Err(ConfigError::BadParameter {
            rule: "amount_above_charge".into(),
            param: "tolerance_fen".into(),
            reason: "must be a whole number".into(),
        })
    );
    assert!(matches!(
        parse_with("max_rate = 0.25", "max_rate = true"),
        Err(ConfigError::BadParameter { rule, param, .. })
            if rule == "fallback_rate_terminal" && param == "max_rate"
    ));
    assert!(matches!(
        parse_with("min_minutes = { HD = 180,", "min_minutes = { XX = 180,"),
        Err(ConfigError::BadParameter { rule, param, reason })
            if rule == "short_dialysis" && param == "min_minutes" && reason.contains("`XX`")
    ));
    assert!(matches!(
        parse_with("kinds = [\"HD\", \"HDF\", \"HF\", \"HP\"]", "kinds = \"HD\""),
        Err(ConfigError::BadParameter { rule, param, .. })
            if rule == "peer_sessions" && param == "kinds"
    ));
}

#[test]
fn parameter_out_of_range() {
    assert!(matches!(
        parse_with("max_rate = 0.6", "max_rate = 1.5"),
        Err(ConfigError::BadParameter { rule, param, .. })
            if rule == "fallback_rate_patient" && param == "max_rate"
    ));
    assert!(matches!(
        parse_with("max_centre_dialysis_per_day = 1", "max_centre_dialysis_per_day = 0"),
        Err(ConfigError::BadParameter { rule, .. }) if rule == "frequency_day"
    ));
}

#[test]
fn unknown_and_missing_parameters() {
    assert_eq!(
        parse_with("tolerance_fen = 0", "tolerance_fen = 0\ntolerance_pct = 5"),
        Err(ConfigError::UnknownParameter {
            rule: "amount_above_charge".into(),
            param: "tolerance_pct".into(),
        })
    );
    assert_eq!(
        parse_with("min_delay_hours = 72", ""),
        Err(ConfigError::MissingParameter {
            rule: "late_sync".into(),
            param: "min_delay_hours",
        })
    );
}

#[test]
fn unknown_top_level_key_and_bad_version() {
    assert_eq!(
        Ruleset::parse(&format!("thresholds = 1\n{DEFAULT_RULES}")),
        Err(ConfigError::UnknownKey("thresholds".into()))
    );
    assert_eq!(
        parse_with("version = \"2\"", ""),
        Err(ConfigError::MissingVersion)
    );
    assert_eq!(
        parse_with("version = \"2\"", "version = \"\""),
        Err(ConfigError::BadVersion)
    );
    assert_eq!(
        parse_with("version = \"2\"", "version = 3")
            .unwrap()
            .version,
        "3"
    );
}

#[test]
fn bad_rule_fields() {
    assert!(matches!(
        parse_with("[rules.phantom_session]\nseverity = \"red\"", "[rules.phantom_session]\nseverity = \"purple\""),
        Err(ConfigError::BadField { rule, field, .. }) if rule == "phantom_session" && field == "severity"
    ));
    // Reconciliation-only rules have no bedside action.
    assert!(matches!(
        parse_with("[rules.phantom_session]\n", "[rules.phantom_session]\nbedside = \"refuse\"\n"),
        Err(ConfigError::BadField { rule, field, .. }) if rule == "phantom_session" && field == "bedside"
    ));
    // Bedside-only rules have no severity.
    assert!(matches!(
        parse_with("[rules.plan_expiring]\n", "[rules.plan_expiring]\nseverity = \"green\"\n"),
        Err(ConfigError::BadField { rule, field, .. }) if rule == "plan_expiring" && field == "severity"
    ));
    assert!(matches!(
        parse_with("[rules.no_plan]\nseverity = \"yellow\"\nbedside = \"warn\"", "[rules.no_plan]\nseverity = \"yellow\"\nbedside = \"maybe\""),
        Err(ConfigError::BadField { rule, field, .. }) if rule == "no_plan" && field == "bedside"
    ));
    assert!(matches!(
        parse_with("[rules.chain_gap]\n", "[rules.chain_gap]\nweight = 3\n"),
        Err(ConfigError::BadField { rule, field, .. }) if rule == "chain_gap" && field == "weight"
    ));
    assert!(matches!(
        parse_with("[rules.chain_gap]\n", "[rules.chain_gap]\nenabled = \"no\"\n"),
        Err(ConfigError::BadField { rule, field, .. }) if rule == "chain_gap" && field == "enabled"
    ));
}

#[test]
fn bad_composites() {
    assert_eq!(
        parse_with(
            "all = [\"short\", \"fallback\"]",
            "all = [\"short\", \"sleepy\"]"
        ),
        Err(ConfigError::UnknownCondition {
            rule: "short_with_fallback".into(),
            condition: "sleepy".into(),
        })
    );
    assert_eq!(
        parse_with(
            "[composites.short_with_fallback]",
            "[composites.short_dialysis]"
        ),
        Err(ConfigError::DuplicateId("short_dialysis".into()))
    );
    assert!(matches!(
        parse_with("all = [\"short\", \"fallback\"]", "all = [\"short\"]"),
        Err(ConfigError::BadField { rule, field, .. }) if rule == "short_with_fallback" && field == "all"
    ));
}

#[test]
fn not_toml_at_all() {
    assert!(matches!(
        Ruleset::parse("version = \n"),
        Err(ConfigError::Toml(_))
    ));
}

#[test]
fn with_param_validates_like_the_file() {
    let r = Ruleset::default_rules();
    let changed = r
        .with_param(
            RuleId::LateSync,
            "min_delay_hours",
            &toml::Value::Integer(24),
        )
        .unwrap();
    assert_eq!(
        changed.rule(RuleId::LateSync).params["min_delay_hours"],
        ParamValue::Int(24)
    );
    assert_eq!(
        r.with_param(RuleId::LateSync, "hours", &toml::Value::Integer(24)),
        Err(ConfigError::UnknownParameter {
            rule: "late_sync".into(),
            param: "hours".into(),
        })
    );
    assert!(matches!(
        r.with_param(
            RuleId::LateSync,
            "min_delay_hours",
            &toml::Value::Float(1.5)
        ),
        Err(ConfigError::BadParameter { .. })
    ));
}
