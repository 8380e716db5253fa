//! The auditor application's API over real HTTP on loopback, on SQLite and
//! PostgreSQL: every route against every role, login lock-out, CSRF, the
//! case workflow with its deadlines, hospital scoping, masking, the audit
//! trail and the append-only history.

mod common;

use common::{App, Browser};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wuding_protocol::TerminalSigner;
use wuding_server::casework::Role;
use wuding_server::http::{AppState, Metrics, ServerOptions, router_with};
use wuding_server::ingest::{IngestPolicy, Log};
use wuding_server::store::{FindingRow, Store};
use wuding_server::web::{ROUTE_ROLES, add_user};

const T0: i64 = 1_790_000_000_000;
const DAY: i64 = 86_400_000;
const PASSWORD: &str = "correct horse battery";
const OWN: &str = "H51010400003";
const OTHER: &str = "H51020500007";

fn finding(id: &str, hospital: &str, rule: &str, severity: &str, amount: u64) -> FindingRow {
    FindingRow {
        id: id.into(),
        rule_id: rule.into(),
        ruleset_version: "test".into(),
        severity: severity.into(),
        service_date: Some("2026-10-14".into()),
        subject_type: "claim".into(),
        subject_id: format!("C-{id}"),
        hospital_code: Some(hospital.into()),
        insured_id: Some("P5101000001234".into()),
        claim_ids: vec![format!("C-{id}")],
        record_ids: vec![],
        amount_fen: amount,
        params: Default::default(),
        explanation_zh: "申报了一次终端没有证实的透析".into(),
        explanation_en: "a claimed session no terminal attested".into(),
        status: "open".into(),
        first_seen_ms: 0,
        last_seen_ms: 0,
    }
}

fn with_app(db: common::TestDb, f: impl AsyncFnOnce(&App)) {
    let store: Arc<dyn Store> = Arc::from(wuding_server::store::open(&db.url).unwrap());
    for (name, role, hospital) in [
        ("auditor", Role::Auditor, None),
        ("senior", Role::SeniorAuditor, None),
        ("hospital", Role::Hospital, Some(OWN)),
        ("other-hospital", Role::Hospital, Some(OTHER)),
        ("admin", Role::Admin, None),
    ] {
        add_user(&*store, name, name, role, hospital, PASSWORD, T0).unwrap();
    }
    store
        .upsert_findings(
            &[
                finding("f-own-1", OWN, "phantom_session", "red", 52_000),
                finding("f-own-2", OWN, "short_dialysis", "yellow", 0),
                finding("f-other", OTHER, "phantom_session", "red", 48_000),
                finding("f-own-3", OWN, "inflated_count", "red", 30_000),
            ],
            T0,
        )
        .unwrap();
    // As a reconciliation run does after storing findings.
    store.refresh_finding_totals("2026-10", "2026-10").unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let c = clock.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let state = AppState {
            store: store.clone(),
            log: Arc::new(Log::new(TerminalSigner::from_seed(&[7; 32]))),
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(move || c.load(Ordering::SeqCst)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router_with(state, ServerOptions::default());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let app = App {
            base,
            clock,
            store: store.clone(),
            http: reqwest::Client::new(),
        };
        f(&app).await;
    });
    drop(runtime);
    drop(store);
    drop(db);
}

/// Every route x every role (and nobody): anything not allowed answers
/// 401 or 403 and carries no data; anything allowed is not refused.
async fn route_matrix(app: &App) {
    let mut browsers = Vec::new();
    for (name, role) in [
        ("auditor", "auditor"),
        ("senior", "senior_auditor"),
        ("hospital", "hospital"),
        ("admin", "admin"),
    ] {
        let (status, b, _) = app.login(name, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{name} logs in");
        browsers.push((role, Some(b.unwrap())));
    }
    browsers.push(("nobody", None));
    let mut checked = 0;
    for (method, route, allowed) in ROUTE_ROLES {
        if *route == "/api/v1/app/login" || *route == "/api/v1/app/logout" {
            continue; // logging in and out is tested on its own
        }
        let path = route
            .replace("{id}", "f-own-1")
            .replace("{n}", "0")
            .replace("{ref}", "0123456789abcdef");
        for (role, browser) in &browsers {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let body = (method == Method::POST).then(|| json!({}));
            let (status, bytes) = app
                .call(browser.as_ref(), method.clone(), &path, body)
                .await;
            let may = *allowed == "*"
                || (*allowed == "user" && browser.is_some())
                || allowed.split(',').any(|r| r == *role);
            if may {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{role} may {method} {path} but got {status}"
                );
            } else {
                let expected = if browser.is_some() {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::UNAUTHORIZED
                };
                assert_eq!(status, expected, "{role} {method} {path}");
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
                assert_eq!(keys, ["error", "message"], "{role} {method} {path}: {v}");
            }
            assert!(
                !status.is_server_error(),
                "{role} {method} {path}: {status}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} route x role pairs checked");
}

async fn lockout_and_csrf(app: &App) {
    // Same answer for an unknown name and a wrong password.
    let (s1, _, b1) = app.login("nosuchuser", "whatever-password").await;
    let (s2, _, b2) = app.login("auditor", "wrong password!").await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(b1["message"], b2["message"]);
    for _ in 0..4 {
        app.login("auditor", "wrong password!").await;
    }
    let (status, browser, body) = app.login("auditor", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(browser.is_none());
    app.clock.fetch_add(16 * 60_000, Ordering::SeqCst);
    let (status, browser, _) = app.login("auditor", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "unlocked after 15 minutes");
    let browser = browser.unwrap();

    // A state change without the CSRF token is refused and changes nothing.
    let (status, _) = app
        .call(
            Some(&Browser {
                csrf: String::new(),
                ..browser.clone()
            }),
            Method::POST,
            "/api/v1/app/findings/f-own-2/actions",
            Some(json!({"action": "confirm", "reason": "no session attested"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let store = app.store.clone();
    let status_now =
        tokio::task::spawn_blocking(move || store.finding("f-own-2").unwrap().unwrap().status)
            .await
            .unwrap();
    assert_eq!(status_now, "open");
    // A form post (not JSON) cannot log in.
    let res = app
        .http
        .post(format!("{}/api/v1/app/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=auditor&password={PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Logged out, the cookie is worthless.
    let (status, _) = app
        .call(Some(&browser), Method::POST, "/api/v1/app/logout", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(Some(&browser), Method::GET, "/api/v1/app/me", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let store = app.store.clone();
    let trail: Vec<String> = tokio::task::spawn_blocking(move || store.audit_trail(100).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(trail.contains(&"login_failed".to_owned()));
    assert!(trail.contains(&"login_refused".to_owned()));
}

async fn workflow(app: &App) {
    let (_, auditor, _) = app.login("auditor", PASSWORD).await;
    let (_, senior, _) = app.login("senior", PASSWORD).await;
    let (_, hospital, _) = app.login("hospital", PASSWORD).await;
    let (_, other, _) = app.login("other-hospital", PASSWORD).await;
    let (auditor, senior, hospital, other) = (
        auditor.unwrap(),
        senior.unwrap(),
        hospital.unwrap(),
        other.unwrap(),
    );
    let act = |who: Browser, id: &'static str, body: Value| async move {
        app.json(
            &who,
            Method::POST,
            &format!("/api/v1/app/findings/{id}/actions"),
            Some(body),
        )
        .await
    };

    // Masked in the list; totals over the filter.
    let (status, list) = app
        .json(
            &auditor,
            Method::GET,
            "/api/v1/app/findings?severity=red",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 3);
    assert_eq!(list["total_fen"], 130_000);
    assert_eq!(list["by_severity"]["red"]["findings"], 3);
    assert_eq!(list["rows"][0]["insured_id"], "P510********34");
    assert!(
        !serde_json::to_string(&list)
            .unwrap()
            .contains("P5101000001234")
    );

    // The hospital sees nothing before the fund notifies it.
    let (_, list) = app
        .json(&hospital, Method::GET, "/api/v1/app/findings", None)
        .await;
    assert_eq!(list["total"], 0);
    let (status, _) = app
        .json(&hospital, Method::GET, "/api/v1/app/findings/f-own-1", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // 初审: confirm (the hospital is notified) -- a reason is required.
    let (status, body) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "confirm", "reason": ""}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "confirm", "reason": "claimed HD on 14 Oct, no terminal record"}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("notified"))
    );
    let (_, body) = act(
        auditor.clone(),
        "f-other",
        json!({"action": "confirm", "reason": "not attested either"}),
    )
    .await;
    assert_eq!(body["status"], "notified");

    // The hospital now sees its own finding, not the other hospital's.
    let (_, list) = app
        .json(&hospital, Method::GET, "/api/v1/app/findings", None)
        .await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["rows"][0]["id"], "f-own-1");
    let (status, _) = app
        .json(&hospital, Method::GET, "/api/v1/app/findings/f-other", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = act(
        other.clone(),
        "f-own-1",
        json!({"action": "appeal", "reason": "we treated the patient"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another hospital cannot even see it"
    );
    // Deducting before the appeal window closes is refused.
    let (status, body) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "deduct", "reason": "no appeal", "amount_fen": 52_000}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may still appeal")
    );

    // 申诉 with an attachment, within the deadline.
    app.clock.fetch_add(2 * 3_600_000, Ordering::SeqCst);
    let (status, body) = act(
        hospital.clone(),
        "f-own-1",
        json!({"action": "appeal", "reason": "the terminal was offline; paper log attached",
               "attachment_name": "log.txt", "attachment_base64": "cGFwZXIgbG9n"}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("appealed")),
        "{body}"
    );
    let (status, bytes) = app
        .call(
            Some(&auditor),
            Method::GET,
            "/api/v1/app/findings/f-own-1/attachments/1",
            None,
        )
        .await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, b"paper log".as_slice())
    );

    // 复审 -> 合议: only a senior auditor decides on the panel.
    let (_, body) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "escalate", "reason": "disputed: offline terminal"}),
    )
    .await;
    assert_eq!(body["status"], "panel");
    let (status, _) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "panel_uphold", "reason": "panel says so"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = act(
        senior.clone(),
        "f-own-1",
        json!({"action": "panel_uphold", "reason": "no record synced since"}),
    )
    .await;
    assert_eq!(body["status"], "upheld");
    // 扣款: not more than the money at stake.
    let (status, _) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "deduct", "reason": "upheld by panel", "amount_fen": 52_001}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "deduct", "reason": "upheld by panel", "amount_fen": 52_000}),
    )
    .await;
    assert_eq!(body["status"], "deducted");
    // A finished case takes no more steps.
    let (status, _) = act(
        auditor.clone(),
        "f-own-1",
        json!({"action": "dismiss", "reason": "changed my mind"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The other hospital appeals in time and the re-review withdraws it.
    let (status, _) = act(
        other.clone(),
        "f-other",
        json!({"action": "appeal", "reason": "too late now?"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "hours in: still in time");
    let (_, body) = act(
        auditor.clone(),
        "f-other",
        json!({"action": "withdraw", "reason": "appeal accepted: patient was there"}),
    )
    .await;
    assert_eq!(body["status"], "withdrawn");

    // No appeal within the window: sessions have expired by then, the
    // appeal is refused and the fund deducts.
    let (_, body) = act(
        auditor.clone(),
        "f-own-3",
        json!({"action": "confirm", "reason": "two HD claimed, one attested"}),
    )
    .await;
    assert_eq!(body["status"], "notified");
    app.clock.fetch_add(16 * DAY, Ordering::SeqCst);
    let (status, _) = app
        .json(&hospital, Method::GET, "/api/v1/app/me", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "sessions last 8 hours");
    let (_, hospital, _) = app.login("hospital", PASSWORD).await;
    let (_, auditor, _) = app.login("auditor", PASSWORD).await;
    let (hospital, auditor) = (hospital.unwrap(), auditor.unwrap());
    let (status, body) = act(
        hospital.clone(),
        "f-own-3",
        json!({"action": "appeal", "reason": "we were late"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("deadline passed"),
        "{body}"
    );
    let (_, body) = act(
        auditor.clone(),
        "f-own-3",
        json!({"action": "deduct", "reason": "no appeal in 15 days", "amount_fen": 30_000}),
    )
    .await;
    assert_eq!(body["status"], "deducted");

    // The case shows the whole history, who, when and why.
    let (status, case) = app
        .json(&hospital, Method::GET, "/api/v1/app/findings/f-own-1", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let steps: Vec<&str> = case["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["confirm", "appeal", "escalate", "panel_uphold", "deduct"]
    );
    assert_eq!(case["events"][4]["amount_fen"], 52_000);
    assert_eq!(case["events"][3]["actor"], "senior");
    assert_eq!(case["finding"]["insured_id"], "P510********34");

    // Revealing needs a fund role and a reason, and is logged.
    let (status, _) = app
        .json(
            &auditor,
            Method::POST,
            "/api/v1/app/findings/f-own-2/reveal",
            Some(json!({"reason": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app
        .json(
            &auditor,
            Method::POST,
            "/api/v1/app/findings/f-own-2/reveal",
            Some(json!({"reason": "phone the patient"})),
        )
        .await;
    assert_eq!(
        (status, body["insured_id"].as_str()),
        (StatusCode::OK, Some("P5101000001234"))
    );
    let store = app.store.clone();
    let trail = tokio::task::spawn_blocking(move || store.audit_trail(500).unwrap())
        .await
        .unwrap();
    assert!(
        trail.iter().any(|e| e.action == "reveal"
            && e.actor == "auditor"
            && e.reason == "phone the patient")
    );
    assert!(
        trail
            .iter()
            .any(|e| e.action == "view_case" && e.actor == "hospital")
    );
}

fn history_is_append_only_on_sqlite(url: &str) {
    let conn = rusqlite::Connection::open(url).unwrap();
    for sql in [
        "UPDATE finding_events SET reason = 'rewritten'",
        "DELETE FROM finding_events",
        "DELETE FROM audit_trail",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
}

fn history_is_append_only_on_postgres(url: &str) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    for sql in [
        "UPDATE finding_events SET reason = 'rewritten'",
        "DELETE FROM finding_events",
        "UPDATE audit_trail SET actor = 'someone else'",
    ] {
        let err = c.execute(sql, &[]).unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("append-only"), "{sql}: {text}");
    }
}

#[test]
fn roles_routes_and_workflow_sqlite() {
    let db = common::sqlite();
    let url = db.url.clone();
    with_app(db, async |app| {
        route_matrix(app).await;
        workflow(app).await;
        lockout_and_csrf(app).await;
        history_is_append_only_on_sqlite(&url);
    });
}

#[test]
fn roles_routes_and_workflow_postgres() {
    let db = common::postgres();
    let url = db.url.clone();
    with_app(db, async |app| {
        route_matrix(app).await;
        workflow(app).await;
        lockout_and_csrf(app).await;
        tokio::task::spawn_blocking(move || history_is_append_only_on_postgres(&url))
            .await
            .unwrap();
    });
}
