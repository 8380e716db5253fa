//! The API over real HTTP on loopback: signed requests, replay protection,
//! receipts, and clear 4xx answers to bad input.

mod common;

use std::sync::Arc;

use wuding_protocol::api::{
    RecordVerdict, RegistrationRequest, RegistrationResponse, RequestAuth, UploadResponse,
};
use wuding_protocol::example::example_session;
use wuding_protocol::{Record, RecordId, TerminalKey, TerminalSigner};
use wuding_server::http::{AppState, Metrics, router};
use wuding_server::ingest::{IngestPolicy, Log};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Server {
    base: String,
    state: AppState,
}

/// Opening stores (and dropping test databases) is blocking work: it
/// happens outside the async runtime, as in `wuding-server serve`.
fn with_server(db: common::TestDb, f: impl AsyncFnOnce(&Server)) {
    let store: Arc<dyn wuding_server::store::Store> =
        Arc::from(wuding_server::store::open(&db.url).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = start(store.clone()).await;
        f(&server).await;
    });
    // The store's connections are closed here, outside the runtime.
    drop(runtime);
    drop(store);
    drop(db);
}

async fn start(store: Arc<dyn wuding_server::store::Store>) -> Server {
    let state = AppState {
        store,
        log: Arc::new(Log::new(TerminalSigner::from_seed(&[99; 32]))),
        policy: IngestPolicy::default(),
        metrics: Arc::new(Metrics::default()),
        clock: Arc::new(now_ms),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base, state }
}

fn nonce(n: u64) -> String {
    format!("{:032x}", n as u128 * 7919 + now_ms() as u128)
}

async fn signed(
    http: &reqwest::Client,
    base: &str,
    signer: &TerminalSigner,
    method: &str,
    path: &str,
    body: Vec<u8>,
    nonce: &str,
) -> reqwest::Response {
    let auth = RequestAuth::sign(signer, method, path, now_ms(), nonce, &body);
    let req = match method {
        "GET" => http.get(format!("{base}{path}")),
        _ => http.post(format!("{base}{path}")).body(body),
    };
    req.header("x-wuding-key", auth.key_id)
        .header("x-wuding-timestamp", auth.timestamp_ms.to_string())
        .header("x-wuding-nonce", auth.nonce)
        .header("x-wuding-signature", auth.signature)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
}

async fn scenario(server: &Server) {
    let http = reqwest::Client::new();
    let base = &server.base;
    let terminal = TerminalSigner::from_seed(&[1; 32]);
    let reg = serde_json::to_vec(&RegistrationRequest {
        terminal_id: "T-330102-0007".into(),
        hospital_code: "H33010200017".into(),
        department_code: "NEPH-HD".into(),
        public_key: terminal.public_key().to_hex(),
    })
    .unwrap();

    // Registration must be signed by the key it registers.
    let impostor = TerminalSigner::from_seed(&[2; 32]);
    let r = signed(
        &http,
        base,
        &impostor,
        "POST",
        "/api/v1/terminals/register",
        reg.clone(),
        &nonce(1),
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = signed(
        &http,
        base,
        &terminal,
        "POST",
        "/api/v1/terminals/register",
        reg.clone(),
        &nonce(2),
    )
    .await;
    assert_eq!(r.status(), 202);
    let resp: RegistrationResponse = r.json().await.unwrap();
    let log_key = TerminalKey::from_hex(&resp.log_public_key).unwrap();

    // Not yet approved: uploads are refused.
    let record = terminal.sign(&Record::Session(example_session())).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({"records": [record]})).unwrap();
    let r = signed(
        &http,
        base,
        &terminal,
        "POST",
        "/api/v1/records",
        body.clone(),
        &nonce(3),
    )
    .await;
    assert_eq!(r.status(), 403);

    let store = server.state.store.clone();
    std::thread::spawn(move || store.approve_terminal("T-330102-0007", now_ms()).unwrap())
        .join()
        .unwrap();
    let r = signed(
        &http,
        base,
        &terminal,
        "GET",
        "/api/v1/terminals/me",
        vec![],
        &nonce(4),
    )
    .await;
    assert_eq!(
        r.json::<RegistrationResponse>().await.unwrap().status,
        wuding_protocol::api::TerminalStatus::Approved
    );

    let used = nonce(5);
    let r = signed(
        &http,
        base,
        &terminal,
        "POST",
        "/api/v1/records",
        body.clone(),
        &used,
    )
    .await;
    assert_eq!(r.status(), 200);
    let up: UploadResponse = r.json().await.unwrap();
    match &up.results[0].verdict {
        RecordVerdict::Accepted { receipt } => {
            assert!(
                receipt.verify(&log_key),
                "the receipt proves inclusion under a signed checkpoint"
            );
            assert_eq!(receipt.record_id, record.record_id());
        }
        other => panic!("{other:?}"),
    }

    // The same request again (same nonce) is a replay.
    let r = signed(
        &http,
        base,
        &terminal,
        "POST",
        "/api/v1/records",
        body.clone(),
        &used,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("replay"));

    // A tampered body breaks the request signature.
    let auth = RequestAuth::sign(
        &terminal,
        "POST",
        "/api/v1/records",
        now_ms(),
        &nonce(6),
        &body,
    );
    let mut tampered = body.clone();
    tampered[20] ^= 1;
    let r = http
        .post(format!("{base}/api/v1/records"))
        .header("x-wuding-key", auth.key_id)
        .header("x-wuding-timestamp", auth.timestamp_ms.to_string())
        .header("x-wuding-nonce", auth.nonce)
        .header("x-wuding-signature", auth.signature)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Malformed JSON (correctly signed) is a 422, not a 500.
    let r = signed(
        &http,
        base,
        &terminal,
        "POST",
        "/api/v1/records",
        b"{\"records\": [1, 2".to_vec(),
        &nonce(7),
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = signed(
        &http,
        base,
        &terminal,
        "POST",
        "/api/v1/records",
        b"{\"records\": [{\"v\":1}]}".to_vec(),
        &nonce(8),
    )
    .await;
    assert_eq!(r.status(), 422);
    // Oversized bodies are refused before anything else. (Its own client: the
    // server answers and closes that connection without reading the body,
    // so the client may see its body write fail before it reads the answer;
    // either way the server goes on serving, as the requests below show.)
    match reqwest::Client::new()
        .post(format!("{base}/api/v1/records"))
        .body(vec![b' '; 17 * 1024 * 1024])
        .send()
        .await
    {
        Ok(r) => assert!(r.status() == 413 || r.status() == 401, "{}", r.status()),
        Err(e) => {
            let chain = format!("{e:?}");
            assert!(
                e.is_request()
                    && (chain.contains("BodyWrite")
                        || chain.contains("BrokenPipe")
                        || chain.contains("ConnectionReset")),
                "the oversized body was not refused by closing: {chain}"
            );
        }
    }

    // The log answers consistency questions; metrics count verdicts.
    let cp: serde_json::Value = http
        .get(format!("{base}/api/v1/log/checkpoint"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cp["checkpoint"]["size"], 1);
    let r = http
        .get(format!("{base}/api/v1/log/consistency?from=2&to=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wuding_records_total{verdict=\"accepted\"} 1"),
        "{metrics}"
    );
    let openapi: serde_json::Value = http
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/records",
        "/api/v1/terminals/register",
        "/api/v1/log/consistency",
        "/metrics",
        "/health",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} is documented");
    }
    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _ = RecordId::GENESIS;
}

#[test]
fn api_over_loopback_sqlite() {
    with_server(common::sqlite(), scenario);
}

#[test]
fn api_over_loopback_postgres() {
    with_server(common::postgres(), scenario);
}
