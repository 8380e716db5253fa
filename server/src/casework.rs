//! The auditor workflow, pure: who may do what to a finding in which
//! status, how identifiers are masked, how passwords are kept. The web
//! layer (`web.rs`) and the store call into this; nothing here does IO.
//!
//! A finding's life (DESIGN.md, 机审 -> 初审 -> 申诉 -> 复审 -> 合议 -> 扣款):
//!
//! ```text
//! open ──confirm──> notified ──appeal──> appealed ──uphold──> upheld ──deduct──> deducted
//!  │                  │  └─accept─> upheld      │ └─withdraw─> withdrawn
//!  └─dismiss─> dismissed  └─deduct (deadline passed, no appeal)   └─escalate─> panel
//!                                                   panel ──panel_uphold──> upheld
//!                                                         └─panel_withdraw─> withdrawn
//! ```

use serde::Serialize;

/// Who someone is in the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Fund auditor: first review, re-review, deduction.
    Auditor,
    /// Expert panel member: everything an auditor does, plus panel
    /// decisions and rule changes.
    SeniorAuditor,
    /// Hospital staff: sees its own institution's notified findings and
    /// answers them.
    Hospital,
    /// Keeps the system: users, terminals, the audit trail. Sees no cases.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Auditor,
        Role::SeniorAuditor,
        Role::Hospital,
        Role::Admin,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::SeniorAuditor => "senior_auditor",
            Role::Hospital => "hospital",
            Role::Admin => "admin",
        }
    }

    pub fn parse(code: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Fund staff who work cases.
    pub fn is_fund_auditor(self) -> bool {
        matches!(self, Role::Auditor | Role::SeniorAuditor)
    }
}

/// Where a finding stands.
pub const STATUSES: [&str; 8] = [
    "open",
    "dismissed",
    "notified",
    "appealed",
    "panel",
    "upheld",
    "withdrawn",
    "deducted",
];

/// The statuses a hospital user sees: those the fund has told it about.
pub const HOSPITAL_VISIBLE: [&str; 6] = [
    "notified",
    "appealed",
    "panel",
    "upheld",
    "withdrawn",
    "deducted",
];

/// What someone can do to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// 初审 confirms the machine finding; the hospital is notified.
    Confirm,
    /// 初审 dismisses it (a false alarm).
    Dismiss,
    /// 申诉: the hospital disputes it, with text and maybe an attachment.
    Appeal,
    /// The hospital accepts it.
    Accept,
    /// 复审 upholds the finding after an appeal.
    Uphold,
    /// 复审 withdraws it after an appeal.
    Withdraw,
    /// 复审 sends a disputed finding to the expert panel (合议).
    Escalate,
    PanelUphold,
    PanelWithdraw,
    /// 扣款 with an amount.
    Deduct,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Confirm,
        Action::Dismiss,
        Action::Appeal,
        Action::Accept,
        Action::Uphold,
        Action::Withdraw,
        Action::Escalate,
        Action::PanelUphold,
        Action::PanelWithdraw,
        Action::Deduct,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Action::Confirm => "confirm",
            Action::Dismiss => "dismiss",
            Action::Appeal => "appeal",
            Action::Accept => "accept",
            Action::Uphold => "uphold",
            Action::Withdraw => "withdraw",
            Action::Escalate => "escalate",
            Action::PanelUphold => "panel_uphold",
            Action::PanelWithdraw => "panel_withdraw",
            Action::Deduct => "deduct",
        }
    }

    pub fn parse(code: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.code() == code)
    }
}

/// Why an action is refused. Each is shown to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("a {role} may not {action}")]
    Forbidden {
        role: &'static str,
        action: &'static str,
    },
    #[error("a finding that is `{status}` cannot be given `{action}`")]
    WrongStatus {
        status: String,
        action: &'static str,
    },
    #[error("this finding belongs to another hospital")]
    OtherHospital,
    #[error("a reason is required (at least 4 characters)")]
    NoReason,
    #[error("the appeal deadline passed on {deadline}")]
    DeadlinePassed { deadline: String },
    #[error("the hospital may still appeal until {deadline}")]
    DeadlineOpen { deadline: String },
    #[error("the deduction must be between 0.01 and {max_yuan} yuan")]
    BadAmount { max_yuan: String },
}

/// Everything the decision needs, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub action: Action,
    pub role: Role,
    /// The actor's hospital (hospital users).
    pub actor_hospital: Option<&'a str>,
    pub finding_status: &'a str,
    pub finding_hospital: Option<&'a str>,
    pub finding_amount_fen: u64,
    pub reason: &'a str,
    pub amount_fen: Option<u64>,
    /// When the hospital was notified (the `confirm` event), if it was.
    pub notified_at_ms: Option<i64>,
    pub appeal_days: u32,
    pub now_ms: i64,
}

/// The appeal deadline after a notification.
pub fn appeal_deadline_ms(notified_at_ms: i64, appeal_days: u32) -> i64 {
    notified_at_ms + i64::from(appeal_days) * 86_400_000
}

fn day(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Decides an action: the status it leads to, or why not.
pub fn decide(r: &Request<'_>) -> Result<&'static str, WorkflowError> {
    use Action::*;
    let allowed = match r.action {
        Confirm | Dismiss | Uphold | Withdraw | Escalate | Deduct => r.role.is_fund_auditor(),
        PanelUphold | PanelWithdraw => r.role == Role::SeniorAuditor,
        Appeal | Accept => r.role == Role::Hospital,
    };
    if !allowed {
        return Err(WorkflowError::Forbidden {
            role: r.role.code(),
            action: r.action.code(),
        });
    }
    if r.role == Role::Hospital
        && (r.actor_hospital.is_none() || r.actor_hospital != r.finding_hospital)
    {
        return Err(WorkflowError::OtherHospital);
    }
    if r.reason.trim().chars().count() < 4 {
        return Err(WorkflowError::NoReason);
    }
    let wrong = || WorkflowError::WrongStatus {
        status: r.finding_status.to_owned(),
        action: r.action.code(),
    };
    let deadline = r
        .notified_at_ms
        .map(|t| appeal_deadline_ms(t, r.appeal_days));
    let to = match (r.action, r.finding_status) {
        (Confirm, "open") => "notified",
        (Dismiss, "open") => "dismissed",
        (Appeal, "notified") => {
            if let Some(d) = deadline
                && r.now_ms > d
            {
                return Err(WorkflowError::DeadlinePassed { deadline: day(d) });
            }
            "appealed"
        }
        (Accept, "notified") => "upheld",
        (Uphold, "appealed") => "upheld",
        (Withdraw, "appealed") => "withdrawn",
        (Escalate, "appealed") => "panel",
        (PanelUphold, "panel") => "upheld",
        (PanelWithdraw, "panel") => "withdrawn",
        (Deduct, "upheld") | (Deduct, "notified") => {
            if r.finding_status == "notified"
                && let Some(d) = deadline
                && r.now_ms <= d
            {
                return Err(WorkflowError::DeadlineOpen { deadline: day(d) });
            }
            let max = r.finding_amount_fen;
            match r.amount_fen {
                Some(a) if a >= 1 && a <= max => {}
                _ => {
                    return Err(WorkflowError::BadAmount {
                        max_yuan: format!("{}.{:02}", max / 100, max % 100),
                    });
                }
            }
            "deducted"
        }
        _ => return Err(wrong()),
    };
    Ok(to)
}

/// What an insured person's number looks like to someone who has not
/// revealed it: the first four and last two characters.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..4].iter().collect();
    out.push_str(&"*".repeat(chars.len() - 6));
    out.extend(&chars[chars.len() - 2..]);
    out
}

/// A name masked: the family name (first character) kept.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => {
            let rest = chars.count();
            format!("{first}{}", "*".repeat(rest.max(1)))
        }
        None => String::new(),
    }
}

/// Hashes a password (argon2id, random salt) as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    use argon2::PasswordHasher;
    check_password_strength(password)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// Whether `password` matches a stored PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least 10 characters")]
    TooShort,
    #[error("the password could not be hashed")]
    Hashing,
}

pub fn check_password_strength(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < 10 {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// Failed logins in a row before an account locks, and for how long.
pub const MAX_FAILED_LOGINS: u32 = 5;
pub const LOCK_MS: i64 = 15 * 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: Action, role: Role, status: &'static str) -> Request<'static> {
        Request {
            action,
            role,
            actor_hospital: (role == Role::Hospital).then_some("H51010400003"),
            finding_status: status,
            finding_hospital: Some("H51010400003"),
            finding_amount_fen: 50_000,
            reason: "no attested session",
            amount_fen: Some(50_000),
            notified_at_ms: Some(0),
            appeal_days: 15,
            now_ms: 16 * 86_400_000,
        }
    }

    #[test]
    fn the_whole_path_through_appeal_and_panel() {
        assert_eq!(
            decide(&req(Action::Confirm, Role::Auditor, "open")),
            Ok("notified")
        );
        let mut appeal = req(Action::Appeal, Role::Hospital, "notified");
        appeal.now_ms = 86_400_000;
        assert_eq!(decide(&appeal), Ok("appealed"));
        assert_eq!(
            decide(&req(Action::Escalate, Role::Auditor, "appealed")),
            Ok("panel")
        );
        assert_eq!(
            decide(&req(Action::PanelUphold, Role::SeniorAuditor, "panel")),
            Ok("upheld")
        );
        assert_eq!(
            decide(&req(Action::Deduct, Role::Auditor, "upheld")),
            Ok("deducted")
        );
    }

    #[test]
    fn roles_hospitals_deadlines_and_amounts_are_enforced() {
        assert!(matches!(
            decide(&req(Action::Confirm, Role::Hospital, "open")),
            Err(WorkflowError::Forbidden { .. })
        ));
        assert!(matches!(
            decide(&req(Action::PanelUphold, Role::Auditor, "panel")),
            Err(WorkflowError::Forbidden { .. })
        ));
        assert!(matches!(
            decide(&req(Action::Confirm, Role::Admin, "open")),
            Err(WorkflowError::Forbidden { .. })
        ));
        let mut other = req(Action::Appeal, Role::Hospital, "notified");
        other.actor_hospital = Some("H51010400009");
        assert_eq!(decide(&other), Err(WorkflowError::OtherHospital));
        // 16 days after notification with a 15-day window.
        assert!(matches!(
            decide(&req(Action::Appeal, Role::Hospital, "notified")),
            Err(WorkflowError::DeadlinePassed { .. })
        ));
        let mut early = req(Action::Deduct, Role::Auditor, "notified");
        early.now_ms = 86_400_000;
        assert!(matches!(
            decide(&early),
            Err(WorkflowError::DeadlineOpen { .. })
        ));
        assert_eq!(
            decide(&req(Action::Deduct, Role::Auditor, "notified")),
            Ok("deducted")
        );
        let mut too_much = req(Action::Deduct, Role::Auditor, "upheld");
        too_much.amount_fen = Some(50_001);
        assert!(matches!(
            decide(&too_much),
            Err(WorkflowError::BadAmount { .. })
        ));
        let mut no_reason = req(Action::Dismiss, Role::Auditor, "open");
        no_reason.reason = "  ";
        assert_eq!(decide(&no_reason), Err(WorkflowError::NoReason));
        assert!(matches!(
            decide(&req(Action::Dismiss, Role::Auditor, "deducted")),
            Err(WorkflowError::WrongStatus { .. })
        ));
    }

    #[test]
    fn masking_keeps_only_the_edges() {
        assert_eq!(mask_id("P5101000001234"), "P510********34");
        assert_eq!(mask_id("12345"), "*****");
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("李"), "李*");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert_eq!(hash_password("short"), Err(PasswordError::TooShort));
    }
}
