//! The running service with its devices missing: it starts anyway, serves
//! the nurse screen with the faults named (path and what to check), and
//! picks the devices up when they appear, without a restart.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use wuding_firmware_host::devices::{Devices, DevicesArgs};
use wuding_terminal::config::Config;
use wuding_terminal::service::Service;

fn config(data_dir: &Path, devices_dir: &Path) -> Config {
    let text = format!(
        r#"
[terminal]
id = "T-330102-0009"
hospital_code = "H33010200017"
department_code = "NEPH-HD"
beds = ["B01"]
duty_doctor_id = "D0107"
data_dir = "{data}"

[server]
# Nothing listens here: the server is unreachable.
url = "http://127.0.0.1:9"

[devices]
fingerprint = "{dir}/fingerprint"

[devices.card_reader]
kind = "pn532"
path = "{dir}/nfc"

[ui]
listen = "127.0.0.1:0"
language = "en"
"#,
        data = data_dir.display(),
        dir = devices_dir.display(),
    );
    Config::parse(&text, Path::new("service.toml")).unwrap()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn missing_devices_are_shown_on_the_screen_and_picked_up_when_they_appear() {
    let dir = tempfile::tempdir().unwrap();
    let devices_dir = dir.path().join("devices");
    let service = Service::start(config(&dir.path().join("data"), &devices_dir)).unwrap();
    let ui = service.ui_state();
    wait_for("both device faults", || {
        ui.lock().unwrap().device_faults.len() == 2
    });
    let faults = ui.lock().unwrap().device_faults.clone();
    let fp = faults.iter().find(|f| f.device == "fingerprint").unwrap();
    assert!(
        fp.message
            .en
            .contains(&format!("{}/fingerprint", devices_dir.display())),
        "{}",
        fp.message.en
    );
    assert!(fp.message.en.contains("devices.fingerprint"));
    let nfc = faults.iter().find(|f| f.device == "card_reader").unwrap();
    assert!(nfc.message.en.contains("devices.card_reader"));

    // The screen is served all the same, with the faults in its state.
    let state = http_get(service.ui_addr(), "/api/state");
    assert!(state.starts_with("HTTP/1.1 200"), "{state}");
    assert!(state.contains("Fingerprint module unavailable"), "{state}");
    assert!(http_get(service.ui_addr(), "/").contains("data-testid=\"notices\""));
    // The server is unreachable: reported, not fatal.
    wait_for("a sync report", || {
        ui.lock().unwrap().last_sync_message.is_some()
    });

    // The devices are plugged in: both come back without a restart.
    let mut args = DevicesArgs::new(&devices_dir);
    args.instant = true;
    let devices = Devices::start(&args).unwrap();
    wait_for("the devices to be picked up", || {
        ui.lock().unwrap().device_faults.is_empty()
    });
    // And the card reader works: an unknown card is reported as such.
    devices.control("card present 04DEAD01").unwrap();
    wait_for("the unknown card notice", || {
        let screen = serde_json::to_string(&ui.lock().unwrap().screen).unwrap();
        screen.contains("not on this hospital's roster")
    });
    service.shutdown();
    devices.shutdown();
}
