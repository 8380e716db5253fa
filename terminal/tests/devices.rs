//! The terminal's device worker driving the emulated fingerprint module
//! over a real pseudo-terminal: enrolment (captures, 1:N duplicate check,
//! store, upload), verification with the patient's downloaded template,
//! and the answers the session flow gets for every outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use wuding_firmware_host::devices::{Devices, DevicesArgs};
use wuding_hardware::fingerprint::driver::{DriverConfig, Fingerprint};
use wuding_hardware::transport::SerialTransport;
use wuding_protocol::types::Finger;
use wuding_protocol::{TemplateKey, template_ref};
use wuding_terminal::app::{DeviceCommand, Input};
use wuding_terminal::devices::{DeviceWorker, NoIndicator, WorkerConfig};
use wuding_terminal::flow::{EnrolResult, FingerResult};
use wuding_terminal::messages::Advice;

const KEY: TemplateKey = TemplateKey([7; 32]);

fn setup(
    dir: &std::path::Path,
) -> (
    Devices,
    DeviceWorker<Fingerprint<SerialTransport>, NoIndicator>,
) {
    let mut args = DevicesArgs::new(dir);
    args.instant = true;
    args.capacity = 50;
    let devices = Devices::start(&args).unwrap();
    let link = devices.fingerprint_link();
    let t = SerialTransport::open(link.to_str().unwrap(), 57_600).unwrap();
    let sensor = Fingerprint::connect(t, DriverConfig::default()).unwrap();
    let worker = DeviceWorker::new(
        sensor,
        NoIndicator,
        KEY,
        50,
        BTreeMap::new(),
        WorkerConfig {
            finger_wait: Duration::from_millis(200),
            poll: Duration::from_millis(20),
        },
    );
    (devices, worker)
}

fn enrol(
    devices: &Devices,
    worker: &mut DeviceWorker<Fingerprint<SerialTransport>, NoIndicator>,
    finger: &str,
    insured_id: &str,
) -> EnrolResult {
    devices.place_finger(finger, 85);
    for capture in [1, 2] {
        assert_eq!(
            worker.run(DeviceCommand::EnrolCapture { capture }),
            Some(Input::Enrol(EnrolResult::Captured { ok: true }))
        );
    }
    let Some(Input::Enrol(result)) = worker.run(DeviceCommand::EnrolBuild {
        insured_id: insured_id.into(),
        finger: Finger::RightIndex,
    }) else {
        panic!("no answer to EnrolBuild");
    };
    devices.lift_finger();
    result
}

#[test]
fn enrol_then_verify_over_the_emulated_module() {
    let dir = tempfile::tempdir().unwrap();
    let (devices, mut worker) = setup(dir.path());

    let EnrolResult::Stored {
        template_ref: tref,
        slot,
    } = enrol(&devices, &mut worker, "P0001-R2", "P5101000000001")
    else {
        panic!("enrolment failed");
    };
    let enrolled = worker.take_enrolled();
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0].slot, slot);
    assert_eq!(enrolled[0].bytes.len(), 512);
    assert_eq!(template_ref(&KEY, &enrolled[0].bytes), tref);

    // The same finger under another patient is refused by the 1:N search.
    assert_eq!(
        enrol(&devices, &mut worker, "P0001-R2", "P5101000000002"),
        EnrolResult::Duplicate {
            other_insured_id: "P5101000000001".into()
        }
    );

    // Check-in: the patient's template goes into the module, then 1:1.
    let template = enrolled[0].bytes.clone();
    let verify = |worker: &mut DeviceWorker<_, _>| {
        worker.run(DeviceCommand::VerifyFinger {
            template: template.clone(),
            template_ref: tref,
            finger: Finger::RightIndex,
        })
    };
    devices.place_finger("P0001-R2", 75);
    match verify(&mut worker) {
        Some(Input::Finger(FingerResult::Matched {
            score,
            template_ref,
        })) => {
            assert!(score >= 50, "score {score}");
            assert_eq!(template_ref, tref);
        }
        other => panic!("expected a match, got {other:?}"),
    }
    // Someone else's finger.
    devices.place_finger("impostor", 90);
    assert_eq!(
        verify(&mut worker),
        Some(Input::Finger(FingerResult::NoMatch))
    );
    // Nobody at the sensor.
    devices.lift_finger();
    assert_eq!(
        verify(&mut worker),
        Some(Input::Finger(FingerResult::NoFinger))
    );
    // A worn finger: advice, not a fault.
    devices.place_finger("worn", 0);
    let mut advised = 0;
    for _ in 0..6 {
        if let Some(Input::Finger(FingerResult::PoorImage(a))) = verify(&mut worker) {
            assert!(matches!(a, Advice::Moisten | Advice::WipeDry));
            advised += 1;
        }
    }
    assert!(advised >= 3, "worn finger advised {advised} of 6 times");
    devices.shutdown();
}

#[test]
fn two_different_fingers_do_not_enrol() {
    let dir = tempfile::tempdir().unwrap();
    let (devices, mut worker) = setup(dir.path());
    devices.place_finger("left", 90);
    assert_eq!(
        worker.run(DeviceCommand::EnrolCapture { capture: 1 }),
        Some(Input::Enrol(EnrolResult::Captured { ok: true }))
    );
    devices.place_finger("right", 90);
    assert_eq!(
        worker.run(DeviceCommand::EnrolCapture { capture: 2 }),
        Some(Input::Enrol(EnrolResult::Captured { ok: true }))
    );
    assert_eq!(
        worker.run(DeviceCommand::EnrolBuild {
            insured_id: "P1".into(),
            finger: Finger::LeftThumb,
        }),
        Some(Input::Enrol(EnrolResult::Failed))
    );
    devices.lift_finger();
    assert_eq!(
        worker.run(DeviceCommand::EnrolCapture { capture: 1 }),
        Some(Input::Enrol(EnrolResult::Captured { ok: false }))
    );
    assert!(worker.take_enrolled().is_empty());
    devices.shutdown();
}
