//! The administrator API and fingerprint templates over real HTTP on
//! loopback, on both backends: bearer-token access, approval and
//! revocation, roster and claims uploads with row errors, templates sealed
//! at rest and delivered sealed under the hospital's roster key.

mod common;

use std::sync::Arc;

use base64::Engine;
use wuding_protocol::api::{
    RecordVerdict, RegistrationRequest, RequestAuth, RosterDelta, RosterKeyRequest,
    RosterKeyResponse, RosterTemplate, SealKey, SealPurpose, UploadResponse, open_template,
    seal_template, unwrap_roster_key, x25519_public,
};
use wuding_protocol::example::example_session;
use wuding_protocol::{Finger, Record, TemplateRef, TerminalSigner};
use wuding_server::http::{AdminToken, AppState, Metrics, ServerOptions, router_with};
use wuding_server::ingest::{IngestPolicy, Log};
use wuding_server::templates::TemplateVault;

const TOKEN: &str = "correct-horse-battery-staple";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn with_server(db: common::TestDb, f: impl AsyncFnOnce(&str)) {
    let store: Arc<dyn wuding_server::store::Store> =
        Arc::from(wuding_server::store::open(&db.url).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let state = AppState {
            store: store.clone(),
            log: Arc::new(Log::new(TerminalSigner::from_seed(&[99; 32]))),
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(now_ms),
        };
        let options = ServerOptions {
            admin_token: AdminToken::new(TOKEN),
            vault: Some(Arc::new(TemplateVault::new(SealKey([42; 32])))),
            ..ServerOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router_with(state, options);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        f(&base).await;
    });
    drop(runtime);
    drop(store);
    drop(db);
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

async fn signed(
    http: &reqwest::Client,
    base: &str,
    signer: &TerminalSigner,
    method: &str,
    path_and_query: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nonce = format!("{:032x}", (n as u128) << 64 | now_ms() as u128);
    let path = path_and_query.split('?').next().unwrap();
    let auth = RequestAuth::sign(signer, method, path, now_ms(), &nonce, &body);
    let req = match method {
        "GET" => http.get(format!("{base}{path_and_query}")),
        _ => http.post(format!("{base}{path_and_query}")).body(body),
    };
    req.header("x-wuding-key", auth.key_id)
        .header("x-wuding-timestamp", auth.timestamp_ms.to_string())
        .header("x-wuding-nonce", auth.nonce)
        .header("x-wuding-signature", auth.signature)
        .send()
        .await
        .unwrap()
}

async fn admin_post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    http.post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn register(http: &reqwest::Client, base: &str, t: &TerminalSigner, id: &str, hosp: &str) {
    let reg = serde_json::to_vec(&RegistrationRequest {
        terminal_id: id.into(),
        hospital_code: hosp.into(),
        department_code: "NEPH-HD".into(),
        public_key: t.public_key().to_hex(),
    })
    .unwrap();
    let r = signed(http, base, t, "POST", "/api/v1/terminals/register", reg).await;
    assert_eq!(r.status(), 202);
}

async fn scenario(base: &str) {
    let http = reqwest::Client::new();
    let terminal = TerminalSigner::from_seed(&[1; 32]);
    register(&http, base, &terminal, "T-330102-0007", "H33010200017").await;
    let other = TerminalSigner::from_seed(&[3; 32]);
    register(&http, base, &other, "T-440305-0001", "H44030500003").await;

    // No token, a wrong token: 401. The right one lists both, pending.
    let r = http
        .get(format!("{base}/api/v1/admin/terminals"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/api/v1/admin/terminals"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let list: serde_json::Value = http
        .get(format!("{base}/api/v1/admin/terminals"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = list["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "pending"]);

    // Approval through the API; approving twice or an unknown id is a 404.
    for id in ["T-330102-0007", "T-440305-0001"] {
        let r = admin_post(
            &http,
            base,
            &format!("/api/v1/admin/terminals/{id}/approve"),
            "",
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let r = admin_post(
        &http,
        base,
        "/api/v1/admin/terminals/T-330102-0007/approve",
        "",
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = admin_post(&http, base, "/api/v1/admin/terminals/nobody/revoke", "").await;
    assert_eq!(r.status(), 404);

    // Rosters by upload: good rows in, the bad one named by line and column.
    let r = admin_post(
        &http,
        base,
        "/api/v1/admin/roster/patients",
        "insured_id,card_uid,name,hospital_code\n\
         330102195403170012,04A1B2C3,王小明,H33010200017\n\
         330102195403170013,nothex,李四,H33010200017\n",
    )
    .await;
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["rows"], 2);
    assert_eq!(report["errors"][0]["line"], 3);
    assert_eq!(report["errors"][0]["column"], "card_uid");
    let r = admin_post(&http, base, "/api/v1/admin/roster/janitors", "a,b\n").await;
    assert_eq!(r.status(), 404);

    // Claims by upload, standard layout and the national fee-detail mapping.
    let claims = "claim_id,insured_id,hospital_code,department_code,doctor_id,service_date,service_code,service_kind,quantity,amount_fen,drug_code,dose\n\
        C1,330102195403170012,H33010200017,NEPH-HD,D0107,2026-11-02,003105010010000,HD,1,42000,,\n\
        C2,330102195403170012,H33010200017,NEPH-HD,D0107,2026-13-02,003105010010000,HD,1,42000,,\n";
    let report: serde_json::Value = admin_post(&http, base, "/api/v1/admin/claims", claims)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["changed"], 1);
    assert_eq!(report["errors"][0]["column"], "service_date");
    let again: serde_json::Value = admin_post(&http, base, "/api/v1/admin/claims", claims)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["changed"], 0, "re-upload changes nothing");
    assert_eq!(again["already_present"], 1);
    let r = admin_post(
        &http,
        base,
        "/api/v1/admin/claims?mapping=national-fee-detail",
        "psn_no,mdtrt_id,med_type,fee_ocur_time,med_list_codg,medins_list_codg,cnt,pric,det_item_fee_sumamt,bilg_dept_codg,bilg_dr_codg,fixmedins_code\n\
         330102195403170012,V9,14,2026-11-04 08:10:00,003105010040000,L1,1,610.00,610.05,NEPH-HD,D0107,H33010200017\n",
    )
    .await;
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["changed"], 1, "{report}");
    let r = admin_post(&http, base, "/api/v1/admin/claims?mapping=nope", claims).await;
    assert_eq!(r.status(), 422);

    // Templates: the administrator stores one; it rests sealed and reaches
    // the hospital's terminal sealed under the roster key.
    let template = b"\x03\x01characteristic-file-of-the-left-index".to_vec();
    let tref = TemplateRef([7; 32]);
    let r = http
        .put(format!("{base}/api/v1/admin/templates"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "hospital_code": "H33010200017",
            "insured_id": "330102195403170012",
            "finger": "left_index",
            "template": base64::engine::general_purpose::STANDARD.encode(&template),
            "template_ref": hex::encode(tref.0),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .put(format!("{base}/api/v1/admin/templates"))
        .bearer_auth(TOKEN)
        .body("{\"hospital_code\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let t_secret = [21u8; 32];
    let req = serde_json::to_vec(&RosterKeyRequest {
        x25519_public: hex::encode(x25519_public(&t_secret)),
    })
    .unwrap();
    let r = signed(&http, base, &terminal, "POST", "/api/v1/roster/key", req).await;
    assert_eq!(r.status(), 200);
    let roster_key = unwrap_roster_key(&t_secret, &r.json::<RosterKeyResponse>().await.unwrap())
        .expect("the wrapped roster key opens with the terminal's secret");
    let weak = serde_json::to_vec(&RosterKeyRequest {
        x25519_public: hex::encode([0u8; 32]),
    })
    .unwrap();
    let r = signed(&http, base, &terminal, "POST", "/api/v1/roster/key", weak).await;
    assert_eq!(r.status(), 422);

    let delta: RosterDelta = signed(
        &http,
        base,
        &terminal,
        "GET",
        "/api/v1/roster?since=0",
        vec![],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(delta.patients.len(), 1);
    assert_eq!(delta.templates.len(), 1);
    let t = &delta.templates[0];
    assert_eq!(t.template_ref, tref);
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&t.sealed)
        .unwrap();
    let opened = open_template(
        &roster_key,
        SealPurpose::Transit,
        &t.insured_id,
        t.finger,
        &sealed,
    )
    .unwrap();
    assert_eq!(opened, template);

    // The other hospital's terminal sees neither the patient nor the template.
    let theirs: RosterDelta = signed(&http, base, &other, "GET", "/api/v1/roster?since=0", vec![])
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.patients.is_empty() && theirs.templates.is_empty());

    // A terminal uploads a template it enrolled, sealed under its roster key.
    let right = b"right-thumb-template".to_vec();
    let upload = RosterTemplate {
        insured_id: "330102195403170012".into(),
        finger: Finger::RightThumb,
        sealed: base64::engine::general_purpose::STANDARD.encode(
            seal_template(
                &roster_key,
                SealPurpose::Transit,
                "330102195403170012",
                Finger::RightThumb,
                &right,
                Some([5; 24]),
            )
            .unwrap(),
        ),
        template_ref: TemplateRef([8; 32]),
    };
    let r = signed(
        &http,
        base,
        &terminal,
        "POST",
        "/api/v1/templates",
        serde_json::to_vec(&upload).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 200);
    // The other hospital's terminal cannot plant it (wrong roster key).
    let r = signed(
        &http,
        base,
        &other,
        "POST",
        "/api/v1/templates",
        serde_json::to_vec(&upload).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 422);
    let next: RosterDelta = signed(
        &http,
        base,
        &terminal,
        "GET",
        &format!("/api/v1/roster?since={}", delta.cursor),
        vec![],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(next.templates.len(), 1);
    assert_eq!(next.templates[0].finger, Finger::RightThumb);

    // Revocation through the API: a record signed before it is accepted,
    // one signed after it is refused as `revoked`.
    let first = terminal.sign(&Record::Session(example_session())).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({"records": [first]})).unwrap();
    let up: UploadResponse = signed(&http, base, &terminal, "POST", "/api/v1/records", body)
        .await
        .json()
        .await
        .unwrap();
    assert!(matches!(
        up.results[0].verdict,
        RecordVerdict::Accepted { .. }
    ));
    let r = admin_post(
        &http,
        base,
        "/api/v1/admin/terminals/T-330102-0007/revoke",
        "",
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut later = example_session();
    later.seq = 2;
    later.prev = first.record_id();
    later.signed_at_ms = now_ms() + 1_000;
    let later = terminal.sign(&Record::Session(later)).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({"records": [later]})).unwrap();
    let up: UploadResponse = signed(&http, base, &terminal, "POST", "/api/v1/records", body)
        .await
        .json()
        .await
        .unwrap();
    match &up.results[0].verdict {
        RecordVerdict::Rejected { reason, .. } => assert_eq!(reason, "revoked"),
        other => panic!("{other:?}"),
    }
    // A revoked terminal no longer receives rosters or the roster key.
    let r = signed(
        &http,
        base,
        &terminal,
        "GET",
        "/api/v1/roster?since=0",
        vec![],
    )
    .await;
    assert_eq!(r.status(), 403);
    let alarms: serde_json::Value = http
        .get(format!("{base}/api/v1/admin/alarms"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(alarms["alarms"].is_array());
}

#[test]
fn admin_api_and_templates_sqlite() {
    with_server(common::sqlite(), scenario);
}

#[test]
fn admin_api_and_templates_postgres() {
    with_server(common::postgres(), scenario);
}

#[test]
fn admin_api_is_off_without_a_token() {
    let db = common::sqlite();
    let store: Arc<dyn wuding_server::store::Store> =
        Arc::from(wuding_server::store::open(&db.url).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let state = AppState {
            store: store.clone(),
            log: Arc::new(Log::new(TerminalSigner::from_seed(&[99; 32]))),
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(now_ms),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = wuding_server::http::router(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let r = reqwest::Client::new()
            .get(format!("{base}/api/v1/admin/terminals"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    });
    drop(runtime);
    drop(store);
}
