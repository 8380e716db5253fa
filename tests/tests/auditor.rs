//! The auditor application end to end in headless Chromium, against a real
//! wuding-server on loopback filled with a generated month (the scenario
//! generator's signed records, claims and injected frauds) and reconciled:
//! an auditor logs in, filters findings, opens a case whose records verify,
//! confirms it; the hospital's user sees only its own institution's
//! findings, with identifiers masked, and appeals; the auditor upholds and
//! deducts. Screenshots of the main pages go to artifacts/screenshots.

use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use wuding_firmware_host::scenario::{ScenarioConfig, generate};
use wuding_protocol::TerminalSigner;
use wuding_server::casework::Role;
use wuding_server::ingest::Log;
use wuding_server::store::{FindingFilter, FindingRow, Store};
use wuding_server::web::add_user;
use wuding_tests::{Browser, now_ms, start_server};

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "audit-password-2026";
const LOG_SEED: u8 = 5;

async fn login(b: &Browser, base: &str, user: &str) {
    b.client
        .goto(&format!("{base}/#/login"))
        .await
        .expect("open login");
    b.wait_css("#login-form", "", WAIT)
        .await
        .expect("login form");
    b.fill("#username", user).await.unwrap();
    b.fill("#password", PASSWORD).await.unwrap();
    b.click_css("#login-button", WAIT).await.unwrap();
    b.wait_css("#who", user, WAIT).await.expect("logged in");
}

async fn logout(b: &Browser) {
    b.click_css("#logout", WAIT).await.unwrap();
    b.wait_css("#login-form", "", WAIT)
        .await
        .expect("back at login");
}

/// Takes a workflow step on the open case page and waits for the new status.
async fn act(b: &Browser, action: &str, reason: &str, amount_yuan: Option<&str>, status: &str) {
    b.wait_css("#action-form", "", WAIT)
        .await
        .expect("action form");
    b.client
        .find(Locator::Css("#a-action"))
        .await
        .unwrap()
        .select_by_value(action)
        .await
        .unwrap_or_else(|e| panic!("action {action} not offered: {e}"));
    b.fill("#a-reason", reason).await.unwrap();
    if let Some(a) = amount_yuan {
        b.fill("#a-amount", a).await.unwrap();
    }
    b.click_css("#a-submit", WAIT).await.unwrap();
    b.wait_css("#case-status", status, WAIT)
        .await
        .unwrap_or_else(|e| panic!("after {action}: {e}"));
}

async fn open_case(b: &Browser, base: &str, id: &str) {
    b.client.goto(&format!("{base}/#/case/{id}")).await.unwrap();
    b.wait_css("#history", "", WAIT).await.expect("case page");
}

/// The page's own fetch of an API path, with its cookie: the HTTP status.
async fn status_of(b: &Browser, path: &str) -> u64 {
    b.client
        .execute_async(
            &format!(
                "const done = arguments[0]; fetch('{path}').then(r => done(r.status), () => done(0));"
            ),
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

#[test]
fn a_case_from_machine_finding_through_appeal_to_deduction() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ScenarioConfig::new(150, 2026, 10);
    cfg.seed = 20_261_122;
    generate(&cfg).write_to(dir.path()).unwrap();
    let store: Arc<dyn Store> = Arc::from(
        wuding_server::store::open(&dir.path().join("server.db").display().to_string()).unwrap(),
    );
    let log = Log::new(TerminalSigner::from_seed(&[LOG_SEED; 32]));
    wuding_server::month::load_dir(&*store, &log, dir.path(), &now_ms).unwrap();
    let rules = wuding_server::reconcile::load_rules(None).unwrap();
    let period = wuding_server::reconcile::period("2026-10-01", "2026-10-31").unwrap();
    let (summary, _) =
        wuding_server::reconcile::run(&*store, &rules, period, now_ms(), false).unwrap();
    assert!(summary.total.findings > 0);

    // A red finding resting on both a claim line and a signed record.
    let red = store
        .findings(&FindingFilter {
            severity: Some("red".into()),
            ..FindingFilter::default()
        })
        .unwrap();
    let case: FindingRow = red
        .iter()
        .find(|f| {
            !f.record_ids.is_empty()
                && !f.claim_ids.is_empty()
                && f.amount_fen > 0
                && f.insured_id.is_some()
                && f.hospital_code.is_some()
        })
        .expect("a red finding with a record and a claim")
        .clone();
    let own = case.hospital_code.clone().unwrap();
    let foreign = red
        .iter()
        .find(|f| f.hospital_code.as_deref().is_some_and(|h| h != own))
        .expect("a red finding at another hospital")
        .clone();
    for (name, role, hospital) in [
        ("auditor", Role::Auditor, None),
        ("hospital", Role::Hospital, Some(own.as_str())),
    ] {
        add_user(&*store, name, name, role, hospital, PASSWORD, now_ms()).unwrap();
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let base = start_server(store.clone(), LOG_SEED).await;
        let b = Browser::start().await.expect("chromium");

        // The auditor: dashboard, filtered findings, the case.
        login(&b, &base, "auditor").await;
        b.wait_css("#tile-attested", "", WAIT).await.expect("dashboard");
        b.screenshot("auditor-dashboard").await.unwrap();

        // Every dashboard number opens what it counts: the attested tile
        // opens the patients behind it; the drill-down goes county ->
        // hospital -> patient -> record, the record verified and held
        // against the patient's 五定 plan.
        b.click_css("#tile-attested", WAIT).await.unwrap();
        b.wait_css("#patients-table tr.click", "", WAIT).await.expect("patients behind the tile");
        b.client
            .goto(&format!("{base}/#/dashboard?region={}", &own[..7]))
            .await
            .unwrap();
        b.wait_css(&format!("#children tr[data-code='{own}'] .drill-hospital"), &own, WAIT)
            .await
            .expect("the hospital in its county");
        b.click_css(&format!("#children tr[data-code='{own}'] .drill-hospital"), WAIT).await.unwrap();
        b.wait_css("#patients-region", &own, WAIT).await.expect("the hospital's patients");
        let masked = b
            .js("return [...document.querySelectorAll('#patients-table td.masked')].map(c => c.innerText);")
            .await
            .unwrap();
        let masked = masked.as_array().unwrap();
        assert!(!masked.is_empty());
        assert!(masked.iter().all(|m| m.as_str().unwrap().contains('*')), "{masked:?}");
        b.screenshot("auditor-patients").await.unwrap();
        b.click_css("#patients-table tr.click td.masked a", WAIT).await.unwrap();
        b.wait_css("#patient-months", "", WAIT).await.expect("the patient page");
        b.screenshot("auditor-patient").await.unwrap();
        b.click_css("#patient-entries .record-link", WAIT).await.unwrap();
        b.wait_css("#records .sig", "已验证", WAIT).await.expect("the record verifies");
        b.wait_css("#records .incl", "已验证", WAIT).await.expect("the record is in the log");
        b.wait_css("#plan-check", "定医生", WAIT).await.expect("the record against the plan");
        b.screenshot("auditor-record").await.unwrap();
        b.client.goto(&format!("{base}/#/terminals")).await.unwrap();
        b.wait_css("#terminals-table td.held", "", WAIT).await.expect("records waiting per terminal");
        b.client
            .goto(&format!("{base}/#/findings?severity=red&hospital={own}"))
            .await
            .unwrap();
        let total = b.wait_css("#total-count", "", WAIT).await.unwrap();
        assert!(total.replace(',', "").parse::<u64>().unwrap() >= 1);
        let rows = b.js(
            "return [...document.querySelectorAll('#findings-table tr.click')].map(r => [r.cells[0].innerText, r.cells[3].innerText, r.cells[4].innerText]);",
        )
        .await
        .unwrap();
        for row in rows.as_array().unwrap() {
            assert_eq!(row[1], own.as_str(), "filtered to one hospital: {row}");
            let patient = row[2].as_str().unwrap();
            assert!(patient.is_empty() || patient.contains('*'), "masked: {row}");
        }
        let html = b.client.source().await.unwrap();
        assert!(
            !html.contains(case.insured_id.as_deref().unwrap()),
            "the full insured id is not on the page"
        );
        b.screenshot("auditor-findings").await.unwrap();

        open_case(&b, &base, &case.id).await;
        b.wait_css("#records .sig", "已验证", WAIT)
            .await
            .expect("signature verified");
        b.wait_css("#records .incl", "已验证", WAIT)
            .await
            .expect("included in the transparency log");
        let plan = b.wait_css("#plan-check", "", WAIT).await.unwrap();
        assert!(plan.contains("定医院") || plan.contains("无有效"), "{plan}");
        b.screenshot("auditor-case").await.unwrap();
        act(&b, "confirm", "申报与终端记录不符，通知医院", None, "已通知医院").await;
        logout(&b).await;

        // The hospital: only its own institution, masked; appeals.
        login(&b, &base, "hospital").await;
        b.wait_css("#total-count", "", WAIT).await.unwrap();
        let hospitals = b
            .js("return [...document.querySelectorAll('#findings-table tr.click')].map(r => r.cells[3].innerText);")
            .await
            .unwrap();
        let hospitals = hospitals.as_array().unwrap();
        assert!(!hospitals.is_empty());
        assert!(hospitals.iter().all(|h| h == own.as_str()), "{hospitals:?}");
        assert_eq!(
            status_of(&b, &format!("/api/v1/app/findings/{}", foreign.id)).await,
            404,
            "another hospital's finding is invisible"
        );
        assert_eq!(status_of(&b, "/api/v1/app/export?format=csv").await, 403);
        open_case(&b, &base, &case.id).await;
        act(&b, "appeal", "患者当日确实到院，附护理记录", None, "申诉中").await;
        b.screenshot("hospital-appeal").await.unwrap();
        logout(&b).await;

        // The auditor upholds and deducts.
        login(&b, &base, "auditor").await;
        open_case(&b, &base, &case.id).await;
        act(&b, "uphold", "护理记录与终端签名记录不符", None, "维持").await;
        let yuan = format!("{}.{:02}", case.amount_fen / 100, case.amount_fen % 100);
        act(&b, "deduct", "复审维持，按申报金额扣款", Some(&yuan), "已扣款").await;
        let history = b.wait_css("#history", "扣款", WAIT).await.unwrap();
        for step in ["初审确认", "申诉", "复审维持", "扣款"] {
            assert!(history.contains(step), "{step} in {history}");
        }
        b.screenshot("auditor-case-deducted").await.unwrap();

        // The evidence bundle the case page links to verifies offline, and
        // the findings export as a spreadsheet.
        let cookie = b
            .client
            .get_named_cookie("wuding_session")
            .await
            .expect("the session cookie");
        let http = reqwest::Client::new();
        let get = |path: String| {
            http.get(format!("{base}{path}"))
                .header("cookie", format!("wuding_session={}", cookie.value()))
                .send()
        };
        let res = get(format!("/api/v1/app/findings/{}/evidence", case.id))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let bundle = res.bytes().await.unwrap();
        let report = wuding_server::evidence::verify_bundle(&bundle).unwrap();
        assert!(report.passed(), "{}", report.render());
        let res = get("/api/v1/app/export?format=xlsx&severity=red".into())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(&res.bytes().await.unwrap()[..2], b"PK", "an XLSX (zip) file");
        b.close().await;
    });
    drop(runtime);
    let stored = store.finding(&case.id).unwrap().unwrap();
    assert_eq!(stored.status, "deducted");
    let trail = store.audit_trail(1000).unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.actor == "hospital" && e.action == "view_case" && e.subject == case.id)
    );
}
