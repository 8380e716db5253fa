//! The HTTP API (axum). Terminal calls are signed requests (see
//! `wuding_protocol::api` and `docs/api.md`); database work runs on the
//! blocking pool so the async workers never wait on SQLite or PostgreSQL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use wuding_protocol::api::{
    HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, RecordResult, RecordVerdict,
    RegistrationRequest, RegistrationResponse, RequestAuth, TerminalStatus, UploadRequest,
    UploadResponse,
};
use wuding_protocol::{RecordId, TerminalKey};

use crate::ingest::{IngestPolicy, Log, Outcome, ingest};
use crate::registry::{RegistryError, register};
use crate::store::{Store, StoreError, TerminalRow};
use crate::templates::{TemplateError, TemplateVault};
use sha2::{Digest, Sha256};

/// Largest upload body (a batch of up to [`MAX_BATCH`] envelopes).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_BATCH: usize = 500;
/// Accepted difference between a request's timestamp and the server clock.
pub const REQUEST_WINDOW_MS: i64 = 5 * 60_000;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub log: Arc<Log>,
    pub policy: IngestPolicy,
    pub metrics: Arc<Metrics>,
    /// The server clock (Unix ms); replaceable in tests.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// Prometheus counters.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn add(&self, name: &str, n: u64) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default() += n;
    }

    fn render(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from(
            "# HELP wuding_records_total Records uploaded, by verdict.\n# TYPE wuding_records_total counter\n",
        );
        for (k, v) in counters.iter().filter(|(k, _)| k.starts_with("records:")) {
            out.push_str(&format!(
                "wuding_records_total{{verdict=\"{}\"}} {v}\n",
                &k[8..]
            ));
        }
        out.push_str("# HELP wuding_requests_total HTTP requests, by route.\n# TYPE wuding_requests_total counter\n");
        for (k, v) in counters.iter().filter(|(k, _)| k.starts_with("requests:")) {
            out.push_str(&format!(
                "wuding_requests_total{{route=\"{}\"}} {v}\n",
                &k[9..]
            ));
        }
        out.push_str(
            "# HELP wuding_request_seconds_total Time spent answering, by route.\n# TYPE wuding_request_seconds_total counter\n",
        );
        for (k, v) in counters.iter().filter(|(k, _)| k.starts_with("micros:")) {
            out.push_str(&format!(
                "wuding_request_seconds_total{{route=\"{}\"}} {:.6}\n",
                &k[7..],
                *v as f64 / 1e6
            ));
        }
        out
    }
}

/// An error answer: a status, a stable code and a message that never
/// exposes internals (those are logged once, here).
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> AppError {
        AppError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The message shown to the user.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn unauthorized(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::Conflict(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::NotFound(m) => AppError::new(StatusCode::NOT_FOUND, "not_found", m),
            other => {
                tracing::error!(error = %other, "storage error");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "storage is unavailable; retry later",
                )
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// Runs database work on plain OS threads outside the async runtime. (The
/// synchronous PostgreSQL client drives its own small runtime and must not
/// be called from tokio's threads, not even its blocking pool.)
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    db_pool().run(Box::new(move || {
        let _ = tx.send(f());
    }));
    rx.await.unwrap_or_else(|_| {
        tracing::error!("a database task panicked");
        Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        ))
    })
}

type Job = Box<dyn FnOnce() + Send>;

struct DbPool {
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

impl DbPool {
    fn run(&self, job: Job) {
        let _ = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job);
    }
}

fn db_pool() -> &'static DbPool {
    static POOL: std::sync::OnceLock<DbPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..8 {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("wuding-db-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            // A panicking job drops its reply sender; the
                            // caller answers 500 and the thread lives on.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawning a database thread");
        }
        DbPool {
            jobs: Mutex::new(tx),
        }
    })
}

/// Options beyond the shared state: the administrator token and the
/// template key. Without them the admin API answers 403 and templates are
/// neither accepted nor delivered.
#[derive(Clone, Default)]
pub struct ServerOptions {
    pub admin_token: Option<AdminToken>,
    pub vault: Option<Arc<TemplateVault>>,
    /// The rules `POST /api/v1/admin/reconcile` runs (default: the shipped
    /// rules).
    pub rules: Option<Arc<wuding_rules::Ruleset>>,
}

/// The administrator's bearer token, kept only as its SHA-256. `Debug`
/// redacts it.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(redacted)")
    }
}

impl AdminToken {
    /// A token of at least 16 characters.
    pub fn new(token: &str) -> Option<AdminToken> {
        let token = token.trim();
        (token.len() >= 16).then(|| AdminToken(Sha256::digest(token.as_bytes()).into()))
    }

    fn matches(&self, offered: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(offered.as_bytes()).into();
        // Constant time over the digests.
        d.iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Every route the router serves, as written in `openapi.json` (a test
/// checks each one is documented).
pub const ROUTES: &[&str] = &[
    "/health",
    "/metrics",
    "/api/openapi.json",
    "/api/v1/terminals/register",
    "/api/v1/terminals/me",
    "/api/v1/records",
    "/api/v1/roster",
    "/api/v1/log/checkpoint",
    "/api/v1/log/consistency",
    "/api/v1/roster/key",
    "/api/v1/templates",
    "/api/v1/admin/terminals",
    "/api/v1/admin/terminals/{terminal_id}/approve",
    "/api/v1/admin/terminals/{terminal_id}/revoke",
    "/api/v1/admin/alarms",
    "/api/v1/admin/roster/{kind}",
    "/api/v1/admin/templates",
    "/api/v1/admin/claims",
    "/api/v1/admin/reconcile",
    "/api/v1/admin/findings",
    "/api/v1/app/login",
    "/api/v1/app/logout",
    "/api/v1/app/me",
    "/api/v1/app/dashboard",
    "/api/v1/app/findings",
    "/api/v1/app/findings/{id}",
    "/api/v1/app/findings/{id}/actions",
    "/api/v1/app/findings/{id}/reveal",
    "/api/v1/app/findings/{id}/attachments/{n}",
    "/api/v1/app/findings/{id}/evidence",
    "/api/v1/app/export",
    "/api/v1/app/rules",
    "/api/v1/app/rules/whatif",
    "/api/v1/app/terminals",
    "/api/v1/app/terminals/{id}/approve",
    "/api/v1/app/terminals/{id}/revoke",
    "/api/v1/app/users",
    "/api/v1/app/audit",
];

/// The API router (no admin API, no templates).
pub fn router(state: AppState) -> Router {
    router_with(state, ServerOptions::default())
}

/// The API router with administrator access and templates.
pub fn router_with(state: AppState, options: ServerOptions) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/terminals/register", post(register_terminal))
        .route("/api/v1/terminals/me", get(me))
        .route("/api/v1/records", post(upload))
        .route("/api/v1/roster", get(roster))
        .route("/api/v1/log/checkpoint", get(checkpoint))
        .route("/api/v1/log/consistency", get(consistency))
        .route("/api/v1/roster/key", post(roster_key))
        .route("/api/v1/templates", post(upload_template))
        .route("/api/v1/admin/terminals", get(admin_terminals))
        .route(
            "/api/v1/admin/terminals/{terminal_id}/approve",
            post(admin_approve),
        )
        .route(
            "/api/v1/admin/terminals/{terminal_id}/revoke",
            post(admin_revoke),
        )
        .route("/api/v1/admin/alarms", get(admin_alarms))
        .route("/api/v1/admin/roster/{kind}", post(admin_roster))
        .route("/api/v1/admin/templates", put(admin_template))
        .route("/api/v1/admin/claims", post(admin_claims))
        .route("/api/v1/admin/reconcile", post(admin_reconcile))
        .route("/api/v1/admin/findings", get(admin_findings))
        .merge(crate::web::routes())
        .layer(Extension(options))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let store = s.store.clone();
    let held = blocking(move || Ok(store.held_count()?)).await?;
    Ok(Json(
        serde_json::json!({"status": "ok", "held_records": held}),
    ))
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, AppError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AppError::unauthorized(format!("missing header {name}")))
}

fn request_auth(headers: &HeaderMap) -> Result<RequestAuth, AppError> {
    Ok(RequestAuth {
        key_id: header_str(headers, HEADER_KEY)?.to_owned(),
        timestamp_ms: header_str(headers, HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| AppError::unauthorized("x-wuding-timestamp is not an integer"))?,
        nonce: header_str(headers, HEADER_NONCE)?.to_owned(),
        signature: header_str(headers, HEADER_SIGNATURE)?.to_owned(),
    })
}

/// Checks a signed request: signature, time window, nonce not seen before.
fn check_request(
    s: &AppState,
    key: &TerminalKey,
    auth: &RequestAuth,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(), AppError> {
    let now = (s.clock)();
    if (auth.timestamp_ms - now).abs() > REQUEST_WINDOW_MS {
        return Err(AppError::unauthorized(
            "request timestamp is outside the accepted window; check the terminal clock",
        ));
    }
    if !auth.verify(key, method.as_str(), uri.path(), body) {
        return Err(AppError::unauthorized("request signature does not verify"));
    }
    if !s
        .store
        .use_nonce(&auth.key_id, &auth.nonce, now + 2 * REQUEST_WINDOW_MS, now)?
    {
        return Err(AppError::unauthorized(
            "request nonce was already used (replay)",
        ));
    }
    Ok(())
}

/// Authenticates a terminal's signed request; returns its registry row.
fn authenticate(
    s: &AppState,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<TerminalRow, AppError> {
    let auth = request_auth(headers)?;
    let terminal = s
        .store
        .terminal_by_key(&auth.key_id)?
        .ok_or_else(|| AppError::unauthorized("unknown terminal key"))?;
    let key = TerminalKey::from_bytes(&terminal.public_key)
        .map_err(|_| AppError::unauthorized("bad stored key"))?;
    check_request(s, &key, &auth, method, uri, body)?;
    Ok(terminal)
}

fn status_of(t: &TerminalRow) -> TerminalStatus {
    match t.status.as_str() {
        "approved" => TerminalStatus::Approved,
        "revoked" => TerminalStatus::Revoked,
        _ => TerminalStatus::Pending,
    }
}

async fn register_terminal(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<RegistrationResponse>), AppError> {
    let req: RegistrationRequest = serde_json::from_slice(&body)
        .map_err(|e| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_body", e.to_string()))?;
    let log_key = s.log.public_key().to_hex();
    blocking(move || {
        let key = TerminalKey::from_hex(&req.public_key).map_err(|e| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_key",
                RegistryError::Key(e).to_string(),
            )
        })?;
        let auth = request_auth(&headers)?;
        if auth.key_id != key.id().to_hex() {
            return Err(AppError::unauthorized(
                "a registration must be signed by the key it registers",
            ));
        }
        check_request(&s, &key, &auth, &method, &uri, &body)?;
        // Asking again is fine: answer with the current status.
        if let Some(existing) = s.store.terminal(&req.terminal_id)? {
            if existing.key_id != key.id().to_hex() {
                return Err(AppError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "this terminal id is registered with another key",
                ));
            }
            return Ok((
                StatusCode::OK,
                Json(RegistrationResponse {
                    terminal_id: existing.terminal_id.clone(),
                    status: status_of(&existing),
                    log_public_key: log_key,
                }),
            ));
        }
        let row = register(&*s.store, &req, (s.clock)()).map_err(|e| match e {
            RegistryError::Store(e) => AppError::from(e),
            other => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_registration",
                other.to_string(),
            ),
        })?;
        tracing::info!(terminal = %row.terminal_id, "registration requested");
        Ok((
            StatusCode::ACCEPTED,
            Json(RegistrationResponse {
                terminal_id: row.terminal_id,
                status: TerminalStatus::Pending,
                log_public_key: log_key,
            }),
        ))
    })
    .await
}

async fn me(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<RegistrationResponse>, AppError> {
    let log_key = s.log.public_key().to_hex();
    blocking(move || {
        let t = authenticate(&s, &headers, &method, &uri, b"")?;
        Ok(Json(RegistrationResponse {
            terminal_id: t.terminal_id.clone(),
            status: status_of(&t),
            log_public_key: log_key,
        }))
    })
    .await
}

async fn upload(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UploadResponse>, AppError> {
    let started = Instant::now();
    let metrics = s.metrics.clone();
    let result = blocking(move || {
        let terminal = authenticate(&s, &headers, &method, &uri, &body)?;
        if terminal.status != "approved" && terminal.status != "revoked" {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "not_approved",
                "this terminal is awaiting approval",
            ));
        }
        let req: UploadRequest = serde_json::from_slice(&body).map_err(|e| {
            AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_body", e.to_string())
        })?;
        if req.records.len() > MAX_BATCH {
            return Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!("at most {MAX_BATCH} records per upload"),
            ));
        }
        let now = (s.clock)();
        let outcomes = ingest(&*s.store, &s.log, &s.policy, &req.records, now)?;
        for o in &outcomes {
            s.metrics.add(&format!("records:{}", o.reason()), 1);
        }
        let accepted: Vec<(RecordId, u64)> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Accepted {
                    record_id,
                    log_index,
                } => Some((*record_id, *log_index)),
                _ => None,
            })
            .collect();
        let mut receipts = s.log.receipts(&accepted, now).into_iter();
        let results = outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Accepted { record_id, .. } => RecordResult {
                    record_id,
                    verdict: RecordVerdict::Accepted {
                        receipt: receipts.next().expect("one receipt per accepted record"),
                    },
                },
                Outcome::Held {
                    record_id,
                    missing_from,
                } => RecordResult {
                    record_id,
                    verdict: RecordVerdict::Held { missing_from },
                },
                Outcome::Rejected {
                    record_id,
                    reason,
                    detail,
                } => RecordResult {
                    record_id,
                    verdict: RecordVerdict::Rejected {
                        reason: reason.to_owned(),
                        detail,
                    },
                },
            })
            .collect();
        Ok(Json(UploadResponse { results }))
    })
    .await;
    metrics.add("requests:upload", 1);
    metrics.add("micros:upload", started.elapsed().as_micros() as u64);
    result
}

async fn checkpoint(State(s): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    blocking(move || {
        s.log.sync(&*s.store)?;
        let cp = s.log.checkpoint((s.clock)());
        Ok(Json(
            serde_json::json!({"checkpoint": cp, "log_public_key": s.log.public_key().to_hex()}),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct RosterQuery {
    #[serde(default)]
    since: u64,
}

/// Roster changes for the calling terminal's own hospital only.
async fn roster(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Extension(options): Extension<ServerOptions>,
    Query(q): Query<RosterQuery>,
) -> Result<Json<wuding_protocol::api::RosterDelta>, AppError> {
    blocking(move || {
        let t = authenticate(&s, &headers, &method, &uri, b"")?;
        if t.status != "approved" {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "not_approved",
                "only approved terminals receive rosters",
            ));
        }
        Ok(Json(crate::roster::delta_with_templates(
            &*s.store,
            options.vault.as_deref(),
            &t.hospital_code,
            q.since,
        )?))
    })
    .await
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn consistency(
    State(s): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    blocking(move || {
        s.log.sync(&*s.store)?;
        let proof = s.log.consistency(q.from, q.to).ok_or_else(|| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_range",
                "need from <= to <= the log size",
            )
        })?;
        Ok(Json(serde_json::json!({
            "from": q.from, "to": q.to,
            "from_root": s.log.root_at(q.from), "to_root": s.log.root_at(q.to),
            "proof": proof
        })))
    })
    .await
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

impl From<TemplateError> for AppError {
    fn from(e: TemplateError) -> AppError {
        match e {
            TemplateError::Store(e) => e.into(),
            other => unprocessable("bad_template", other.to_string()),
        }
    }
}

fn approved_terminal(
    s: &AppState,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<TerminalRow, AppError> {
    let t = authenticate(s, headers, method, uri, body)?;
    if t.status != "approved" {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "not_approved",
            "only approved terminals may do this",
        ));
    }
    Ok(t)
}

fn vault_of(options: &ServerOptions) -> Result<Arc<TemplateVault>, AppError> {
    options.vault.clone().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_template_key",
            "this server was started without --template-key-file",
        )
    })
}

/// `POST /api/v1/roster/key`: the hospital roster key, wrapped for the
/// X25519 public key in the (signed) body.
async fn roster_key(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<wuding_protocol::api::RosterKeyResponse>, AppError> {
    blocking(move || {
        let t = approved_terminal(&s, &headers, &method, &uri, &body)?;
        let req: wuding_protocol::api::RosterKeyRequest =
            serde_json::from_slice(&body).map_err(|e| unprocessable("bad_body", e.to_string()))?;
        let vault = vault_of(&options)?;
        let answer = vault.wrap_for_terminal(&t.hospital_code, &req)?;
        tracing::info!(terminal = %t.terminal_id, "roster key delivered");
        Ok(Json(answer))
    })
    .await
}

/// `POST /api/v1/templates`: a template enrolled at a terminal, sealed under
/// its hospital's roster key; stored sealed at rest and delivered to the
/// hospital's other terminals.
async fn upload_template(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    blocking(move || {
        let t = approved_terminal(&s, &headers, &method, &uri, &body)?;
        let req: wuding_protocol::api::RosterTemplate =
            serde_json::from_slice(&body).map_err(|e| unprocessable("bad_body", e.to_string()))?;
        let vault = vault_of(&options)?;
        let item = vault.item_from_terminal(&t.hospital_code, &req)?;
        let changed = crate::templates::put(&*s.store, &[item])?;
        Ok(Json(
            serde_json::json!({"stored": true, "changed": changed > 0}),
        ))
    })
    .await
}

fn admin(options: &ServerOptions, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(token) = &options.admin_token else {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "this server was started without --admin-token-file",
        ));
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| AppError::unauthorized("missing `Authorization: Bearer TOKEN`"))?;
    if !token.matches(offered) {
        return Err(AppError::unauthorized("wrong administrator token"));
    }
    Ok(())
}

async fn admin_terminals(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    blocking(move || {
        let list: Vec<serde_json::Value> = s
            .store
            .terminals()?
            .into_iter()
            .map(|t| {
                serde_json::json!({
                    "terminal_id": t.terminal_id,
                    "hospital_code": t.hospital_code,
                    "department_code": t.department_code,
                    "public_key": hex::encode(t.public_key),
                    "key_id": t.key_id,
                    "status": t.status,
                    "requested_at_ms": t.requested_at_ms,
                    "approved_at_ms": t.approved_at_ms,
                    "revoked_at_ms": t.revoked_at_ms,
                    "revoked_at_seq": t.revoked_at_seq,
                    "last_contact_ms": t.last_contact_ms,
                })
            })
            .collect();
        Ok(Json(serde_json::json!({ "terminals": list })))
    })
    .await
}

async fn admin_approve(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    Path(terminal_id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    blocking(move || {
        s.store.approve_terminal(&terminal_id, (s.clock)())?;
        tracing::info!(terminal = %terminal_id, "terminal approved");
        Ok(Json(
            serde_json::json!({"terminal_id": terminal_id, "status": "approved"}),
        ))
    })
    .await
}

async fn admin_revoke(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    Path(terminal_id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    blocking(move || {
        let now = (s.clock)();
        s.store.revoke_terminal(&terminal_id, now)?;
        tracing::info!(terminal = %terminal_id, "terminal revoked");
        Ok(Json(
            serde_json::json!({"terminal_id": terminal_id, "status": "revoked", "revoked_at_ms": now}),
        ))
    })
    .await
}

async fn admin_alarms(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    blocking(move || Ok(Json(serde_json::json!({ "alarms": s.store.alarms()? })))).await
}

fn report_json(r: &crate::claims::ImportReport) -> serde_json::Value {
    serde_json::json!({
        "rows": r.rows,
        "changed": r.inserted,
        "already_present": r.already_present,
        "errors": r.errors.iter().map(|e| serde_json::json!({
            "line": e.line, "column": e.column, "why": e.why,
        })).collect::<Vec<_>>(),
        "errors_not_kept": r.errors_not_kept,
    })
}

fn import_error(e: crate::claims::ImportError) -> AppError {
    match e {
        crate::claims::ImportError::Store(e) => e.into(),
        other => unprocessable("bad_file", other.to_string()),
    }
}

/// `POST /api/v1/admin/roster/{patients|staff|plans|prices|terminals}`: a
/// CSV body in the import layout; rows are inserted or updated (an
/// unchanged row changes nothing), bad rows come back with line and column.
async fn admin_roster(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    blocking(move || {
        if kind == "terminals" {
            let r =
                crate::registry::import_terminals(&*s.store, &body[..]).map_err(import_error)?;
            return Ok(Json(report_json(&r)));
        }
        let kind = match kind.as_str() {
            "patients" => crate::roster::RosterKind::Patients,
            "staff" => crate::roster::RosterKind::Staff,
            "plans" => crate::roster::RosterKind::Plans,
            "prices" => crate::roster::RosterKind::Prices,
            other => {
                return Err(AppError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no roster kind `{other}` (patients, staff, plans, prices, terminals)"),
                ));
            }
        };
        let r = crate::roster::import(&*s.store, kind, &body[..]).map_err(import_error)?;
        Ok(Json(report_json(&r)))
    })
    .await
}

/// Body of `POST /api/v1/admin/reconcile`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    from: String,
    to: String,
}

impl From<crate::reconcile::ReconcileError> for AppError {
    fn from(e: crate::reconcile::ReconcileError) -> AppError {
        match e {
            crate::reconcile::ReconcileError::Store(e) => e.into(),
            crate::reconcile::ReconcileError::Invalid(m) => unprocessable("bad_request", m),
        }
    }
}

/// `POST /api/v1/admin/reconcile {"from","to"}`: reconciles the period and
/// answers the summary (counts per severity and rule, money at stake).
async fn admin_reconcile(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    let req: ReconcileBody =
        serde_json::from_slice(&body).map_err(|e| unprocessable("bad_body", e.to_string()))?;
    blocking(move || {
        let period = crate::reconcile::period(&req.from, &req.to)?;
        // The rules in force: the newest version saved in the application,
        // else `--rules`, else the shipped ones.
        let rules = crate::web::active_rules(&*s.store, &options)?;
        let summary =
            crate::reconcile::run_stored(&*s.store, &rules, period, (s.clock)(), false)?;
        tracing::info!(from = %req.from, to = %req.to, findings = summary.total.findings, "reconciled");
        Ok(Json(serde_json::to_value(&summary).unwrap_or_default()))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingsQuery {
    from: Option<String>,
    to: Option<String>,
    severity: Option<String>,
    rule: Option<String>,
}

/// `GET /api/v1/admin/findings?from&to&severity&rule`: stored findings.
async fn admin_findings(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    Query(q): Query<FindingsQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    blocking(move || {
        let filter = crate::reconcile::filter(
            q.from.as_deref(),
            q.to.as_deref(),
            q.severity.as_deref(),
            q.rule.as_deref(),
        )?;
        let rows = s.store.findings(&filter)?;
        Ok(Json(serde_json::json!({ "findings": rows })))
    })
    .await
}

/// Body of `PUT /api/v1/admin/templates`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminTemplate {
    hospital_code: String,
    insured_id: String,
    finger: wuding_protocol::Finger,
    /// The module's characteristic file, base64.
    template: String,
    /// The keyed reference terminals put in records (64 hex digits).
    template_ref: String,
}

async fn admin_template(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    let req: AdminTemplate =
        serde_json::from_slice(&body).map_err(|e| unprocessable("bad_body", e.to_string()))?;
    blocking(move || {
        use base64::Engine;
        let vault = vault_of(&options)?;
        let template = base64::engine::general_purpose::STANDARD
            .decode(req.template.as_bytes())
            .map_err(|_| unprocessable("bad_body", "`template` is not base64"))?;
        let template_ref = wuding_protocol::ids::parse_lower_hex::<32>(&req.template_ref)
            .ok_or_else(|| unprocessable("bad_body", "`template_ref` is not 64 hex digits"))?;
        let item = vault.item_for(
            &req.hospital_code,
            &req.insured_id,
            req.finger,
            &template,
            wuding_protocol::TemplateRef(template_ref),
        )?;
        let changed = crate::templates::put(&*s.store, &[item])?;
        Ok(Json(
            serde_json::json!({"stored": true, "changed": changed > 0}),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct ClaimsQuery {
    #[serde(default)]
    mapping: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// `POST /api/v1/admin/claims?mapping=standard|national-fee-detail`: a
/// claims CSV body (at most the body limit; larger files go through the
/// `import-claims` command).
async fn admin_claims(
    State(s): State<AppState>,
    Extension(options): Extension<ServerOptions>,
    headers: HeaderMap,
    Query(q): Query<ClaimsQuery>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    admin(&options, &headers)?;
    let mapping = match q.mapping.as_deref() {
        None | Some("standard") => crate::claims::Mapping::standard(),
        Some("national-fee-detail") => crate::claims::Mapping::national_fee_detail(),
        Some(other) => {
            return Err(unprocessable(
                "bad_mapping",
                format!("no mapping `{other}` (standard, national-fee-detail)"),
            ));
        }
    };
    let source = q.source.unwrap_or_else(|| "upload".into());
    blocking(move || {
        let r = crate::claims::import(&*s.store, &body[..], &mapping, &source, |_| {})
            .map_err(import_error)?;
        Ok(Json(report_json(&r)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json parses");
        let paths = doc["paths"].as_object().expect("paths");
        for route in ROUTES {
            assert!(paths.contains_key(*route), "{route} is not documented");
        }
        assert_eq!(
            paths.len(),
            ROUTES.len(),
            "a documented route is missing from ROUTES"
        );
    }

    #[test]
    fn every_documented_route_is_served() {
        let state = AppState {
            store: Arc::new(
                crate::store::sqlite::SqliteStore::in_memory().expect("in-memory store"),
            ),
            log: Arc::new(Log::new(wuding_protocol::TerminalSigner::from_seed(
                &[1; 32],
            ))),
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(|| 1_700_000_000_000),
        };
        let app = router(state);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for route in ROUTES {
            let path = route
                .replace("{terminal_id}", "T-1")
                .replace("{kind}", "patients")
                .replace("{id}", "x")
                .replace("{n}", "0");
            for method in ["GET", "POST", "PUT"] {
                let req = axum::http::Request::builder()
                    .method(method)
                    .uri(&path)
                    .body(axum::body::Body::empty())
                    .expect("request");
                let status = runtime
                    .block_on(app.clone().oneshot(req))
                    .expect("infallible")
                    .status();
                // 405 still means the path is routed (for another method).
                assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
                assert!(
                    !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{method} {path}: {status}"
                );
            }
        }
    }
}
