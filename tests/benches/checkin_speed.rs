//! Card tap to "session open", through the running bedside service
//! (`wuding_terminal::service`, the code behind `wuding-terminal run`)
//! against the emulated fingerprint module and PN532 with their realistic
//! timings, and a real wuding-server on loopback.
//!
//!     cargo bench -p wuding-tests --bench checkin_speed            # 30 taps
//!     WUDING_BENCH_TAPS=100 cargo bench -p wuding-tests --bench checkin_speed
//!
//! Each tap is a different enrolled patient at a free bed, with the finger
//! already on the sensor. Prints p50/p95 of tap -> session open (the core's
//! screen state, which the page shows at its next poll), the module's own
//! share (its configured capture, extraction and match times), our share
//! (the rest), and the service's resident memory. Goals (issue 4): p95
//! under 1.5 s, our share under 100 ms, resident memory under 40 MB.
//! Under `cargo nextest run --all-targets` it lists one smoke case that runs
//! three taps with instant module timings.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wuding_firmware_host::devices::{Devices, DevicesArgs};
use wuding_firmware_host::fingerprint::Timings;
use wuding_protocol::Finger;
use wuding_protocol::api::SealKey;
use wuding_server::roster::{RosterKind, import};
use wuding_server::store::Store as ServerStore;
use wuding_terminal::app::Input;
use wuding_terminal::config::Config;
use wuding_terminal::flow::{NurseAction, Screen};
use wuding_terminal::service::Service;
use wuding_tests::now_ms;

const WAIT: Duration = Duration::from_secs(30);
const TERMINAL: &str = "T-330102-0099";
const HOSPITAL: &str = "H33010200017";
const NURSE_CARD: &str = "04FF0001";

fn patient(i: usize) -> (String, String) {
    (format!("3301021954{i:08}"), format!("04AB{i:04X}"))
}

fn seed_roster(store: &dyn ServerStore, n: usize) {
    let mut patients = String::from("insured_id,card_uid,name,hospital_code\n");
    let mut plans = String::from(
        "plan_id,insured_id,hospital_code,department_code,doctor_ids,kinds,drug_code,max_dose,max_sessions_per_week,valid_from,valid_to\n",
    );
    for i in 0..n {
        let (id, card) = patient(i);
        patients.push_str(&format!("{id},{card},患者{i},{HOSPITAL}\n"));
        plans.push_str(&format!(
            "PL-{i},{id},{HOSPITAL},NEPH-HD,D0107,HD,,,3,2020-01-01,2099-12-31\n"
        ));
    }
    import(store, RosterKind::Patients, patients.as_bytes()).unwrap();
    import(store, RosterKind::Plans, plans.as_bytes()).unwrap();
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
        RosterKind::Prices,
        format!("hospital_code,code,unit_price_fen\n{HOSPITAL},003105010010000,42000\n").as_bytes(),
    )
    .unwrap();
}

fn config(data_dir: &Path, server: &str, devices: &Devices, beds: usize) -> Config {
    let beds: Vec<String> = (1..=beds).map(|b| format!("\"B{b:02}\"")).collect();
    let text = format!(
        r#"
[terminal]
id = "{TERMINAL}"
hospital_code = "{HOSPITAL}"
department_code = "NEPH-HD"
beds = [{beds}]
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
        beds = beds.join(", "),
        data = data_dir.display(),
        fp = devices.fingerprint_link().display(),
        nfc = devices.nfc_link().display(),
    );
    Config::parse(&text, Path::new("bench.toml")).unwrap()
}

fn wait_screen(service: &Service, what: &str, ok: impl Fn(&Screen) -> bool) -> Duration {
    let ui = service.ui_state();
    let start = Instant::now();
    loop {
        let screen = ui.lock().unwrap().screen.clone();
        if ok(&screen) {
            return start.elapsed();
        }
        assert!(start.elapsed() < WAIT, "waiting for {what}: {screen:?}");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn remove_card(devices: &Devices) {
    devices.control("card remove").unwrap();
    let before = devices.status().nfc_commands;
    let start = Instant::now();
    while devices.status().nfc_commands < before + 4 {
        assert!(start.elapsed() < WAIT, "the card reader stopped polling");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("checkin_speed_smoke: test");
        }
        return;
    }
    let smoke = args.iter().any(|a| a == "checkin_speed_smoke");
    let taps: usize = if smoke {
        3
    } else {
        std::env::var("WUDING_BENCH_TAPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
    };

    let dir = tempfile::tempdir().unwrap();
    let server_store: Arc<dyn ServerStore> = Arc::from(
        wuding_server::store::open(dir.path().join("server.db").to_str().unwrap()).unwrap(),
    );
    seed_roster(&*server_store, taps);
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
        9,
        options,
    ));

    // Enrolment runs with instant module timings (it is not measured); the
    // taps run with the realistic ones (restarting the emulator keeps its
    // library).
    let mut args = DevicesArgs::new(&dir.path().join("devices"));
    args.instant = true;
    args.capacity = 300;
    let devices = Devices::start(&args).unwrap();
    let data_dir = dir.path().join("terminal");
    let service = Service::start(config(&data_dir, &server, &devices, taps)).unwrap();

    // Registered, approved, roster and roster key in.
    let start = Instant::now();
    while server_store.terminal(TERMINAL).unwrap().is_none() {
        assert!(start.elapsed() < WAIT, "the terminal did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
    server_store.approve_terminal(TERMINAL, now_ms()).unwrap();
    let ui = service.ui_state();
    let start = Instant::now();
    while !ui
        .lock()
        .unwrap()
        .last_sync_message
        .as_deref()
        .is_some_and(|m| m.contains("roster changes"))
    {
        assert!(start.elapsed() < WAIT, "no roster");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The nurse logs in.
    devices
        .control(&format!("card present {NURSE_CARD}"))
        .unwrap();
    let start = Instant::now();
    while ui.lock().unwrap().pin_for.is_none() {
        assert!(start.elapsed() < WAIT, "no PIN pad after the staff card");
        std::thread::sleep(Duration::from_millis(5));
    }
    service.send(Input::Pin { pin: "2468".into() });
    wait_screen(&service, "idle", |s| matches!(s, Screen::Idle { .. }));
    remove_card(&devices);

    // Enrol every patient (instant timings).
    for i in 0..taps {
        let (_, card) = patient(i);
        service.send(Input::Nurse(NurseAction::StartEnrolment));
        wait_screen(&service, "enrolment", |s| {
            matches!(s, Screen::EnrolTapCard { .. })
        });
        devices.control(&format!("card present {card}")).unwrap();
        wait_screen(&service, "finger choice", |s| {
            matches!(s, Screen::EnrolChooseFinger { .. })
        });
        devices.place_finger(&format!("bench-{i}"), 85);
        service.send(Input::Nurse(NurseAction::ChooseFinger(Finger::RightIndex)));
        wait_screen(&service, "enrolled", |s| {
            matches!(s, Screen::EnrolDone { .. })
        });
        service.send(Input::Nurse(NurseAction::Cancel));
        devices.lift_finger();
        remove_card(&devices);
    }

    // The taps, with the module's realistic timings.
    let timings = if smoke {
        Timings::INSTANT
    } else {
        Timings::REALISTIC
    };
    devices.set_fingerprint_timings(timings);
    let module_share = timings.capture + timings.extract + timings.compare;
    let mut samples = Vec::with_capacity(taps);
    for i in 0..taps {
        let (_, card) = patient(i);
        devices.place_finger(&format!("bench-{i}"), 80);
        let tapped = Instant::now();
        devices.control(&format!("card present {card}")).unwrap();
        wait_screen(&service, "session open", |s| {
            matches!(s, Screen::SessionOpen { .. })
        });
        samples.push(tapped.elapsed());
        service.send(Input::Nurse(NurseAction::Cancel));
        wait_screen(&service, "idle", |s| matches!(s, Screen::Idle { .. }));
        devices.lift_finger();
        remove_card(&devices);
    }
    let rss = rss_kb();
    samples.sort();
    let (p50, p95) = (percentile(&samples, 0.5), percentile(&samples, 0.95));
    println!(
        "card tap -> session open over {taps} taps ({} module timings): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        if smoke { "instant" } else { "realistic" },
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
    println!(
        "module's own work per tap: {:.0} ms (capture + extraction + match); our share at p50 {:.0} ms, at p95 {:.0} ms",
        module_share.as_secs_f64() * 1e3,
        p50.saturating_sub(module_share).as_secs_f64() * 1e3,
        p95.saturating_sub(module_share).as_secs_f64() * 1e3,
    );
    println!(
        "resident memory of this process (service + emulated devices + server): {} MB",
        rss / 1024
    );
    service.shutdown();
    devices.shutdown();
    drop(runtime);
}
