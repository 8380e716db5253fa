//! Our drivers against the emulated devices over real pseudo-terminals:
//! every command the terminal uses, success and failure paths. The driver
//! opens the stable link exactly as it would open `/dev/ttyAMA0`.

use std::time::Duration;

use wuding_firmware_host::devices::{Devices, DevicesArgs, send_control};
use wuding_firmware_host::pn532::VirtualCard;
use wuding_hardware::fingerprint::command::{CharBuffer, LedColour, LedConfig, LedMode};
use wuding_hardware::fingerprint::driver::{DriverConfig, Fingerprint};
use wuding_hardware::fingerprint::error::{FingerprintError, ModuleError};
use wuding_hardware::fingerprint::sensor::{Capture, FingerprintSensor, LedSignal};
use wuding_hardware::pn532::command::{KeyKind, MifareKey, StatusError};
use wuding_hardware::pn532::driver::{Pn532, Pn532Config};
use wuding_hardware::reader::{CardReader, CardUid, PatientBlock, PatientNumber};
use wuding_hardware::transport::SerialTransport;

fn start(dir: &std::path::Path) -> Devices {
    let mut args = DevicesArgs::new(dir);
    args.instant = true;
    args.capacity = 300;
    Devices::start(&args).expect("devices start")
}

fn fingerprint(devices: &Devices) -> Fingerprint<SerialTransport> {
    let link = devices.fingerprint_link();
    let transport = SerialTransport::open(link.to_str().unwrap(), 57_600).expect("open link");
    Fingerprint::connect(
        transport,
        DriverConfig {
            timeout: Duration::from_millis(800),
            ..DriverConfig::default()
        },
    )
    .expect("connect")
}

fn module_error(e: &FingerprintError) -> Option<ModuleError> {
    e.module_error()
}

/// Two captures of `finger` into one template stored at `page`.
fn enrol(fp: &mut Fingerprint<SerialTransport>, devices: &Devices, finger: &str, page: u16) {
    devices.place_finger(finger, 85);
    fp.gen_img().unwrap();
    fp.img2tz(CharBuffer::ONE).unwrap();
    fp.gen_img().unwrap();
    fp.img2tz(CharBuffer::TWO).unwrap();
    fp.reg_model().unwrap();
    fp.store(CharBuffer::ONE, page).unwrap();
    devices.lift_finger();
}

#[test]
fn fingerprint_module_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let devices = start(dir.path());
    let mut fp = fingerprint(&devices);

    // Connect did VfyPwd and ReadSysPara.
    let params = *fp.parameters().unwrap();
    assert_eq!(params.capacity, 300);
    assert_eq!(params.security_level, 3);
    fp.handshake().unwrap();
    fp.verify_password().unwrap();
    assert_eq!(fp.template_num().unwrap(), 0);

    // No finger: GenImg says so.
    let e = fp.gen_img().unwrap_err();
    assert_eq!(module_error(&e), Some(ModuleError::NoFinger));
    // Img2Tz without an image.
    let e = fp.img2tz(CharBuffer::ONE).unwrap_err();
    assert_eq!(module_error(&e), Some(ModuleError::NoValidImage));

    enrol(&mut fp, &devices, "P0001-R2", 5);
    enrol(&mut fp, &devices, "P0002-L1", 6);
    assert_eq!(fp.template_num().unwrap(), 2);
    assert_eq!(fp.used_pages().unwrap(), vec![5, 6]);
    let table = fp.read_index_table(0).unwrap();
    assert_eq!(table[0], 0b0110_0000);

    // 1:N search finds the right page, with both search commands.
    devices.place_finger("P0002-L1", 80);
    fp.gen_img().unwrap();
    fp.img2tz(CharBuffer::ONE).unwrap();
    let hit = fp.search(CharBuffer::ONE, 0, 300).unwrap();
    assert_eq!(hit.slot, 6);
    assert!(hit.score >= 50, "score {}", hit.score);
    let fast = fp.hi_speed_search(CharBuffer::ONE, 0, 300).unwrap();
    assert_eq!(fast.slot, 6);
    // Searching a range without it: not found.
    let e = fp.search(CharBuffer::ONE, 0, 6).unwrap_err();
    assert_eq!(module_error(&e), Some(ModuleError::NotFound));

    // 1:1: load a template, capture, match.
    fp.load_char(CharBuffer::TWO, 6).unwrap();
    let score = fp.match_buffers().unwrap();
    assert!(score >= 50);
    fp.load_char(CharBuffer::TWO, 5).unwrap();
    let e = fp.match_buffers().unwrap_err();
    assert_eq!(module_error(&e), Some(ModuleError::NoMatch));
    let e = fp.load_char(CharBuffer::TWO, 7).unwrap_err();
    assert_eq!(module_error(&e), Some(ModuleError::TemplateInvalid));
    let e = fp.load_char(CharBuffer::TWO, 300).unwrap_err();
    assert_eq!(module_error(&e), Some(ModuleError::BadPageId));

    // UpChar then DownChar: the template survives the round trip.
    fp.load_char(CharBuffer::ONE, 5).unwrap();
    let mut template = [0u8; 4096];
    let n = fp.up_char(CharBuffer::ONE, &mut template).unwrap();
    assert_eq!(n, 512);
    fp.delete_char(5, 1).unwrap();
    assert_eq!(fp.used_pages().unwrap(), vec![6]);
    fp.down_char(CharBuffer::TWO, &template[..n]).unwrap();
    fp.store(CharBuffer::TWO, 9).unwrap();
    devices.place_finger("P0001-R2", 80);
    fp.gen_img().unwrap();
    fp.img2tz(CharBuffer::ONE).unwrap();
    assert_eq!(fp.search(CharBuffer::ONE, 0, 300).unwrap().slot, 9);

    // Two different fingers do not combine.
    devices.place_finger("A", 90);
    fp.gen_img().unwrap();
    fp.img2tz(CharBuffer::ONE).unwrap();
    devices.place_finger("B", 90);
    fp.gen_img().unwrap();
    fp.img2tz(CharBuffer::TWO).unwrap();
    let e = fp.reg_model().unwrap_err();
    assert_eq!(module_error(&e), Some(ModuleError::CombineFailed));

    // A finger too worn to read at all.
    devices.place_finger("worn", 0);
    let mut failures = 0;
    for _ in 0..10 {
        fp.gen_img().unwrap();
        if let Err(e) = fp.img2tz(CharBuffer::ONE) {
            assert!(matches!(
                module_error(&e),
                Some(ModuleError::TooFewFeatures | ModuleError::ImageMessy)
            ));
            failures += 1;
        }
    }
    assert!(
        failures >= 5,
        "a quality-0 finger read {} of 10 times",
        10 - failures
    );

    // R503 LED ring.
    fp.aura_led(LedConfig {
        mode: LedMode::Breathing,
        speed: 0x80,
        colour: LedColour::Blue,
        cycles: 0,
    })
    .unwrap();
    assert_eq!(devices.status().led.as_deref(), Some("Breathing Blue"));

    // A power cycle: the ready byte arrives, the library is kept, and the
    // driver carries on.
    assert_eq!(devices.control("fingerprint power-cycle"), Ok("ok".into()));
    fp.wait_ready(Duration::from_secs(1)).unwrap();
    assert_eq!(fp.used_pages().unwrap(), vec![6, 9]);

    // Empty, then soft reset with its 0x55.
    fp.empty().unwrap();
    assert_eq!(fp.template_num().unwrap(), 0);
    fp.soft_reset().unwrap();
    fp.handshake().unwrap();
    devices.shutdown();
}

#[test]
fn the_sensor_abstraction_runs_over_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let devices = start(dir.path());
    let mut fp = fingerprint(&devices);
    assert_eq!(fp.capture(CharBuffer::ONE).unwrap(), Capture::NoFinger);
    devices.place_finger("nurse-7", 80);
    assert_eq!(fp.capture(CharBuffer::ONE).unwrap(), Capture::Captured);
    assert_eq!(fp.capture(CharBuffer::TWO).unwrap(), Capture::Captured);
    fp.build_template().unwrap();
    FingerprintSensor::store(&mut fp, CharBuffer::ONE, 0).unwrap();
    assert_eq!(fp.capture(CharBuffer::ONE).unwrap(), Capture::Captured);
    assert_eq!(
        FingerprintSensor::search(&mut fp, CharBuffer::ONE)
            .unwrap()
            .map(|h| h.slot),
        Some(0)
    );
    fp.signal(LedSignal::Accepted).unwrap();
    devices.shutdown();
}

#[test]
fn the_library_survives_a_restart_of_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    {
        let devices = start(dir.path());
        let mut fp = fingerprint(&devices);
        enrol(&mut fp, &devices, "P0009-R1", 42);
        devices.shutdown();
    }
    let devices = start(dir.path());
    let mut fp = fingerprint(&devices);
    assert_eq!(fp.used_pages().unwrap(), vec![42]);
    devices.shutdown();
}

#[test]
fn a_wrong_password_and_a_wrong_address_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = DevicesArgs::new(dir.path());
    args.instant = true;
    args.password = "0000BEEF".into();
    let devices = Devices::start(&args).unwrap();
    let link = devices.fingerprint_link();
    let t = SerialTransport::open(link.to_str().unwrap(), 57_600).unwrap();
    let e = Fingerprint::connect(t, DriverConfig::default()).unwrap_err();
    assert_eq!(e.module_error(), Some(ModuleError::WrongPassword));

    let t = SerialTransport::open(link.to_str().unwrap(), 57_600).unwrap();
    let mut fp = Fingerprint::connect(
        t,
        DriverConfig {
            password: 0xBEEF,
            ..DriverConfig::default()
        },
    )
    .unwrap();
    fp.template_num().unwrap();
    // A serial port is exclusive while open; close it before the next.
    drop(fp);

    // A module at another address never answers: a timeout, after retries.
    let t = SerialTransport::open(link.to_str().unwrap(), 57_600).unwrap();
    let mut other = Fingerprint::new(
        t,
        DriverConfig {
            address: 0x1234_5678,
            timeout: Duration::from_millis(100),
            retries: 1,
            ..DriverConfig::default()
        },
    );
    let e = other.handshake().unwrap_err();
    assert!(
        matches!(e, FingerprintError::Timeout { attempts: 2, .. }),
        "{e:?}"
    );
    devices.shutdown();
}

fn pn532(devices: &Devices, patient_block: Option<PatientBlock>) -> Pn532<SerialTransport> {
    let link = devices.nfc_link();
    let t = SerialTransport::open(link.to_str().unwrap(), 115_200).unwrap();
    Pn532::new(
        t,
        Pn532Config {
            patient_block,
            ..Pn532Config::default()
        },
    )
}

#[test]
fn pn532_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let devices = start(dir.path());
    let mut nfc = pn532(&devices, None);
    nfc.wake_up().unwrap();
    let v = nfc.firmware_version().unwrap();
    assert_eq!((v.ic, v.ver, v.rev), (0x32, 1, 6));

    // No card: the poll times out quietly and the reader stays usable.
    assert!(
        nfc.list_passive_target(Duration::from_millis(150))
            .unwrap()
            .is_none()
    );
    assert_eq!(nfc.firmware_version().unwrap().ic, 0x32);

    // 4-byte UID, factory keys.
    devices.present_card(VirtualCard::mifare_classic_1k(&[0x04, 0xA1, 0xB2, 0xC3]).unwrap());
    let t = nfc
        .list_passive_target(Duration::from_millis(500))
        .unwrap()
        .unwrap();
    assert_eq!(t.uid, vec![0x04, 0xA1, 0xB2, 0xC3]);
    assert!(t.is_mifare_classic());
    nfc.mifare_authenticate(KeyKind::A, 4, &MifareKey::FACTORY_DEFAULT)
        .unwrap();
    assert_eq!(nfc.mifare_read(4).unwrap(), [0u8; 16]);
    // Reading another sector without authenticating it is refused.
    let e = nfc.mifare_read(8).unwrap_err();
    assert_eq!(e.status_error(), Some(StatusError::Authentication));
    // A wrong key halts the card.
    nfc.list_passive_target(Duration::from_millis(500))
        .unwrap()
        .unwrap();
    let e = nfc
        .mifare_authenticate(KeyKind::B, 4, &MifareKey([1, 2, 3, 4, 5, 6]))
        .unwrap_err();
    assert_eq!(e.status_error(), Some(StatusError::Authentication));
    nfc.release().unwrap_err();

    // 7-byte UID.
    let uid7 = [0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
    devices.present_card(VirtualCard::mifare_classic_1k(&uid7).unwrap());
    let t = nfc
        .list_passive_target(Duration::from_millis(500))
        .unwrap()
        .unwrap();
    assert_eq!(t.uid, uid7.to_vec());
    assert_eq!(t.sens_res, [0x00, 0x44]);
    nfc.mifare_authenticate(KeyKind::A, 4, &MifareKey::FACTORY_DEFAULT)
        .unwrap();
    nfc.release().unwrap();

    // The card leaves the field.
    devices.remove_card();
    assert!(
        nfc.list_passive_target(Duration::from_millis(150))
            .unwrap()
            .is_none()
    );
    devices.shutdown();
}

#[test]
fn a_card_placed_while_the_reader_waits_is_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let devices = start(dir.path());
    let mut nfc = pn532(&devices, None);
    nfc.wake_up().unwrap();
    let control = dir.path().to_path_buf();
    let placer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        send_control(&control, "card present 04C0FFEE").unwrap()
    });
    let t = nfc
        .list_passive_target(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(placer.join().unwrap(), "ok");
    assert_eq!(t.uid, vec![0x04, 0xC0, 0xFF, 0xEE]);
    devices.shutdown();
}

#[test]
fn the_card_reader_abstraction_reads_uid_and_patient_number() {
    let dir = tempfile::tempdir().unwrap();
    let devices = start(dir.path());
    let block = PatientBlock::new(4, KeyKind::A, MifareKey::FACTORY_DEFAULT).unwrap();
    let mut reader = pn532(&devices, Some(block));
    assert_eq!(reader.poll(Duration::from_millis(100)).unwrap(), None);
    assert_eq!(
        devices.control("card present 04A1B2C3 P5101000001234"),
        Ok("ok".into())
    );
    let read = reader.poll(Duration::from_millis(500)).unwrap().unwrap();
    assert_eq!(read.uid, CardUid::from_hex("04A1B2C3").unwrap());
    assert_eq!(
        read.patient_number,
        Some(PatientNumber::new("P5101000001234").unwrap())
    );
    // A card whose sector uses another key is not one of ours.
    devices.present_card(
        VirtualCard::mifare_classic_1k(&[1, 2, 3, 4])
            .unwrap()
            .with_keys(1, MifareKey([9; 6]), MifareKey([9; 6])),
    );
    let e = reader.poll(Duration::from_millis(500)).unwrap_err();
    assert_eq!(e.status_error(), Some(StatusError::Authentication));
    devices.shutdown();
}

#[test]
fn control_commands_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let devices = start(dir.path());
    let d = dir.path();
    assert_eq!(send_control(d, "finger place P1 55").unwrap(), "ok");
    let status = send_control(d, "status").unwrap();
    assert!(status.starts_with("ok {"), "{status}");
    assert!(status.contains("\"finger\":\"P1\""), "{status}");
    assert!(status.contains("\"finger_quality\":55"), "{status}");
    for (bad, why) in [
        ("finger place P1 101", "quality"),
        ("card present 123", "UID"),
        ("card present 04A1B2C3 P1 extra", "usage"),
        ("fly away", "unknown command"),
    ] {
        let reply = send_control(d, bad).unwrap();
        assert!(
            reply.starts_with("error ") && reply.contains(why),
            "{bad}: {reply}"
        );
    }
    assert_eq!(send_control(d, "finger lift").unwrap(), "ok");
    assert_eq!(devices.status().finger, None);
    devices.shutdown();
}
