//! Sync with the server: registration, batched idempotent uploads keyed by
//! record id, receipts verified before an outbox entry is retired, and
//! exponential backoff with jitter. Offline for days is normal: the outbox
//! just grows, and every record still arrives exactly once.

use std::time::Duration;

use thiserror::Error;
use wuding_protocol::api::{
    HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, RecordVerdict,
    RegistrationRequest, RegistrationResponse, RequestAuth, TerminalStatus, UploadRequest,
    UploadResponse,
};
use wuding_protocol::api::{
    RosterDelta, RosterKeyRequest, RosterKeyResponse, RosterTemplate, SealKey, unwrap_roster_key,
    x25519_public,
};
use wuding_protocol::{TerminalKey, TerminalSigner};

use crate::store::{CachedPatient, CachedStaff, Store, StoreError};

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("server unreachable: {0}")]
    Network(String),
    #[error("server answered {status}: {body}")]
    Server { status: u16, body: String },
    #[error("the server's answer is not understood: {0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Exponential backoff with full jitter: the n-th consecutive failure waits
/// a random time up to `min(max, base * 2^n)`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// The wait before the next attempt, given a uniform random `r` in
    /// `0..=u64::MAX` (the caller supplies randomness: this stays pure).
    pub fn delay(&self, r: u64) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        let frac = r as f64 / u64::MAX as f64;
        cap.mul_f64(frac).max(Duration::from_millis(100))
    }

    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// What one sync round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub sent: usize,
    pub retired: usize,
    pub held: usize,
    pub rejected: usize,
}

/// A signed-request client for one terminal.
pub struct SyncClient {
    http: reqwest::Client,
    base_url: String,
    signer: TerminalSigner,
}

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

impl SyncClient {
    pub fn new(base_url: &str, signer: TerminalSigner, timeout: Duration) -> SyncClient {
        SyncClient {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .build()
                .expect("an HTTP client with default TLS settings builds"),
            base_url: base_url.trim_end_matches('/').to_owned(),
            signer,
        }
    }

    /// A client sharing an existing HTTP connection pool (simulators run
    /// thousands of terminals in one process).
    pub fn with_http(http: reqwest::Client, base_url: &str, signer: TerminalSigner) -> SyncClient {
        SyncClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            signer,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        now_ms: i64,
    ) -> Result<Vec<u8>, SyncError> {
        self.send_query(method, path, "", body, now_ms).await
    }

    /// The signature covers the path without the query string.
    async fn send_query(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Vec<u8>,
        now_ms: i64,
    ) -> Result<Vec<u8>, SyncError> {
        let auth = RequestAuth::sign(&self.signer, method, path, now_ms, &nonce(), &body);
        let url = format!("{}{path}{query}", self.base_url);
        let req = if method == "GET" {
            self.http.get(url)
        } else {
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
        };
        let resp = req
            .header(HEADER_KEY, auth.key_id)
            .header(HEADER_TIMESTAMP, auth.timestamp_ms.to_string())
            .header(HEADER_NONCE, auth.nonce)
            .header(HEADER_SIGNATURE, auth.signature)
            .send()
            .await
            .map_err(|e| SyncError::Network(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SyncError::Network(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(SyncError::Server {
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        Ok(bytes.to_vec())
    }

    /// Asks for approval (idempotent: asking again returns the status).
    pub async fn register(
        &self,
        terminal_id: &str,
        hospital_code: &str,
        department_code: &str,
        now_ms: i64,
    ) -> Result<RegistrationResponse, SyncError> {
        let body = serde_json::to_vec(&RegistrationRequest {
            terminal_id: terminal_id.to_owned(),
            hospital_code: hospital_code.to_owned(),
            department_code: department_code.to_owned(),
            public_key: self.signer.public_key().to_hex(),
        })
        .expect("serialises");
        let bytes = self
            .send("POST", "/api/v1/terminals/register", body, now_ms)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| SyncError::Protocol(e.to_string()))
    }

    pub async fn status(&self, now_ms: i64) -> Result<RegistrationResponse, SyncError> {
        let bytes = self
            .send("GET", "/api/v1/terminals/me", Vec::new(), now_ms)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| SyncError::Protocol(e.to_string()))
    }

    /// Pulls roster changes since the stored cursor into the roster cache.
    /// Returns how many items arrived. Safe to interrupt: items are
    /// upserts, and the cursor is saved only after all are stored.
    pub async fn pull_roster(&self, store: &mut Store, now_ms: i64) -> Result<usize, SyncError> {
        let since: u64 = store
            .meta("roster_cursor")?
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let bytes = self
            .send_query(
                "GET",
                "/api/v1/roster",
                &format!("?since={since}"),
                Vec::new(),
                now_ms,
            )
            .await?;
        let delta: RosterDelta =
            serde_json::from_slice(&bytes).map_err(|e| SyncError::Protocol(e.to_string()))?;
        let count =
            delta.patients.len() + delta.staff.len() + delta.plans.len() + delta.prices.len();
        for p in delta.patients {
            store.put_patient(&CachedPatient {
                insured_id: p.insured_id,
                card_uid: p.card_uid,
                display_name: p.display_name,
            })?;
        }
        for s in delta.staff {
            store.put_staff(&CachedStaff {
                staff_id: s.staff_id,
                card_uid: s.card_uid,
                display_name: s.display_name,
                pin_hash: s.pin_hash,
            })?;
        }
        for plan in delta.plans {
            store.put_plan(&plan)?;
        }
        for price in delta.prices {
            store.put_price(&price.code, price.unit_price_fen)?;
        }
        let count = count + delta.templates.len();
        for t in delta.templates {
            use base64::Engine;
            // Kept as delivered: sealed under the hospital's roster key,
            // opened only to download it into the module.
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(t.sealed.as_bytes())
                .map_err(|_| SyncError::Protocol("a roster template is not base64".into()))?;
            store.put_template(&crate::store::CachedTemplate {
                insured_id: t.insured_id,
                finger: t.finger,
                sealed,
                template_ref: t.template_ref,
            })?;
        }
        store.set_meta("roster_cursor", &delta.cursor.to_string())?;
        Ok(count)
    }

    /// Fetches the hospital's roster key (the server wraps it for a fresh
    /// X25519 key pair made for this request; see `docs/api.md`).
    pub async fn fetch_roster_key(&self, now_ms: i64) -> Result<SealKey, SyncError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| SyncError::Protocol(e.to_string()))?;
        let body = serde_json::to_vec(&RosterKeyRequest {
            x25519_public: hex::encode(x25519_public(&secret)),
        })
        .expect("serialises");
        let bytes = self
            .send("POST", "/api/v1/roster/key", body, now_ms)
            .await?;
        let answer: RosterKeyResponse =
            serde_json::from_slice(&bytes).map_err(|e| SyncError::Protocol(e.to_string()))?;
        unwrap_roster_key(&secret, &answer)
            .map_err(|e| SyncError::Protocol(format!("the roster key does not open: {e}")))
    }

    /// Uploads a template enrolled here, sealed under the roster key.
    /// Idempotent: the same template again changes nothing on the server.
    pub async fn upload_template(
        &self,
        template: &RosterTemplate,
        now_ms: i64,
    ) -> Result<(), SyncError> {
        let body = serde_json::to_vec(template).expect("serialises");
        self.send("POST", "/api/v1/templates", body, now_ms).await?;
        Ok(())
    }

    /// One round: upload up to `batch` waiting records, retire those whose
    /// receipt verifies under the log key, set aside refused ones.
    pub async fn sync_once(
        &self,
        store: &mut Store,
        log_key: &TerminalKey,
        batch: usize,
        now_ms: i64,
    ) -> Result<SyncReport, SyncError> {
        let pending = store.pending(batch)?;
        let mut report = SyncReport::default();
        if pending.is_empty() {
            return Ok(report);
        }
        report.sent = pending.len();
        let body = serde_json::to_vec(&UploadRequest {
            records: pending.iter().map(|p| p.envelope.clone()).collect(),
        })
        .expect("serialises");
        let bytes = self.send("POST", "/api/v1/records", body, now_ms).await?;
        let answer: UploadResponse =
            serde_json::from_slice(&bytes).map_err(|e| SyncError::Protocol(e.to_string()))?;
        for result in answer.results {
            if !pending.iter().any(|p| p.record_id == result.record_id) {
                return Err(SyncError::Protocol(
                    "a result for a record that was not sent".into(),
                ));
            }
            match result.verdict {
                RecordVerdict::Accepted { receipt } => {
                    if receipt.record_id == result.record_id && receipt.verify(log_key) {
                        let json = serde_json::to_string(&receipt).expect("serialises");
                        if store.retire(result.record_id, &json, now_ms)? {
                            report.retired += 1;
                        }
                    } else {
                        tracing::warn!(record = %result.record_id.short(), "receipt does not verify; the record stays in the outbox");
                    }
                }
                RecordVerdict::Held { .. } => report.held += 1,
                RecordVerdict::Rejected { reason, detail } => {
                    tracing::error!(record = %result.record_id.short(), %reason, %detail, "server refused a record");
                    store.set_aside(result.record_id, &format!("{reason}: {detail}"), now_ms)?;
                    report.rejected += 1;
                }
            }
        }
        Ok(report)
    }
}

/// Whether the registry says this terminal may upload.
pub fn may_upload(status: &TerminalStatus) -> bool {
    matches!(status, TerminalStatus::Approved | TerminalStatus::Revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_failures_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(600));
        assert_eq!(b.delay(u64::MAX), Duration::from_secs(2));
        for _ in 0..3 {
            b.failed();
        }
        assert_eq!(b.delay(u64::MAX), Duration::from_secs(16));
        assert!(b.delay(u64::MAX / 2) < Duration::from_secs(9));
        for _ in 0..30 {
            b.failed();
        }
        assert_eq!(b.delay(u64::MAX), Duration::from_secs(600));
        assert_eq!(b.delay(0), Duration::from_millis(100), "never a busy loop");
        b.succeeded();
        assert_eq!(b.delay(u64::MAX), Duration::from_secs(2));
    }
}
