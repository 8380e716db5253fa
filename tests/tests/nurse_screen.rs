//! The nurse screen in a real headless Chromium: the PIN pad logs a nurse in
//! after a staff card, the language switch works, beds are listed.

use std::sync::mpsc;
use std::time::Duration;

use wuding_protocol::example::example_signer;
use wuding_protocol::{Finger, TreatmentKind};
use wuding_terminal::app::{Core, Input, TemplateVault, hash_pin};
use wuding_terminal::flow::{BedsidePolicy, FlowConfig, PatientContext, ProposedSession, Verdict};
use wuding_terminal::store::{CachedStaff, Store};
use wuding_tests::Browser;

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

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nurse_logs_in_with_card_and_pin_pad() {
    let mut store = Store::in_memory().unwrap();
    store
        .put_staff(&CachedStaff {
            staff_id: "N0231".into(),
            card_uid: "04FF0001".into(),
            display_name: "李护士".into(),
            pin_hash: hash_pin("2468"),
        })
        .unwrap();
    let core = Core::new(
        FlowConfig::example(),
        AllowAll,
        store,
        example_signer(),
        NoVault,
    )
    .unwrap();
    let ui_state = core.ui();
    let (tx, rx) = mpsc::channel();
    let _core = wuding_terminal::runtime::spawn_core(core, rx, |_| {});
    let app = wuding_terminal::ui::router(ui_state, tx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let browser = Browser::start().await.expect("headless Chromium");
    browser
        .client
        .goto(&format!("http://{addr}/"))
        .await
        .unwrap();
    if let Err(e) = browser.wait_text("message", "请护士刷工作卡", WAIT).await {
        browser.screenshot("debug-locked").await.unwrap();
        let src = browser.client.source().await.unwrap();
        let r = browser
            .client
            .execute(
                "return document.getElementById('message').outerHTML + ' ' + JSON.stringify(state)",
                vec![],
            )
            .await;
        panic!("{e}: {r:?} {}", &src[..200]);
    }
    browser.wait_text("beds", "B01", WAIT).await.unwrap();

    // The card reader reads the nurse's staff card.
    tx.send(Input::Card {
        uid: "04FF0001".into(),
    })
    .unwrap();
    for key in ["2", "4", "6", "8", "OK"] {
        browser.click(&format!("pin-{key}"), WAIT).await.unwrap();
    }
    browser.wait_text("who", "李护士", WAIT).await.unwrap();
    browser
        .wait_text("message", "请患者刷医保卡", WAIT)
        .await
        .unwrap();
    browser.screenshot("terminal-idle-zh").await.unwrap();

    browser.click("lang", WAIT).await.unwrap();
    browser
        .wait_text("message", "Patient: tap the insurance card", WAIT)
        .await
        .unwrap();
    browser.screenshot("terminal-idle-en").await.unwrap();
    browser.close().await;
}
