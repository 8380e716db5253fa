//! The auditor application: the page (`ui/`, one HTML shell, plain
//! JavaScript, no build step) and its JSON API under `/api/v1/app/`.
//!
//! Security model (docs/auditor-app.md):
//! - login with a username and an argon2id-hashed password; five failures
//!   in a row lock the account for 15 minutes;
//! - the session cookie (`wuding_session`) is random, HttpOnly,
//!   SameSite=Strict and `Secure` unless the server is addressed on
//!   loopback; only its SHA-256 is stored; sessions last 8 hours;
//! - every state change needs the session's CSRF token in `X-CSRF-Token`
//!   (login needs `Content-Type: application/json`, which a cross-site form
//!   cannot send);
//! - every route checks the role (see [`ROUTE_ROLES`]); anything not
//!   allowed answers 401 (not logged in) or 403, never data;
//! - patient identifiers are masked in every answer; revealing one needs a
//!   fund role and a typed reason; case views, reveals and exports are
//!   written to the audit trail.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wuding_protocol::{
    ClaimLine, Envelope, Record, RecordId, RecordType, SessionRecord, TerminalKey, TreatmentPlan,
};
use wuding_rules::fivefixed::{self, ServiceFacts};

use crate::casework::{self, Action, Role};
use crate::http::{AppError, AppState, ServerOptions, blocking};
use crate::store::{
    AuditEntry, FindingEvent, FindingQuery, FindingRow, HospitalMonth, PatientMonth, PatientQuery,
    RecordRow, RulesetVersion, Store, UserRow, WebSession,
};

const COOKIE: &str = "wuding_session";
const SESSION_MS: i64 = 8 * 3_600_000;
/// Default appeal window when the `appeal_days` setting is absent.
pub const DEFAULT_APPEAL_DAYS: u32 = 15;
/// Largest appeal attachment.
pub const MAX_ATTACHMENT_BYTES: usize = 4 * 1024 * 1024;

/// The shipped rules, as the rule engine itself loads them.
const DEFAULT_RULES_TOML: &str = include_str!("../../protocol/rules/rules/default.toml");
const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Who may call each route (`*` = anyone, `user` = any logged-in user).
/// The role x route test walks this table.
pub const ROUTE_ROLES: &[(&str, &str, &str)] = &[
    ("GET", "/", "*"),
    ("GET", "/app.js", "*"),
    ("GET", "/app.css", "*"),
    ("POST", "/api/v1/app/login", "*"),
    ("POST", "/api/v1/app/logout", "user"),
    ("GET", "/api/v1/app/me", "user"),
    (
        "GET",
        "/api/v1/app/dashboard",
        "auditor,senior_auditor,hospital",
    ),
    (
        "GET",
        "/api/v1/app/findings",
        "auditor,senior_auditor,hospital",
    ),
    (
        "GET",
        "/api/v1/app/findings/{id}",
        "auditor,senior_auditor,hospital",
    ),
    (
        "POST",
        "/api/v1/app/findings/{id}/actions",
        "auditor,senior_auditor,hospital",
    ),
    (
        "POST",
        "/api/v1/app/findings/{id}/reveal",
        "auditor,senior_auditor",
    ),
    (
        "GET",
        "/api/v1/app/findings/{id}/attachments/{n}",
        "auditor,senior_auditor,hospital",
    ),
    (
        "GET",
        "/api/v1/app/findings/{id}/evidence",
        "auditor,senior_auditor,hospital",
    ),
    (
        "GET",
        "/api/v1/app/patients",
        "auditor,senior_auditor,hospital",
    ),
    (
        "GET",
        "/api/v1/app/patients/{ref}",
        "auditor,senior_auditor,hospital",
    ),
    (
        "GET",
        "/api/v1/app/records/{id}",
        "auditor,senior_auditor,hospital",
    ),
    ("GET", "/api/v1/app/export", "auditor,senior_auditor"),
    ("GET", "/api/v1/app/rules", "auditor,senior_auditor,admin"),
    ("POST", "/api/v1/app/rules/whatif", "auditor,senior_auditor"),
    ("POST", "/api/v1/app/rules", "senior_auditor"),
    (
        "GET",
        "/api/v1/app/terminals",
        "auditor,senior_auditor,admin",
    ),
    ("POST", "/api/v1/app/terminals/{id}/approve", "admin"),
    ("POST", "/api/v1/app/terminals/{id}/revoke", "admin"),
    ("GET", "/api/v1/app/users", "admin"),
    ("POST", "/api/v1/app/users", "admin"),
    ("GET", "/api/v1/app/audit", "admin"),
];

/// The application's routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/api/v1/app/login", post(login))
        .route("/api/v1/app/logout", post(logout))
        .route("/api/v1/app/me", get(me))
        .route("/api/v1/app/dashboard", get(dashboard))
        .route("/api/v1/app/findings", get(findings))
        .route("/api/v1/app/findings/{id}", get(case))
        .route("/api/v1/app/findings/{id}/actions", post(act))
        .route("/api/v1/app/findings/{id}/reveal", post(reveal))
        .route("/api/v1/app/findings/{id}/attachments/{n}", get(attachment))
        .route("/api/v1/app/findings/{id}/evidence", get(evidence))
        .route("/api/v1/app/patients", get(patients))
        .route("/api/v1/app/patients/{ref}", get(patient))
        .route("/api/v1/app/records/{id}", get(record_page))
        .route("/api/v1/app/export", get(export))
        .route("/api/v1/app/rules", get(rules).post(save_rules))
        .route("/api/v1/app/rules/whatif", post(rules_whatif))
        .route("/api/v1/app/terminals", get(terminals))
        .route("/api/v1/app/terminals/{id}/approve", post(approve))
        .route("/api/v1/app/terminals/{id}/revoke", post(revoke))
        .route("/api/v1/app/users", get(users).post(add_user_route))
        .route("/api/v1/app/audit", get(audit_trail))
}

// ---------------------------------------------------------------- users

/// Creates a user (the CLI's `user add`, the admin page, the demo).
pub fn add_user(
    store: &dyn Store,
    username: &str,
    display_name: &str,
    role: Role,
    hospital_code: Option<&str>,
    password: &str,
    now_ms: i64,
) -> Result<UserRow, AppError> {
    let username = username.trim();
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(bad(
            "bad_username",
            "a username is 1-64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    match (role, hospital_code) {
        (Role::Hospital, None) => {
            return Err(bad(
                "hospital_required",
                "a hospital user needs the hospital code of its institution",
            ));
        }
        (Role::Hospital, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            return Err(bad(
                "hospital_not_allowed",
                "only hospital users belong to a hospital",
            ));
        }
    }
    let password_hash =
        casework::hash_password(password).map_err(|e| bad("weak_password", e.to_string()))?;
    let user = UserRow {
        username: username.to_owned(),
        display_name: display_name.trim().to_owned(),
        role: role.code().to_owned(),
        hospital_code: hospital_code.map(str::to_owned),
        password_hash,
        failed_logins: 0,
        locked_until_ms: None,
        created_at_ms: now_ms,
    };
    store.add_user(&user)?;
    Ok(user)
}

fn bad(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn forbidden(message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn not_logged_in() -> AppError {
    AppError::new(StatusCode::UNAUTHORIZED, "login_required", "please log in")
}

// ---------------------------------------------------------------- sessions

/// The logged-in user of a request.
#[derive(Clone)]
struct Caller {
    user: UserRow,
    role: Role,
    session: WebSession,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Finds the caller, checks the role against `allowed`, and for a state
/// change the CSRF token.
fn caller(
    store: &dyn Store,
    headers: &HeaderMap,
    now_ms: i64,
    allowed: &[Role],
    state_change: bool,
) -> Result<Caller, AppError> {
    let token = cookie_value(headers).ok_or_else(not_logged_in)?;
    let session = store
        .web_session(&token_hash(&token), now_ms)?
        .ok_or_else(not_logged_in)?;
    let user = store.user(&session.username)?.ok_or_else(not_logged_in)?;
    let role = Role::parse(&user.role).ok_or_else(not_logged_in)?;
    if state_change {
        let offered = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(offered, &session.csrf_token) {
            return Err(forbidden(
                "missing or wrong X-CSRF-Token; reload the page and try again",
            ));
        }
    }
    if !allowed.contains(&role) {
        return Err(forbidden(format!(
            "a {} may not use this page",
            role.code()
        )));
    }
    Ok(Caller {
        user,
        role,
        session,
    })
}

const FUND: &[Role] = &[Role::Auditor, Role::SeniorAuditor];
const CASE_ROLES: &[Role] = &[Role::Auditor, Role::SeniorAuditor, Role::Hospital];
const ANY: &[Role] = &Role::ALL;

fn audit(store: &dyn Store, c: &Caller, action: &str, subject: &str, reason: &str, now: i64) {
    let entry = AuditEntry {
        at_ms: now,
        actor: c.user.username.clone(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        reason: reason.to_owned(),
    };
    if let Err(e) = store.audit(&entry) {
        tracing::error!(error = %e, action, "writing the audit trail failed");
    }
}

// ---------------------------------------------------------------- static

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

// ---------------------------------------------------------------- login

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

fn is_loopback(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_required",
            "log in with a JSON body",
        ));
    }
    let req: LoginBody =
        serde_json::from_slice(&body).map_err(|e| bad("bad_body", e.to_string()))?;
    let secure = !is_loopback(&headers);
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let wrong = || {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "wrong_login",
                "wrong username or password",
            )
        };
        let trail = |who: &str, action: &str, reason: &str| {
            let _ = store.audit(&AuditEntry {
                at_ms: now,
                actor: who.to_owned(),
                action: action.to_owned(),
                subject: who.to_owned(),
                reason: reason.to_owned(),
            });
        };
        let Some(user) = store.user(&req.username)? else {
            // Spend the same time as a real check, so names cannot be probed.
            let _ = casework::verify_password(&req.password, DUMMY_HASH);
            return Err(wrong());
        };
        if let Some(until) = user.locked_until_ms
            && until > now
        {
            trail(&user.username, "login_refused", "account locked");
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "locked",
                format!(
                    "too many failed logins; the account is locked for {} more minutes",
                    (until - now + 59_999) / 60_000
                ),
            ));
        }
        if !casework::verify_password(&req.password, &user.password_hash) {
            let failed = user.failed_logins + 1;
            let lock = (failed >= casework::MAX_FAILED_LOGINS).then_some(now + casework::LOCK_MS);
            store.set_login_state(
                &user.username,
                if lock.is_some() { 0 } else { failed },
                lock,
            )?;
            trail(
                &user.username,
                "login_failed",
                if lock.is_some() {
                    "wrong password; account locked"
                } else {
                    "wrong password"
                },
            );
            return Err(wrong());
        }
        store.set_login_state(&user.username, 0, None)?;
        let token = random_hex(32);
        let session = WebSession {
            token_hash: token_hash(&token),
            username: user.username.clone(),
            csrf_token: random_hex(16),
            created_at_ms: now,
            expires_at_ms: now + SESSION_MS,
        };
        store.put_web_session(&session)?;
        trail(&user.username, "login", "");
        let cookie = format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            SESSION_MS / 1000,
            if secure { "; Secure" } else { "" }
        );
        let body = json!({
            "user": user,
            "csrf_token": session.csrf_token,
        });
        Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
    })
    .await
}

/// An argon2id hash of a random password, checked against when the user
/// does not exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$V3+0l8rdsLFdYm5l8Uvn7XvF2gF7nG5bG1qJrCq2W8Y";

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, ANY, true)?;
        store.end_web_session(&c.session.token_hash)?;
        audit(&*store, &c, "logout", &c.user.username, "", now);
        Ok((
            [(
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
            )],
            Json(json!({"logged_out": true})),
        )
            .into_response())
    })
    .await
}

async fn me(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, ANY, false)?;
        Ok(Json(json!({
            "user": c.user,
            "csrf_token": c.session.csrf_token,
            "appeal_days": appeal_days(&*store)?,
        })))
    })
    .await
}

fn appeal_days(store: &dyn Store) -> Result<u32, AppError> {
    Ok(store
        .setting("appeal_days")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_APPEAL_DAYS))
}

// ---------------------------------------------------------------- findings

/// A finding as the application shows it: identifiers masked.
fn masked(f: &FindingRow) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    if let Some(id) = &f.insured_id {
        v["insured_id"] = json!(casework::mask_id(id));
    }
    if f.subject_id
        .contains(f.insured_id.as_deref().unwrap_or("\u{0}"))
    {
        let id = f.insured_id.as_deref().unwrap_or_default();
        v["subject_id"] = json!(f.subject_id.replace(id, &casework::mask_id(id)));
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    from: Option<String>,
    to: Option<String>,
    severity: Option<String>,
    rule: Option<String>,
    status: Option<String>,
    /// A hospital code or a region prefix (`H5101`, `H510104`).
    hospital: Option<String>,
    /// A patient's opaque reference (the drill-down's patient level).
    patient: Option<String>,
    sort: Option<String>,
    page: Option<u64>,
    per_page: Option<u64>,
    format: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn check_filter(q: &ListQuery) -> Result<(), AppError> {
    for d in [&q.from, &q.to].into_iter().flatten() {
        if !d.is_empty() {
            crate::reconcile::parse_date(d).map_err(|e| bad("bad_date", e.to_string()))?;
        }
    }
    if let Some(s) = non_empty(&q.severity)
        && !["red", "yellow", "green"].contains(&s.as_str())
    {
        return Err(bad("bad_severity", "severity is red, yellow or green"));
    }
    if let Some(s) = non_empty(&q.status)
        && !casework::STATUSES.contains(&s.as_str())
    {
        return Err(bad(
            "bad_status",
            format!("status is one of {}", casework::STATUSES.join(", ")),
        ));
    }
    Ok(())
}

fn finding_query(q: &ListQuery, c: &Caller) -> FindingQuery {
    let per_page = q.per_page.unwrap_or(50).clamp(1, 500);
    let mut fq = FindingQuery {
        from: non_empty(&q.from),
        to: non_empty(&q.to),
        severity: non_empty(&q.severity),
        rule_id: non_empty(&q.rule),
        status: non_empty(&q.status),
        hospital_prefix: non_empty(&q.hospital),
        insured_id: None,
        visible_statuses: Vec::new(),
        sort: q.sort.clone().unwrap_or_default(),
        offset: q.page.unwrap_or(0).saturating_mul(per_page),
        limit: per_page,
    };
    if c.role == Role::Hospital {
        // Its own institution, and only what the fund has told it about.
        fq.hospital_prefix = c.user.hospital_code.clone();
        fq.visible_statuses = casework::HOSPITAL_VISIBLE
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    fq
}

/// The checked filter of a findings list or export, a patient reference
/// resolved.
fn list_query(store: &dyn Store, q: &ListQuery, c: &Caller) -> Result<FindingQuery, AppError> {
    check_filter(q)?;
    let mut fq = finding_query(q, c);
    if let Some(r) = non_empty(&q.patient) {
        fq.insured_id = Some(patient_of(store, c, &r)?.0);
    }
    Ok(fq)
}

async fn findings(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, CASE_ROLES, false)?;
        let fq = list_query(&*store, &q, &c)?;
        let page = store.finding_page(&fq)?;
        Ok(Json(json!({
            "total": page.total,
            "total_fen": page.total_fen,
            "by_severity": page.by_severity.iter().map(|(k, (n, fen))| (k.clone(), json!({"findings": n, "amount_fen": fen}))).collect::<serde_json::Map<_, _>>(),
            "page": fq.offset / fq.limit,
            "per_page": fq.limit,
            "rows": page.rows.iter().map(masked).collect::<Vec<_>>(),
        })))
    })
    .await
}

/// The finding if the caller may see it (hospital users: their own,
/// notified ones); 404 otherwise, so ids cannot be probed.
fn visible_finding(store: &dyn Store, c: &Caller, id: &str) -> Result<FindingRow, AppError> {
    let not_found = || AppError::new(StatusCode::NOT_FOUND, "not_found", "no such finding");
    let f = store.finding(id)?.ok_or_else(not_found)?;
    if c.role == Role::Hospital
        && (f.hospital_code.is_none()
            || f.hospital_code != c.user.hospital_code
            || !casework::HOSPITAL_VISIBLE.contains(&f.status.as_str()))
    {
        return Err(not_found());
    }
    Ok(f)
}

/// One record of a case, checked: signature under the registered key,
/// chain position, inclusion in the transparency log.
fn checked_record(s: &AppState, id_hex: &str, now: i64) -> Result<Value, AppError> {
    let Ok(bytes) = hex::decode(id_hex) else {
        return Ok(json!({"record_id": id_hex, "found": false}));
    };
    let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return Ok(json!({"record_id": id_hex, "found": false}));
    };
    let id = RecordId(arr);
    let Some((row, log_index)) = s.store.record(&id)? else {
        return Ok(json!({"record_id": id_hex, "found": false}));
    };
    let terminal = s.store.terminal(&row.terminal_id)?;
    let record_type = if row.record_type == "session" {
        RecordType::Session
    } else {
        RecordType::Enrolment
    };
    let envelope = Envelope {
        record_type,
        key_id: match terminal
            .as_ref()
            .and_then(|t| TerminalKey::from_bytes(&t.public_key).ok())
        {
            Some(k) => k.id(),
            None => return Ok(json!({"record_id": id_hex, "found": true, "signature_ok": false})),
        },
        payload: row.payload.clone(),
        signature: row.signature,
    };
    let key = terminal
        .as_ref()
        .and_then(|t| TerminalKey::from_bytes(&t.public_key).ok());
    let verified = key.as_ref().map(|k| envelope.verify(k));
    let signature_ok = matches!(verified, Some(Ok(_)));
    let receipt = s.log.receipts(&[(id, log_index)], now).pop();
    let inclusion_ok = receipt
        .as_ref()
        .is_some_and(|r| r.verify(s.log.public_key()));
    let mut record = match envelope.decode() {
        Ok(v) => match v.record {
            Record::Session(sr) => serde_json::to_value(&sr).unwrap_or_default(),
            Record::Enrolment(er) => serde_json::to_value(&er).unwrap_or_default(),
        },
        Err(_) => Value::Null,
    };
    if let Some(p) = record.get_mut("patient") {
        if let Some(id) = p.get("insured_id").and_then(|v| v.as_str()) {
            p["insured_id"] = json!(casework::mask_id(id));
        }
        if let Some(uid) = p.get("card_uid").and_then(|v| v.as_str()) {
            p["card_uid"] = json!(casework::mask_id(uid));
        }
    }
    Ok(json!({
        "record_id": id_hex,
        "found": true,
        "terminal_id": row.terminal_id,
        "seq": row.seq,
        "log_index": log_index,
        "signed_at_ms": row.signed_at_ms,
        "received_at_ms": row.received_at_ms,
        "signature_ok": signature_ok,
        "key_status": terminal.as_ref().map(|t| t.status.clone()),
        "inclusion_ok": inclusion_ok,
        "checkpoint": receipt.map(|r| r.checkpoint),
        "record": record,
    }))
}

fn month_bounds(date: &str) -> (String, String) {
    let month = &date[..7.min(date.len())];
    (format!("{month}-01"), format!("{month}-31"))
}

async fn case(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    blocking(move || {
        let store = &*s.store;
        let c = caller(store, &headers, now, CASE_ROLES, false)?;
        let f = visible_finding(store, &c, &id)?;
        audit(store, &c, "view_case", &f.id, "", now);
        let records = f
            .record_ids
            .iter()
            .map(|r| checked_record(&s, r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let claim_lines = store.claim_lines(&f.claim_ids)?;
        let claims: Vec<Value> = claim_lines
            .iter()
            .map(|l| {
                json!({
                    "id": l.claim_id,
                    "date": l.service_date.to_string(),
                    "kind": l.service_kind.code(),
                    "hospital_code": l.hospital_code,
                    "department_code": l.department_code,
                    "doctor_id": l.doctor_id,
                    "service_code": l.service_code,
                    "quantity": l.quantity,
                    "drug_code": l.drug_code,
                    "dose": l.dose.as_ref().map(|d| d.to_string()),
                    "amount_fen": l.amount_fen,
                })
            })
            .collect();
        let mut calendar = Vec::new();
        if let (Some(patient), Some(date)) = (&f.insured_id, &f.service_date) {
            let (from, to) = month_bounds(date);
            calendar = store.patient_calendar(patient, &from, &to)?;
        }
        let plans = match &f.insured_id {
            Some(p) => plans_of(store, p)?,
            None => Vec::new(),
        };
        let mut sessions = Vec::new();
        for r in &f.record_ids {
            if let Some((_, session)) = session_of(store, r)? {
                sessions.push((r.clone(), session));
            }
        }
        let rules = active_rules(store, &options)?;
        let plan_checks = if plans.is_empty() {
            Vec::new()
        } else {
            plan_checks(&rules, &plans, &sessions, &claim_lines)
        };
        let patient_ref = match &f.insured_id {
            Some(p) => {
                let key = crate::reconcile::patient_ref_key(store)
                    .map_err(|e| bad("patient_ref", e.to_string()))?;
                Some(crate::reconcile::patient_ref(&key, p))
            }
            None => None,
        };
        let plans: Vec<Value> = plans.iter().map(masked_plan).collect();
        let events = store.finding_events(&f.id)?;
        let notified_at = events
            .iter()
            .find(|e| e.action == "confirm")
            .map(|e| e.at_ms);
        let days = appeal_days(store)?;
        let actions: Vec<&str> = Action::ALL
            .into_iter()
            .filter(|a| {
                casework::decide(&casework::Request {
                    action: *a,
                    role: c.role,
                    actor_hospital: c.user.hospital_code.as_deref(),
                    finding_status: &f.status,
                    finding_hospital: f.hospital_code.as_deref(),
                    finding_amount_fen: f.amount_fen,
                    reason: "probe",
                    amount_fen: Some(f.amount_fen.max(1)),
                    notified_at_ms: notified_at,
                    appeal_days: days,
                    now_ms: now,
                })
                .is_ok()
            })
            .map(Action::code)
            .collect();
        Ok(Json(json!({
            "finding": masked(&f),
            "records": records,
            "claims": claims,
            "calendar": calendar.iter().map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["mine"] = json!(f.claim_ids.contains(&e.id) || f.record_ids.contains(&e.id));
                v
            }).collect::<Vec<_>>(),
            "plans": plans,
            "plan_checks": plan_checks,
            "patient_ref": patient_ref,
            "events": events,
            "appeal_deadline_ms": notified_at.map(|t| casework::appeal_deadline_ms(t, days)),
            "actions": actions,
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action: String,
    reason: String,
    amount_fen: Option<u64>,
    attachment_name: Option<String>,
    /// Base64 of the attachment's bytes.
    attachment_base64: Option<String>,
}

async fn act(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    blocking(move || {
        let store = &*s.store;
        let c = caller(store, &headers, now, CASE_ROLES, true)?;
        let req: ActionBody =
            serde_json::from_slice(&body).map_err(|e| bad("bad_body", e.to_string()))?;
        let action = Action::parse(&req.action).ok_or_else(|| {
            bad(
                "bad_action",
                format!("`{}` is not a workflow action", req.action),
            )
        })?;
        let f = visible_finding(store, &c, &id)?;
        let events = store.finding_events(&f.id)?;
        let notified_at = events
            .iter()
            .find(|e| e.action == "confirm")
            .map(|e| e.at_ms);
        let days = appeal_days(store)?;
        let to = casework::decide(&casework::Request {
            action,
            role: c.role,
            actor_hospital: c.user.hospital_code.as_deref(),
            finding_status: &f.status,
            finding_hospital: f.hospital_code.as_deref(),
            finding_amount_fen: f.amount_fen,
            reason: &req.reason,
            amount_fen: req.amount_fen,
            notified_at_ms: notified_at,
            appeal_days: days,
            now_ms: now,
        })
        .map_err(|e| match e {
            casework::WorkflowError::Forbidden { .. } | casework::WorkflowError::OtherHospital => {
                forbidden(e.to_string())
            }
            casework::WorkflowError::WrongStatus { .. } => {
                AppError::new(StatusCode::CONFLICT, "wrong_status", e.to_string())
            }
            other => bad("refused", other.to_string()),
        })?;
        let attachment = match (&req.attachment_name, &req.attachment_base64) {
            (Some(name), Some(b64)) if action == Action::Appeal => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| bad("bad_attachment", "the attachment is not base64"))?;
                if bytes.len() > MAX_ATTACHMENT_BYTES {
                    return Err(bad(
                        "attachment_too_large",
                        format!(
                            "an attachment may be at most {} MiB",
                            MAX_ATTACHMENT_BYTES >> 20
                        ),
                    ));
                }
                let name: String = name
                    .chars()
                    .filter(|c| !c.is_control() && !"/\\".contains(*c))
                    .take(120)
                    .collect();
                Some((name, bytes))
            }
            (None, None) => None,
            _ => {
                return Err(bad(
                    "bad_attachment",
                    "only an appeal carries an attachment, with both a name and its bytes",
                ));
            }
        };
        let event = FindingEvent {
            finding_id: f.id.clone(),
            action: action.code().to_owned(),
            from_status: f.status.clone(),
            to_status: to.to_owned(),
            actor: c.user.username.clone(),
            actor_role: c.role.code().to_owned(),
            reason: req.reason.trim().to_owned(),
            amount_fen: (action == Action::Deduct)
                .then_some(req.amount_fen)
                .flatten(),
            attachment_name: attachment.as_ref().map(|(n, _)| n.clone()),
            attachment: attachment.map(|(_, b)| b),
            at_ms: now,
        };
        store.transition(&event)?;
        Ok(Json(json!({"status": to, "event": event})))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevealBody {
    reason: String,
}

async fn reveal(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, FUND, true)?;
        let req: RevealBody =
            serde_json::from_slice(&body).map_err(|e| bad("bad_body", e.to_string()))?;
        if req.reason.trim().chars().count() < 4 {
            return Err(bad(
                "reason_required",
                "say why you need the identifier (at least 4 characters)",
            ));
        }
        let f = visible_finding(&*store, &c, &id)?;
        audit(&*store, &c, "reveal", &f.id, req.reason.trim(), now);
        Ok(Json(json!({"insured_id": f.insured_id})))
    })
    .await
}

async fn attachment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, usize)>,
) -> Result<Response, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, CASE_ROLES, false)?;
        let f = visible_finding(&*store, &c, &id)?;
        let (name, bytes) = store.event_attachment(&f.id, n)?.ok_or_else(|| {
            AppError::new(StatusCode::NOT_FOUND, "not_found", "no such attachment")
        })?;
        audit(&*store, &c, "download_attachment", &f.id, &name, now);
        Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}\"", name.replace('"', "")),
                ),
            ],
            bytes,
        )
            .into_response())
    })
    .await
}

async fn evidence(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let now = (s.clock)();
    blocking(move || {
        let store = &*s.store;
        let c = caller(store, &headers, now, CASE_ROLES, false)?;
        let f = visible_finding(store, &c, &id)?;
        let bytes = crate::evidence::bundle_for_findings(
            store,
            &s.log,
            std::slice::from_ref(&f.id),
            &c.user.username,
            now,
        )
        .map_err(|e| bad("evidence", e.to_string()))?;
        audit(store, &c, "export_evidence", &f.id, "", now);
        Ok((
            [
                (header::CONTENT_TYPE, "application/zip".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"evidence-{}.zip\"", f.id),
                ),
            ],
            bytes,
        )
            .into_response())
    })
    .await
}

async fn export(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, FUND, false)?;
        let mut fq = list_query(&*store, &q, &c)?;
        fq.offset = 0;
        fq.limit = 1_000_000;
        let rows = store.finding_page(&fq)?.rows;
        let masked_rows: Vec<FindingRow> = rows
            .into_iter()
            .map(|mut f| {
                if let Some(id) = &f.insured_id {
                    let m = casework::mask_id(id);
                    f.subject_id = f.subject_id.replace(id.as_str(), &m);
                    f.insured_id = Some(m);
                }
                f
            })
            .collect();
        let format = q.format.clone().unwrap_or_else(|| "csv".into());
        audit(
            &*store,
            &c,
            "export_findings",
            &format!("{} findings as {format}", masked_rows.len()),
            "",
            now,
        );
        match format.as_str() {
            "csv" => {
                let mut out = Vec::new();
                crate::export::findings_csv(&masked_rows, &mut out)
                    .map_err(|e| bad("export", e.to_string()))?;
                Ok((
                    [
                        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"findings.csv\"",
                        ),
                    ],
                    out,
                )
                    .into_response())
            }
            "xlsx" => {
                let out = crate::export::findings_xlsx(&masked_rows)
                    .map_err(|e| bad("export", e.to_string()))?;
                Ok((
                    [
                        (
                            header::CONTENT_TYPE,
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        ),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"findings.xlsx\"",
                        ),
                    ],
                    out,
                )
                    .into_response())
            }
            other => Err(bad(
                "bad_format",
                format!("format `{other}`: use csv or xlsx"),
            )),
        }
    })
    .await
}

// ---------------------------------------------------------------- patients and records

/// The plans of one patient, identifiers masked for display.
fn plans_of(store: &dyn Store, insured_id: &str) -> Result<Vec<TreatmentPlan>, AppError> {
    Ok(store
        .roster_bodies("plan")?
        .iter()
        .filter_map(|b| serde_json::from_str::<TreatmentPlan>(b).ok())
        .filter(|p| p.insured_id == insured_id)
        .collect())
}

fn masked_plan(p: &TreatmentPlan) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    v["insured_id"] = json!(casework::mask_id(&p.insured_id));
    v
}

/// The 五定 plan against what happened, item by item, with the engine's
/// own judgement (`fivefixed::plan_lines`); `plan_id` null when no plan
/// was in force on the date.
fn plan_check(
    rules: &wuding_rules::Ruleset,
    plans: &[TreatmentPlan],
    source: &str,
    id: &str,
    facts: &ServiceFacts<'_>,
) -> Value {
    let plans: Vec<&TreatmentPlan> = plans.iter().collect();
    let (plan_id, lines) = match fivefixed::plan_lines(rules, &plans, facts) {
        Some((p, lines)) => (Some(p.plan_id.clone()), lines),
        None => (None, Vec::new()),
    };
    json!({
        "source": source,
        "id": id,
        "date": facts.date.to_string(),
        "plan_id": plan_id,
        "lines": lines.iter().map(|l| json!({
            "item": l.item,
            "rule": l.rule.code(),
            "planned": l.planned,
            "actual": l.actual,
            "ok": l.breach.is_none(),
            "breach_zh": l.breach.as_ref().map(|b| b.zh.clone()),
            "breach_en": l.breach.as_ref().map(|b| b.en.clone()),
        })).collect::<Vec<_>>(),
    })
}

/// Plan checks of a session record (as stored) and of claim lines.
fn plan_checks(
    rules: &wuding_rules::Ruleset,
    plans: &[TreatmentPlan],
    sessions: &[(String, SessionRecord)],
    claims: &[ClaimLine],
) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, r) in sessions {
        let Some(date) = wuding_rules::local_date(r.check_in.at_ms, r.utc_offset_min) else {
            continue;
        };
        let facts = ServiceFacts {
            hospital_code: &r.hospital_code,
            department_code: &r.department_code,
            doctor_id: &r.doctor_id,
            kind: r.treatment.kind,
            drug_code: r.treatment.drug_code.as_deref(),
            dose: r.treatment.dose.as_ref(),
            date,
        };
        out.push(plan_check(rules, plans, "attested", id, &facts));
    }
    for c in claims {
        let facts = ServiceFacts {
            hospital_code: &c.hospital_code,
            department_code: &c.department_code,
            doctor_id: &c.doctor_id,
            kind: c.service_kind,
            drug_code: c.drug_code.as_deref(),
            dose: c.dose.as_ref(),
            date: c.service_date,
        };
        out.push(plan_check(rules, plans, "claimed", &c.claim_id, &facts));
    }
    out
}

/// The session record with this id, decoded (None for enrolments and
/// unknown ids).
fn session_of(
    store: &dyn Store,
    id_hex: &str,
) -> Result<Option<(RecordRow, SessionRecord)>, AppError> {
    let Some(id) = hex::decode(id_hex)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    else {
        return Ok(None);
    };
    let Some((row, _)) = store.record(&RecordId(id))? else {
        return Ok(None);
    };
    Ok(match Record::decode(&row.payload) {
        Ok(Record::Session(r)) => Some((row, r)),
        _ => None,
    })
}

/// A patient the caller may see, by reference: the insured id and the
/// months (a hospital user: only at its institution). 404 otherwise.
fn patient_of(
    store: &dyn Store,
    c: &Caller,
    patient_ref: &str,
) -> Result<(String, Vec<PatientMonth>), AppError> {
    let not_found = || AppError::new(StatusCode::NOT_FOUND, "not_found", "no such patient");
    let mut months = store.patient_months_of(patient_ref)?;
    if c.role == Role::Hospital {
        months.retain(|m| Some(&m.figures.hospital_code) == c.user.hospital_code.as_ref());
    }
    let id = months.first().ok_or_else(not_found)?.insured_id.clone();
    Ok((id, months))
}

fn patient_json(p: &PatientMonth) -> Value {
    let mut v = figures(&p.figures);
    v["patient_ref"] = json!(p.patient_ref);
    v["insured_id"] = json!(casework::mask_id(&p.insured_id));
    v["hospital_code"] = json!(p.figures.hospital_code);
    v["month"] = json!(p.figures.month);
    v
}

fn check_month(m: &str) -> Result<(), AppError> {
    if m.len() == 7 && crate::reconcile::parse_date(&format!("{m}-01")).is_ok() {
        Ok(())
    } else {
        Err(bad("bad_month", format!("`{m}` is not a month (YYYY-MM)")))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PatientsQuery {
    /// A region prefix or hospital code.
    region: Option<String>,
    /// `YYYY-MM`.
    from: Option<String>,
    to: Option<String>,
    /// attested, claimed, phantom or amount (default).
    sort: Option<String>,
    page: Option<u64>,
}

/// The drill-down's patient level: the patients of a region or hospital
/// with their sessions, claims and findings, largest first.
async fn patients(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PatientsQuery>,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, CASE_ROLES, false)?;
        for m in [&q.from, &q.to].into_iter().flatten() {
            check_month(m)?;
        }
        let sort = q.sort.clone().unwrap_or_else(|| "amount".into());
        if !["amount", "attested", "claimed", "phantom"].contains(&sort.as_str()) {
            return Err(bad(
                "bad_sort",
                "sort is amount, attested, claimed or phantom",
            ));
        }
        let mut prefix = non_empty(&q.region).unwrap_or_default();
        if c.role == Role::Hospital {
            prefix = c.user.hospital_code.clone().unwrap_or_default();
        }
        let per_page = 50;
        let pq = PatientQuery {
            hospital_prefix: prefix.clone(),
            from_month: q.from.clone().unwrap_or_else(|| "0000-01".into()),
            to_month: q.to.clone().unwrap_or_else(|| "9999-12".into()),
            sort: sort.clone(),
            offset: q.page.unwrap_or(0).saturating_mul(per_page),
            limit: per_page,
        };
        let (rows, total) = store.patient_page(&pq)?;
        audit(&*store, &c, "view_patients", &prefix, "", now);
        Ok(Json(json!({
            "region": prefix,
            "sort": sort,
            "total": total,
            "page": pq.offset / per_page,
            "per_page": per_page,
            "rows": rows.iter().map(patient_json).collect::<Vec<_>>(),
        })))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PatientQueryParams {
    /// `YYYY-MM`; default: the patient's latest month.
    month: Option<String>,
}

/// One patient: months, the chosen month's calendar of attested sessions
/// and claim lines (each session links to its record), findings, plans.
async fn patient(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(patient_ref): Path<String>,
    Query(q): Query<PatientQueryParams>,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, CASE_ROLES, false)?;
        let (insured_id, months) = patient_of(&*store, &c, &patient_ref)?;
        if let Some(m) = &q.month {
            check_month(m)?;
        }
        let month = q
            .month
            .clone()
            .or_else(|| months.last().map(|m| m.figures.month.clone()))
            .unwrap_or_default();
        audit(&*store, &c, "view_patient", &patient_ref, "", now);
        let mut calendar =
            store.patient_calendar(&insured_id, &format!("{month}-01"), &format!("{month}-31"))?;
        let own = c.user.hospital_code.clone();
        if c.role == Role::Hospital {
            calendar.retain(|e| Some(&e.hospital_code) == own.as_ref());
        }
        let mut fq = FindingQuery {
            insured_id: Some(insured_id.clone()),
            sort: "date".into(),
            limit: 200,
            ..FindingQuery::default()
        };
        if c.role == Role::Hospital {
            fq.hospital_prefix = own.clone();
            fq.visible_statuses = casework::HOSPITAL_VISIBLE
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
        let findings = store.finding_page(&fq)?;
        let plans = plans_of(&*store, &insured_id)?;
        Ok(Json(json!({
            "patient_ref": patient_ref,
            "insured_id": casework::mask_id(&insured_id),
            "month": month,
            "months": months.iter().map(patient_json).collect::<Vec<_>>(),
            "calendar": calendar,
            "findings": findings.rows.iter().map(masked).collect::<Vec<_>>(),
            "findings_total": findings.total,
            "plans": plans.iter().map(masked_plan).collect::<Vec<_>>(),
        })))
    })
    .await
}

/// One record with its checks (signature, chain, log inclusion), the
/// patient it names (by reference) and its 五定 plan check.
async fn record_page(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    blocking(move || {
        let store = &*s.store;
        let c = caller(store, &headers, now, CASE_ROLES, false)?;
        let not_found = || AppError::new(StatusCode::NOT_FOUND, "not_found", "no such record");
        let Some((row, session)) = session_of(store, &id)? else {
            return Err(not_found());
        };
        if c.role == Role::Hospital && Some(&row.hospital_code) != c.user.hospital_code.as_ref() {
            return Err(not_found());
        }
        audit(store, &c, "view_record", &id, "", now);
        let checked = checked_record(&s, &id, now)?;
        let rules = active_rules(store, &options)?;
        let plans = plans_of(store, &row.insured_id)?;
        let key = crate::reconcile::patient_ref_key(store)
            .map_err(|e| bad("patient_ref", e.to_string()))?;
        Ok(Json(json!({
            "record": checked,
            "service_date": row.service_date,
            "hospital_code": row.hospital_code,
            "patient_ref": crate::reconcile::patient_ref(&key, &row.insured_id),
            "plan_checks": plan_checks(&rules, &plans, &[(id.clone(), session)], &[]),
        })))
    })
    .await
}

// ---------------------------------------------------------------- dashboard

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DashboardQuery {
    /// `YYYY-MM`; default: the last 6 months that have figures.
    from: Option<String>,
    to: Option<String>,
    /// A region or hospital prefix: `H51` (province), `H5101` (city),
    /// `H510104` (county), a hospital code.
    region: Option<String>,
}

/// The next level of a drill-down below `prefix`: province -> city ->
/// county -> hospital.
fn child_key(hospital_code: &str, prefix: &str) -> String {
    let len = match prefix.len() {
        0 => 3, // H + 2-digit province
        1..=3 => 5,
        4 | 5 => 7,
        _ => hospital_code.len(),
    };
    hospital_code.chars().take(len).collect()
}

fn add_month(total: &mut HospitalMonth, m: &HospitalMonth) {
    total.attested_sessions += m.attested_sessions;
    total.fallback_sessions += m.fallback_sessions;
    total.attested_patients += m.attested_patients;
    total.claimed_lines += m.claimed_lines;
    total.claimed_fen += m.claimed_fen;
    total.claimed_patients += m.claimed_patients;
    total.phantom_claims += m.phantom_claims;
    total.phantom_fen += m.phantom_fen;
    total.red += m.red;
    total.yellow += m.yellow;
    total.green += m.green;
    total.findings_fen += m.findings_fen;
}

fn figures(t: &HospitalMonth) -> Value {
    let rate = |a: u64, b: u64| {
        if b == 0 {
            Value::Null
        } else {
            json!(a as f64 / b as f64)
        }
    };
    json!({
        "attested_sessions": t.attested_sessions,
        "claimed_lines": t.claimed_lines,
        "claimed_fen": t.claimed_fen,
        "match_rate": rate(t.claimed_lines.saturating_sub(t.phantom_claims), t.claimed_lines),
        "phantom_claims": t.phantom_claims,
        "phantom_fen": t.phantom_fen,
        "fallback_rate": rate(t.fallback_sessions, t.attested_sessions),
        "sessions_per_patient_month": rate(t.claimed_lines, t.claimed_patients),
        "red": t.red,
        "yellow": t.yellow,
        "green": t.green,
        "findings_fen": t.findings_fen,
    })
}

async fn dashboard(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DashboardQuery>,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, CASE_ROLES, false)?;
        let month_ok = |m: &str| {
            m.len() == 7
                && crate::reconcile::parse_date(&format!("{m}-01")).is_ok()
        };
        for m in [&q.from, &q.to].into_iter().flatten() {
            if !month_ok(m) {
                return Err(bad("bad_month", format!("`{m}` is not a month (YYYY-MM)")));
            }
        }
        let from = q.from.clone().unwrap_or_else(|| "0000-01".into());
        let to = q.to.clone().unwrap_or_else(|| "9999-12".into());
        let mut prefix = q.region.clone().unwrap_or_default();
        if c.role == Role::Hospital {
            prefix = c.user.hospital_code.clone().unwrap_or_default();
        }
        let rows: Vec<HospitalMonth> = store
            .hospital_months(&from, &to)?
            .into_iter()
            .filter(|m| m.hospital_code.starts_with(&prefix))
            .collect();
        let mut total = HospitalMonth::default();
        let mut by_month: std::collections::BTreeMap<String, HospitalMonth> = Default::default();
        let mut by_child: std::collections::BTreeMap<String, HospitalMonth> = Default::default();
        let mut hospitals: std::collections::BTreeMap<String, HospitalMonth> = Default::default();
        for m in &rows {
            add_month(&mut total, m);
            add_month(by_month.entry(m.month.clone()).or_default(), m);
            add_month(
                by_child
                    .entry(child_key(&m.hospital_code, &prefix))
                    .or_default(),
                m,
            );
            add_month(hospitals.entry(m.hospital_code.clone()).or_default(), m);
        }
        // Peers: sessions per patient-month of each hospital against the
        // median of all hospitals in view.
        let mut ratios: Vec<f64> = hospitals
            .values()
            .filter(|h| h.claimed_patients > 0)
            .map(|h| h.claimed_lines as f64 / h.claimed_patients as f64)
            .collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios.get(ratios.len() / 2).copied();
        Ok(Json(json!({
            "region": prefix,
            "from": from,
            "to": to,
            "total": figures(&total),
            "months": by_month.iter().map(|(m, t)| { let mut v = figures(t); v["month"] = json!(m); v }).collect::<Vec<_>>(),
            "children": by_child.iter().map(|(k, t)| { let mut v = figures(t); v["code"] = json!(k); v }).collect::<Vec<_>>(),
            "peer_median_sessions_per_patient_month": median,
            "hospitals": hospitals.iter().map(|(k, t)| { let mut v = figures(t); v["hospital_code"] = json!(k); v }).collect::<Vec<_>>(),
        })))
    })
    .await
}

// ---------------------------------------------------------------- rules

/// The rules in force: the newest saved version, else the server's
/// `--rules`, else the shipped defaults.
pub fn active_rules(
    store: &dyn Store,
    options: &ServerOptions,
) -> Result<Arc<wuding_rules::Ruleset>, AppError> {
    if let Some(v) = store.rulesets()?.into_iter().next() {
        return wuding_rules::Ruleset::parse(&v.toml)
            .map(Arc::new)
            .map_err(|e| {
                tracing::error!(error = %e, "the saved rules no longer parse");
                AppError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "rules",
                    "the saved rules do not parse",
                )
            });
    }
    Ok(options
        .rules
        .clone()
        .unwrap_or_else(|| Arc::new(wuding_rules::Ruleset::default_rules())))
}

async fn rules(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        caller(
            &*store,
            &headers,
            now,
            &[Role::Auditor, Role::SeniorAuditor, Role::Admin],
            false,
        )?;
        let rules = active_rules(&*store, &options)?;
        let list: Vec<Value> = rules
            .rules()
            .map(|r| {
                json!({
                    "id": r.id.code(),
                    "enabled": r.enabled,
                    "severity": r.severity.map(|s| s.code()),
                    "title": {"zh": r.title.zh, "en": r.title.en},
                    "description": {"zh": r.description.zh, "en": r.description.en},
                    "params": r.params.iter().map(|(k, v)| (k.to_string(), json!(v.to_string()))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .chain(rules.composites.iter().map(|c| {
                json!({
                    "id": c.id,
                    "enabled": c.enabled,
                    "severity": c.severity.code(),
                    "title": {"zh": c.title.zh, "en": c.title.en},
                    "description": {"zh": c.description.zh, "en": c.description.en},
                    "params": {},
                    "composite": true,
                })
            }))
            .collect();
        let versions: Vec<Value> = store
            .rulesets()?
            .into_iter()
            .map(|v| json!({"version": v.version, "author": v.author, "reason": v.reason, "at_ms": v.at_ms}))
            .collect();
        // The text to start an edit from: the newest saved version, else
        // the shipped defaults.
        let base = store
            .rulesets()?
            .into_iter()
            .next()
            .map(|v| v.toml)
            .unwrap_or_else(|| DEFAULT_RULES_TOML.to_owned());
        Ok(Json(json!({
            "version": rules.version,
            "rules": list,
            "versions": versions,
            "default_toml": base,
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatIfBody {
    rule: String,
    param: String,
    values: Vec<String>,
    from: String,
    to: String,
}

async fn rules_whatif(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        caller(&*store, &headers, now, FUND, true)?;
        let req: WhatIfBody =
            serde_json::from_slice(&body).map_err(|e| bad("bad_body", e.to_string()))?;
        if req.values.is_empty() || req.values.len() > 20 {
            return Err(bad("bad_values", "give 1 to 20 candidate values"));
        }
        let rules = active_rules(&*store, &options)?;
        let period = crate::reconcile::period(&req.from, &req.to)?;
        let values: Vec<toml::Value> = req
            .values
            .iter()
            .map(|v| crate::reconcile::parse_value(v))
            .collect();
        let rows = crate::reconcile::whatif(&*store, &rules, period, &req.rule, &req.param, &values)?;
        Ok(Json(json!({
            "rule": req.rule,
            "param": req.param,
            "rows": rows.iter().map(|r| json!({"value": r.value, "findings": r.findings, "amount_fen": r.amount_fen})).collect::<Vec<_>>(),
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveRulesBody {
    toml: String,
    reason: String,
}

async fn save_rules(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, &[Role::SeniorAuditor], true)?;
        let req: SaveRulesBody =
            serde_json::from_slice(&body).map_err(|e| bad("bad_body", e.to_string()))?;
        if req.reason.trim().chars().count() < 4 {
            return Err(bad("reason_required", "say why the rules change"));
        }
        let parsed =
            wuding_rules::Ruleset::parse(&req.toml).map_err(|e| bad("bad_rules", e.to_string()))?;
        store.put_ruleset(&RulesetVersion {
            version: parsed.version.clone(),
            toml: req.toml,
            author: c.user.username.clone(),
            reason: req.reason.trim().to_owned(),
            at_ms: now,
        })?;
        audit(
            &*store,
            &c,
            "rules_change",
            &parsed.version,
            req.reason.trim(),
            now,
        );
        Ok(Json(json!({"version": parsed.version})))
    })
    .await
}

// ---------------------------------------------------------------- terminals

async fn terminals(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        caller(
            &*store,
            &headers,
            now,
            &[Role::Auditor, Role::SeniorAuditor, Role::Admin],
            false,
        )?;
        let alarms = store.alarms()?;
        let backlog: std::collections::HashMap<String, crate::store::TerminalBacklog> = store
            .terminal_backlog()?
            .into_iter()
            .map(|b| (b.terminal_id.clone(), b))
            .collect();
        let rows: Vec<Value> = store
            .terminals()?
            .into_iter()
            .map(|t| {
                let (head, held) = backlog
                    .get(&t.terminal_id)
                    .map_or((0, 0), |b| (b.chain_head, b.held_records));
                let skew = alarms
                    .iter()
                    .filter(|a| a.terminal_id == t.terminal_id && a.kind == "clock_skew")
                    .filter_map(|a| a.measured_ms)
                    .max();
                let open_alarms = alarms
                    .iter()
                    .filter(|a| a.terminal_id == t.terminal_id)
                    .count();
                json!({
                    "terminal_id": t.terminal_id,
                    "hospital_code": t.hospital_code,
                    "department_code": t.department_code,
                    "key_id": t.key_id,
                    "status": t.status,
                    "requested_at_ms": t.requested_at_ms,
                    "approved_at_ms": t.approved_at_ms,
                    "revoked_at_ms": t.revoked_at_ms,
                    "last_contact_ms": t.last_contact_ms,
                    "chain_head": head,
                    "held_records": held,
                    "max_clock_skew_ms": skew,
                    "alarms": open_alarms,
                })
            })
            .collect();
        Ok(Json(
            json!({"terminals": rows, "held_records": store.held_count()?}),
        ))
    })
    .await
}

async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    terminal_change(s, headers, id, true).await
}

async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    terminal_change(s, headers, id, false).await
}

async fn terminal_change(
    s: AppState,
    headers: HeaderMap,
    id: String,
    approve: bool,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, &[Role::Admin], true)?;
        if approve {
            store.approve_terminal(&id, now)?;
        } else {
            store.revoke_terminal(&id, now)?;
        }
        let action = if approve {
            "terminal_approve"
        } else {
            "terminal_revoke"
        };
        audit(&*store, &c, action, &id, "", now);
        Ok(Json(json!({"terminal_id": id, "approved": approve})))
    })
    .await
}

// ---------------------------------------------------------------- admin

async fn users(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        caller(&*store, &headers, now, &[Role::Admin], false)?;
        Ok(Json(json!({"users": store.users()?})))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    username: String,
    display_name: String,
    role: String,
    hospital_code: Option<String>,
    password: String,
}

async fn add_user_route(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        let c = caller(&*store, &headers, now, &[Role::Admin], true)?;
        let req: NewUserBody =
            serde_json::from_slice(&body).map_err(|e| bad("bad_body", e.to_string()))?;
        let role = Role::parse(&req.role).ok_or_else(|| {
            bad(
                "bad_role",
                "role is auditor, senior_auditor, hospital or admin",
            )
        })?;
        let user = add_user(
            &*store,
            &req.username,
            &req.display_name,
            role,
            req.hospital_code.as_deref().filter(|h| !h.is_empty()),
            &req.password,
            now,
        )?;
        audit(&*store, &c, "user_add", &user.username, role.code(), now);
        Ok(Json(json!({"user": user})))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u64>,
}

async fn audit_trail(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, AppError> {
    let now = (s.clock)();
    let store = s.store.clone();
    blocking(move || {
        caller(&*store, &headers, now, &[Role::Admin], false)?;
        Ok(Json(json!({
            "entries": store.audit_trail(q.limit.unwrap_or(200).min(5000))?,
        })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_down_goes_province_city_county_hospital() {
        let h = "H51010400003";
        assert_eq!(child_key(h, ""), "H51");
        assert_eq!(child_key(h, "H51"), "H5101");
        assert_eq!(child_key(h, "H5101"), "H510104");
        assert_eq!(child_key(h, "H510104"), h);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "lang=zh; wuding_session=abc123; other=1".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc123"));
    }

    #[test]
    fn the_dummy_hash_is_a_valid_argon2_string() {
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
