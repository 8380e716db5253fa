//! The core wired to a real SQLite store and roster cache; devices are
//! played by the test (their commands checked, their results fed back).

use wuding_protocol::example::example_signer;
use wuding_protocol::{
    FallbackReason, Finger, IdentityEvidence, Record, TemplateRef, TreatmentKind,
};
use wuding_terminal::app::{Core, DeviceCommand, Input, TemplateVault, hash_pin};
use wuding_terminal::flow::{
    BedsidePolicy, FingerResult, FlowConfig, NurseAction, PatientContext, ProposedSession, Screen,
    Verdict,
};
use wuding_terminal::store::{CachedPatient, CachedStaff, CachedTemplate, Store};

const T0: i64 = 1_794_787_331_000;

struct AllowAll;
impl BedsidePolicy for AllowAll {
    fn check(&self, _: &PatientContext, _: &ProposedSession, _: &[TreatmentKind]) -> Vec<Verdict> {
        vec![]
    }
}

/// Templates stored in the clear with a one-byte marker, for this test only.
struct MarkerVault;
impl TemplateVault for MarkerVault {
    fn open(&self, _: &str, _: Finger, sealed: &[u8]) -> Option<Vec<u8>> {
        sealed.strip_prefix(b"S:").map(<[u8]>::to_vec)
    }
}

fn core() -> Core<AllowAll, MarkerVault> {
    let mut store = Store::in_memory().unwrap();
    store
        .put_patient(&CachedPatient {
            insured_id: "330102195403170012".into(),
            card_uid: "04A1B2C3".into(),
            display_name: "王*明".into(),
        })
        .unwrap();
    for (id, uid, name, pin) in [
        ("N0231", "04FF0001", "李护士", "2468"),
        ("N0198", "04FF0002", "陈护士", "1357"),
    ] {
        store
            .put_staff(&CachedStaff {
                staff_id: id.into(),
                card_uid: uid.into(),
                display_name: name.into(),
                pin_hash: hash_pin(pin),
            })
            .unwrap();
    }
    store
        .put_template(&CachedTemplate {
            insured_id: "330102195403170012".into(),
            finger: Finger::RightIndex,
            sealed: b"S:template-bytes".to_vec(),
            template_ref: TemplateRef([0x5a; 32]),
        })
        .unwrap();
    store.put_price("003105010010000", 42_000).unwrap();
    Core::new(
        FlowConfig::example(),
        AllowAll,
        store,
        example_signer(),
        MarkerVault,
    )
    .unwrap()
}

fn login(core: &mut Core<AllowAll, MarkerVault>) {
    core.handle(
        T0 - 10_000,
        Input::Card {
            uid: "04FF0001".into(),
        },
    )
    .unwrap();
    assert_eq!(core.ui().lock().unwrap().pin_for.as_deref(), Some("李护士"));
    core.handle(T0 - 9_000, Input::Pin { pin: "2468".into() })
        .unwrap();
    assert_eq!(core.ui().lock().unwrap().nurse.as_deref(), Some("李护士"));
}

#[test]
fn a_whole_session_through_the_core() {
    let mut core = core();
    login(&mut core);
    let commands = core
        .handle(
            T0,
            Input::Card {
                uid: "04A1B2C3".into(),
            },
        )
        .unwrap();
    assert_eq!(
        commands,
        vec![DeviceCommand::VerifyFinger {
            template: b"template-bytes".to_vec(),
            template_ref: TemplateRef([0x5a; 32]),
            finger: Finger::RightIndex
        }]
    );
    let commands = core
        .handle(
            T0 + 900,
            Input::Finger(FingerResult::Matched {
                score: 140,
                template_ref: TemplateRef([0x5a; 32]),
            }),
        )
        .unwrap();
    assert!(commands.contains(&DeviceCommand::Indicate(
        wuding_terminal::flow::Signal::Success
    )));
    assert_eq!(core.store().open_sessions().unwrap().len(), 1);
    {
        let ui = core.ui();
        let ui = ui.lock().unwrap();
        assert!(matches!(ui.screen, Screen::SessionOpen { .. }));
        assert_eq!(ui.beds[0].patient.as_deref(), Some("王*明"));
    }
    core.handle(
        T0 + 4 * 3_600_000,
        Input::Card {
            uid: "04A1B2C3".into(),
        },
    )
    .unwrap();
    core.handle(
        T0 + 4 * 3_600_000 + 700,
        Input::Finger(FingerResult::Matched {
            score: 99,
            template_ref: TemplateRef([0x5a; 32]),
        }),
    )
    .unwrap();
    assert!(
        core.store().open_sessions().unwrap().is_empty(),
        "{:?}",
        core.ui().lock().unwrap().screen
    );
    let records = core.store().all_records().unwrap();
    assert_eq!(records.len(), 1);
    let v = records[0].verify(example_signer().public_key()).unwrap();
    let Record::Session(s) = v.record else {
        panic!()
    };
    assert_eq!(s.charge.total_fen, 42_000);
    assert_eq!(s.seq, 1);
    let ui = core.ui();
    let ui = ui.lock().unwrap();
    assert_eq!(ui.outbox.waiting, 1);
    assert!(matches!(
        ui.screen,
        Screen::CheckedOut {
            total_fen: 42_000,
            ..
        }
    ));
}

#[test]
fn wrong_pin_keeps_the_terminal_locked_and_is_logged() {
    let mut core = core();
    core.handle(
        T0,
        Input::Card {
            uid: "04FF0001".into(),
        },
    )
    .unwrap();
    core.handle(T0 + 1, Input::Pin { pin: "0000".into() })
        .unwrap();
    assert!(core.ui().lock().unwrap().nurse.is_none());
    let log = core.store().audit_tail(5).unwrap();
    assert!(
        log.iter().any(|(_, l)| l == "wrong PIN for staff N0231"),
        "{log:?}"
    );
    // A PIN without a card first does nothing.
    core.handle(T0 + 2, Input::Pin { pin: "2468".into() })
        .unwrap();
    assert!(core.ui().lock().unwrap().nurse.is_none());
}

#[test]
fn fallback_needs_the_witness_pin() {
    let mut core = core();
    login(&mut core);
    core.handle(
        T0,
        Input::Card {
            uid: "04A1B2C3".into(),
        },
    )
    .unwrap();
    core.handle(T0 + 10, Input::Nurse(NurseAction::Cancel))
        .unwrap();
    core.handle(
        T0 + 20,
        Input::Card {
            uid: "04A1B2C3".into(),
        },
    )
    .unwrap();
    core.handle(
        T0 + 30,
        Input::Fallback {
            reason: FallbackReason::FingerInjured,
            witness_id: "N0198".into(),
            witness_pin: "9999".into(),
        },
    )
    .unwrap();
    assert!(core.store().open_sessions().unwrap().is_empty());
    core.handle(
        T0 + 40,
        Input::Fallback {
            reason: FallbackReason::FingerInjured,
            witness_id: "N0198".into(),
            witness_pin: "1357".into(),
        },
    )
    .unwrap();
    let open = core.store().open_sessions().unwrap();
    assert_eq!(open.len(), 1);
    assert!(matches!(
        &open[0].check_in.identity,
        IdentityEvidence::Supervised { witness_id, .. } if witness_id == "N0198"
    ));
}

#[test]
fn unknown_cards_are_logged_masked() {
    let mut core = core();
    login(&mut core);
    core.handle(
        T0,
        Input::Card {
            uid: "04DEADBEEF0001".into(),
        },
    )
    .unwrap();
    let log = core.store().audit_tail(1).unwrap();
    assert_eq!(log[0].1, "unknown card …0001");
}

#[test]
fn an_unopenable_template_leads_to_the_fallback_screen() {
    let mut store = Store::in_memory().unwrap();
    store
        .put_patient(&CachedPatient {
            insured_id: "P1".into(),
            card_uid: "04000001".into(),
            display_name: "赵*".into(),
        })
        .unwrap();
    store
        .put_staff(&CachedStaff {
            staff_id: "N0231".into(),
            card_uid: "04FF0001".into(),
            display_name: "李护士".into(),
            pin_hash: hash_pin("2468"),
        })
        .unwrap();
    store
        .put_template(&CachedTemplate {
            insured_id: "P1".into(),
            finger: Finger::LeftIndex,
            sealed: b"garbled".to_vec(),
            template_ref: TemplateRef([1; 32]),
        })
        .unwrap();
    let mut core = Core::new(
        FlowConfig::example(),
        AllowAll,
        store,
        example_signer(),
        MarkerVault,
    )
    .unwrap();
    login(&mut core);
    let commands = core
        .handle(
            T0,
            Input::Card {
                uid: "04000001".into(),
            },
        )
        .unwrap();
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, DeviceCommand::VerifyFinger { .. }))
    );
    assert!(matches!(
        core.ui().lock().unwrap().screen,
        Screen::ChooseFallback { .. }
    ));
}
