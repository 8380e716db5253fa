//! The whole bedside service end to end: `wuding_terminal::service` (the
//! code behind `wuding-terminal run`) against emulated devices on
//! pseudo-terminals and a real wuding-server on loopback, driven through
//! the nurse screen in headless Chromium.
//!
//! The terminal registers and waits for approval; the administrator
//! approves; the roster (patient, plan, prices, nurse) and the hospital
//! roster key arrive; the nurse logs in with card + PIN, enrols the
//! patient's finger (the template is sealed, cached, uploaded); the patient
//! taps the card with the finger on the sensor and the session opens; the
//! terminal restarts with the session open; the same card and finger
//! check out; the signed records reach the server, and the terminal
//! retires them only on the server's verified receipts.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wuding_firmware_host::devices::{Devices, DevicesArgs};
use wuding_protocol::api::SealKey;
use wuding_server::roster::{RosterKind, import};
use wuding_server::store::Store as ServerStore;
use wuding_terminal::config::Config;
use wuding_terminal::service::Service;
use wuding_tests::{Browser, now_ms};

const WAIT: Duration = Duration::from_secs(20);
const TERMINAL: &str = "T-330102-0077";
const HOSPITAL: &str = "H33010200017";
const PATIENT: &str = "330102195403170012";
const PATIENT_CARD: &str = "04A1B2C3";
const NURSE_CARD: &str = "04FF0001";

fn seed_roster(store: &dyn ServerStore) {
    import(
        store,
        RosterKind::Patients,
        format!(
            "insured_id,card_uid,name,hospital_code\n{PATIENT},{PATIENT_CARD},王小明,{HOSPITAL}\n"
        )
        .as_bytes(),
    )
    .unwrap();
    import(
        store,
        RosterKind::Staff,
        format!(
            "staff_id,card_uid,name,role,hospital_code,pin\nN0231,{NURSE_CARD},李护士,nurse,{HOSPITAL},2468\n"
        )
        .as_bytes(),
    )
    .unwrap();
    import(
        store,
        RosterKind::Plans,
        format!(
            "plan_id,insured_id,hospital_code,department_code,doctor_ids,kinds,drug_code,max_dose,max_sessions_per_week,valid_from,valid_to\n\
             PL-1,{PATIENT},{HOSPITAL},NEPH-HD,D0107,HD,,,3,2020-01-01,2099-12-31\n"
        )
        .as_bytes(),
    )
    .unwrap();
    import(
        store,
        RosterKind::Prices,
        format!("hospital_code,code,unit_price_fen\n{HOSPITAL},003105010010000,42000\n").as_bytes(),
    )
    .unwrap();
}

fn config(data_dir: &Path, server: &str, devices: &Devices) -> Config {
    let text = format!(
        r#"
[terminal]
id = "{TERMINAL}"
hospital_code = "{HOSPITAL}"
department_code = "NEPH-HD"
beds = ["B01", "B02"]
duty_doctor_id = "D0107"
data_dir = "{data}"

[server]
url = "{server}"
sync_interval_s = 1

[devices]
fingerprint = "{fp}"

[devices.card_reader]
kind = "pn532"
path = "{nfc}"

[ui]
listen = "127.0.0.1:0"
"#,
        data = data_dir.display(),
        fp = devices.fingerprint_link().display(),
        nfc = devices.nfc_link().display(),
    );
    Config::parse(&text, Path::new("checkin.toml")).unwrap()
}

/// Lifts the card and waits until the reader has polled the empty field
/// a few times (the terminal forgets a card after two empty polls), so the
/// next presentation is a new tap.
fn remove_card(devices: &Devices) {
    devices.control("card remove").unwrap();
    let before = devices.status().nfc_commands;
    let deadline = Instant::now() + WAIT;
    while devices.status().nfc_commands < before + 4 {
        assert!(Instant::now() < deadline, "the card reader stopped polling");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn enrol_check_in_and_out_through_the_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let server_store: Arc<dyn ServerStore> = Arc::from(
        wuding_server::store::open(dir.path().join("server.db").to_str().unwrap()).unwrap(),
    );
    seed_roster(&*server_store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = wuding_server::http::ServerOptions {
        vault: Some(Arc::new(wuding_server::templates::TemplateVault::new(
            SealKey([11; 32]),
        ))),
        ..Default::default()
    };
    let server = runtime.block_on(wuding_tests::start_server_with(
        server_store.clone(),
        7,
        options,
    ));

    let mut args = DevicesArgs::new(&dir.path().join("devices"));
    // WUDING_REALISTIC_TIMINGS=1: the emulator's module timings (250 ms
    // image, 280 ms extraction, ...) instead of instant answers, to see
    // what a patient would wait.
    let realistic = std::env::var_os("WUDING_REALISTIC_TIMINGS").is_some();
    args.instant = !realistic;
    args.capacity = 100;
    let devices = Devices::start(&args).unwrap();
    let data_dir = dir.path().join("terminal");
    let service = Service::start(config(&data_dir, &server, &devices)).unwrap();
    let ui = service.ui_state();
    let screen = format!("http://{}/", service.ui_addr());

    let (tap_to_open, browser) = runtime.block_on(async {
        let browser = Browser::start().await.expect("headless Chromium");
        browser.client.goto(&screen).await.unwrap();

        // First start: registered, waiting for approval.
        browser
            .wait_text("notices", "等待管理员审批", WAIT)
            .await
            .unwrap();
        let s = server_store.clone();
        tokio::task::spawn_blocking(move || {
            let row = s
                .terminal(TERMINAL)
                .unwrap()
                .expect("the terminal registered");
            assert_eq!(row.status, "pending");
            s.approve_terminal(TERMINAL, now_ms()).unwrap();
        })
        .await
        .unwrap();
        // Approved: the roster and the roster key arrive.
        let deadline = Instant::now() + WAIT;
        loop {
            let message = ui.lock().unwrap().last_sync_message.clone();
            if message
                .as_deref()
                .is_some_and(|m| m.contains("roster changes"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "no roster: {message:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ui.lock().unwrap().registration.is_none());
        assert!(
            ui.lock().unwrap().device_faults.is_empty(),
            "{:?}",
            ui.lock().unwrap().device_faults
        );

        // The nurse: staff card, then the PIN pad.
        devices
            .control(&format!("card present {NURSE_CARD}"))
            .unwrap();
        for key in ["2", "4", "6", "8", "OK"] {
            browser.click(&format!("pin-{key}"), WAIT).await.unwrap();
        }
        browser.wait_text("who", "护士", WAIT).await.unwrap();
        browser
            .wait_text("message", "请患者刷医保卡", WAIT)
            .await
            .unwrap();
        remove_card(&devices);

        // Enrolment: card, finger choice, three captures, 1:N, stored.
        browser.click("enrol", WAIT).await.unwrap();
        browser
            .wait_text("message", "指纹录入：请患者刷医保卡", WAIT)
            .await
            .unwrap();
        devices
            .control(&format!("card present {PATIENT_CARD}"))
            .unwrap();
        browser
            .wait_text("message", "请选择录入的手指", WAIT)
            .await
            .unwrap();
        devices.place_finger("P0001-R2", 85);
        browser.click("finger-right_index", WAIT).await.unwrap();
        browser
            .wait_text("message", "右手食指录入成功", WAIT)
            .await
            .unwrap();
        browser.click("ok", WAIT).await.unwrap();
        devices.lift_finger();
        remove_card(&devices);

        // Check-in: finger on the sensor, card tapped.
        browser.wait_text("message", "已取消", WAIT).await.unwrap();
        devices.place_finger("P0001-R2", 80);
        let tapped = Instant::now();
        devices
            .control(&format!("card present {PATIENT_CARD}"))
            .unwrap();
        // The core's own view, polled finely: tap to "session open".
        let deadline = Instant::now() + WAIT;
        let core_open = loop {
            if matches!(
                ui.lock().unwrap().screen,
                wuding_terminal::flow::Screen::SessionOpen { .. }
            ) {
                break tapped.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "no session: {:?}",
                ui.lock().unwrap().screen
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        browser
            .wait_text("message", "已签到，B01 床治疗开始", WAIT)
            .await
            .unwrap();
        let screen_open = tapped.elapsed();
        browser.wait_text("bed-B01", "王*明", WAIT).await.unwrap();
        browser.screenshot("checkin-session-open").await.unwrap();
        browser.click("ok", WAIT).await.unwrap();
        remove_card(&devices);
        ((core_open, screen_open), browser)
    });

    // The terminal restarts mid-session (power cut, update): the open
    // session, the roster key, the cached template and the module's slot
    // map all come back from its data directory.
    service.shutdown();
    let service = Service::start(config(&data_dir, &server, &devices)).unwrap();
    let ui = service.ui_state();
    let screen = format!("http://{}/", service.ui_addr());
    runtime.block_on(async {
        browser.client.goto(&screen).await.unwrap();
        browser.wait_text("bed-B01", "王*明", WAIT).await.unwrap();
        devices
            .control(&format!("card present {NURSE_CARD}"))
            .unwrap();
        for key in ["2", "4", "6", "8", "OK"] {
            browser.click(&format!("pin-{key}"), WAIT).await.unwrap();
        }
        browser.wait_text("who", "护士", WAIT).await.unwrap();
        remove_card(&devices);

        // Check-out: the same card and finger again.
        devices
            .control(&format!("card present {PATIENT_CARD}"))
            .unwrap();
        browser
            .wait_text("message", "已签退，本次费用 420.00 元", WAIT)
            .await
            .unwrap();
        browser.screenshot("checkin-checked-out").await.unwrap();
        devices.lift_finger();
        remove_card(&devices);

        // Sync: both records (enrolment, session) acknowledged.
        let deadline = Instant::now() + WAIT;
        loop {
            let outbox = ui.lock().unwrap().outbox;
            if outbox.waiting == 0 && outbox.retired == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "outbox {outbox:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        browser
            .wait_text("sync", "0 待上传记录", WAIT)
            .await
            .unwrap();
        browser.close().await;
    });
    println!(
        "card tap to session open: {:?} in the core, {:?} on the screen (which polls every 250 ms); {} module timings",
        tap_to_open.0,
        tap_to_open.1,
        if realistic { "realistic" } else { "instant" }
    );
    service.shutdown();

    // The server keeps both signed records, in its log.
    let records = server_store.records_of(TERMINAL).unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.record_type.as_str()).collect();
    assert_eq!(kinds, ["enrolment", "session"], "{kinds:?}");
    assert!(records.iter().all(|r| r.insured_id == PATIENT));
    let leaves = server_store.log_leaves(0).unwrap();
    for r in &records {
        assert!(leaves.contains(&r.record_id), "record not in the log");
    }
    // The enrolled template reached the server (sealed at rest).
    let (items, _) = server_store.roster_since(HOSPITAL, 0).unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.kind == "template" && i.key == format!("{PATIENT}/right_index")),
        "the enrolled template was not uploaded"
    );

    // Locally: every record retired on a verified receipt; the module slot
    // of the enrolled finger survives restarts in the terminal's database.
    let local = wuding_terminal::store::Store::open(&data_dir.join("terminal.db")).unwrap();
    let status = local.outbox_status().unwrap();
    assert_eq!((status.waiting, status.retired, status.head_seq), (0, 2, 2));
    let slots = local.module_slots().unwrap();
    assert_eq!(slots.values().collect::<Vec<_>>(), [PATIENT]);
    assert!(local.templates_to_upload().unwrap().is_empty());
    devices.shutdown();
    drop(runtime);
}
