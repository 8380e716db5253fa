//! The nurse screen over real HTTP on loopback.

use std::sync::mpsc;

use wuding_protocol::example::example_signer;
use wuding_protocol::{FallbackReason, Finger, TreatmentKind};
use wuding_terminal::app::{Core, Input, TemplateVault};
use wuding_terminal::flow::{
    BedsidePolicy, FlowConfig, NurseAction, PatientContext, ProposedSession, Verdict,
};
use wuding_terminal::store::Store;

struct AllowAll;
impl BedsidePolicy for AllowAll {
    fn check(&self, _: &PatientContext, _: &ProposedSession, _: &[TreatmentKind]) -> Vec<Verdict> {
        vec![]
    }
}
struct NoVault;
impl TemplateVault for NoVault {
    fn open(&self, _: &str, _: Finger, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

#[tokio::test]
async fn the_page_and_its_api_answer() {
    let core = Core::new(
        FlowConfig::example(),
        AllowAll,
        Store::in_memory().unwrap(),
        example_signer(),
        NoVault,
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let app = wuding_terminal::ui::router(core.ui(), tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let page = http.get(&base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("床旁终端"));

    let state: serde_json::Value = http
        .get(format!("{base}/api/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["screen"]["screen"], "locked");
    assert_eq!(state["terminal_id"], "T-330102-0007");
    assert_eq!(state["beds"].as_array().unwrap().len(), 3);

    let post =
        |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).json(&body).send();
    assert_eq!(
        post("/api/pin", serde_json::json!({"pin": "2468"}))
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        post("/api/pin", serde_json::json!({"pin": "24a8"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        post(
            "/api/action",
            serde_json::json!({"action": "choose_finger", "finger": "left_index"})
        )
        .await
        .unwrap()
        .status(),
        202
    );
    assert_eq!(
        post(
            "/api/action",
            serde_json::json!({"action": "launch_rockets"})
        )
        .await
        .unwrap()
        .status(),
        422
    );
    assert_eq!(
        post(
            "/api/action",
            serde_json::json!({"action": "choose_treatment", "kind": "CHEMO", "service_code": "311201001",
                               "drug_code": "XL01XA01", "dose": "75 furlongs per"})
        )
        .await
        .unwrap()
        .status(),
        422
    );
    assert_eq!(
        post(
            "/api/fallback",
            serde_json::json!({"reason": "FINGER_INJURED", "witness_id": "N0198", "witness_pin": "1357"})
        )
        .await
        .unwrap()
        .status(),
        202
    );
    assert_eq!(
        post("/api/lang", serde_json::json!({"lang": "fr"}))
            .await
            .unwrap()
            .status(),
        422
    );

    let got: Vec<Input> = rx.try_iter().collect();
    assert_eq!(
        got,
        vec![
            Input::Pin { pin: "2468".into() },
            Input::Nurse(NurseAction::ChooseFinger(Finger::LeftIndex)),
            Input::Fallback {
                reason: FallbackReason::FingerInjured,
                witness_id: "N0198".into(),
                witness_pin: "1357".into()
            },
        ]
    );
}
