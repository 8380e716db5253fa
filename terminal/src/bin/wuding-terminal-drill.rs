//! `wuding-terminal-drill DATA_DIR CYCLES`: a crash-safety drill. Runs the
//! real core (flow + SQLite store + roster cache) through check-in and
//! check-out cycles with simulated device results, printing `ACK <seq>`
//! after each record is durably signed and `OPEN <patient>` after each
//! session is durably opened. `terminal/tests/crash.rs` kills it with
//! SIGKILL at random moments and checks what survives.

use std::io::Write;

use wuding_protocol::{Finger, TemplateRef, TerminalSigner, TreatmentKind};
use wuding_terminal::app::{Core, Input, TemplateVault, hash_pin};
use wuding_terminal::flow::{
    BedsidePolicy, FingerResult, FlowConfig, NurseAction, PatientContext, ProposedSession, Verdict,
};
use wuding_terminal::runtime::now_ms;
use wuding_terminal::store::{CachedPatient, CachedStaff, CachedTemplate, Store};

struct AllowAll;
impl BedsidePolicy for AllowAll {
    fn check(&self, _: &PatientContext, _: &ProposedSession, _: &[TreatmentKind]) -> Vec<Verdict> {
        vec![]
    }
}

struct PlainVault;
impl TemplateVault for PlainVault {
    fn open(&self, _: &str, _: Finger, sealed: &[u8]) -> Option<Vec<u8>> {
        Some(sealed.to_vec())
    }
}

const PATIENTS: usize = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: wuding-terminal-drill DATA_DIR CYCLES");
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let cycles: usize = args[2].parse().expect("CYCLES is a number");
    let mut store = Store::open(&dir.join("terminal.db")).expect("open the store");
    if store.staff_by_id("N0231").expect("read staff").is_none() {
        store
            .put_staff(&CachedStaff {
                staff_id: "N0231".into(),
                card_uid: "04FF0001".into(),
                display_name: "李护士".into(),
                pin_hash: hash_pin("2468"),
            })
            .expect("roster");
        for p in 0..PATIENTS {
            let insured_id = format!("P{p:04}");
            store
                .put_patient(&CachedPatient {
                    insured_id: insured_id.clone(),
                    card_uid: format!("040000{p:02X}"),
                    display_name: format!("患*{p}"),
                })
                .expect("roster");
            store
                .put_template(&CachedTemplate {
                    insured_id,
                    finger: Finger::RightIndex,
                    sealed: vec![p as u8; 16],
                    template_ref: TemplateRef([p as u8; 32]),
                })
                .expect("roster");
        }
        store.put_price("003105010010000", 42_000).expect("roster");
    }
    let mut config = FlowConfig::example();
    config.beds = (1..=PATIENTS).map(|b| format!("B{b:02}")).collect();
    let signer = TerminalSigner::from_seed(&[0x5e; 32]);
    let mut core = Core::new(config, AllowAll, store, signer, PlainVault).expect("core");
    core.handle(
        now_ms(),
        Input::Card {
            uid: "04FF0001".into(),
        },
    )
    .expect("login");
    core.handle(now_ms(), Input::Pin { pin: "2468".into() })
        .expect("login");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let mut head = core.store().outbox_status().expect("status").head_seq;
    let mut open = core.store().open_sessions().expect("open").len();
    for i in 0..cycles {
        let p = i % PATIENTS;
        core.handle(
            now_ms(),
            Input::Card {
                uid: format!("040000{p:02X}"),
            },
        )
        .expect("card");
        core.handle(
            now_ms(),
            Input::Finger(FingerResult::Matched {
                score: 120,
                template_ref: TemplateRef([p as u8; 32]),
            }),
        )
        .expect("finger");
        core.handle(now_ms(), Input::Nurse(NurseAction::Cancel))
            .expect("ok");
        let new_head = core.store().outbox_status().expect("status").head_seq;
        if new_head > head {
            writeln!(out, "ACK {new_head}").unwrap();
            head = new_head;
        }
        let sessions = core.store().open_sessions().expect("open");
        if sessions.len() > open
            && let Some(s) = sessions
                .iter()
                .find(|s| s.patient.insured_id == format!("P{p:04}"))
        {
            writeln!(out, "OPEN {} {}", s.patient.insured_id, s.check_in.at_ms).unwrap();
        }
        open = sessions.len();
        out.flush().unwrap();
    }
}
