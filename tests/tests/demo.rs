//! `wuding-sim demo` end to end, through its library entry point: a server,
//! four terminals on emulated devices, a played week, honest and dishonest
//! claims, reconciliation. The outcome must hold: every claim line the
//! dishonest hospital invented is a red finding, the honest hospital has
//! none, the auditor application answers and its printed login works,
//! and the nurse screens answer.

use std::time::Instant;

use wuding_firmware_host::demo::{DemoArgs, start};

#[test]
fn the_demo_week_turns_every_injected_claim_into_a_red_finding_and_no_honest_one() {
    let dir = tempfile::tempdir().unwrap();
    let args = DemoArgs {
        data: Some(dir.path().join("demo")),
        patients: 12,
        listen: "127.0.0.1:0".into(),
        exit_when_done: true,
        ..DemoArgs::new()
    };
    let started = Instant::now();
    let demo = start(&args, &mut |line| println!("{line}")).expect("the demo runs");
    println!("demo ready in {:?}", started.elapsed());
    let report = demo.report.clone();

    // The week happened at the bedside, with fallbacks and a network cut.
    assert!(report.sessions >= 20, "{} sessions", report.sessions);
    assert!(report.fallbacks >= 1, "no supervised fallback was played");
    assert!(
        report.queued_while_offline >= 1,
        "the terminal cut off queued nothing"
    );
    assert_eq!(
        report.summary.sessions, report.sessions,
        "records on the server"
    );
    let mut kinds: Vec<&str> = report.injected.iter().map(|i| i.kind).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "dose_above_plan",
            "extra_session",
            "phantom_session",
            "service_swapped"
        ]
    );

    let findings = demo.findings().unwrap();
    let red: Vec<_> = findings.iter().filter(|f| f.severity == "red").collect();
    for i in &report.injected {
        assert!(
            red.iter()
                .any(|f| f.rule_id == i.rule_id && f.claim_ids.contains(&i.claim_id)),
            "injected {} ({}) is not a red {} finding",
            i.kind,
            i.claim_id,
            i.rule_id
        );
    }
    for f in &red {
        assert!(
            !f.claim_ids.iter().any(|c| report.honest_claims.contains(c)),
            "red finding {} ({}) on an honest claim: {}",
            f.id,
            f.rule_id,
            f.explanation_en
        );
        assert!(
            report
                .dishonest_claims
                .iter()
                .any(|c| f.claim_ids.contains(c)),
            "red finding {} ({}) names no dishonest claim: {}",
            f.id,
            f.rule_id,
            f.explanation_en
        );
    }

    // The auditor application and every nurse screen answer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let page = http
            .get(format!("{}/", report.server_url))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "GET / of the server");
        // The auditor login the demo printed works.
        let (user, password, _) = &report.logins[0];
        let login = http
            .post(format!("{}/api/v1/app/login", report.server_url))
            .json(&serde_json::json!({ "username": user, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "auditor login");
        for (id, _, url) in &report.nurse_screens {
            let page = http.get(url).send().await.unwrap();
            assert_eq!(page.status(), 200, "nurse screen of {id}");
        }
    });
    drop(rt);
    demo.shutdown();
}
