//! The local store: atomic signing, chain, outbox, open sessions.

use wuding_protocol::example::{example_enrolment, example_session, example_signer};
use wuding_protocol::{Record, RecordId, verify_chain};
use wuding_terminal::flow::OpenSession;
use wuding_terminal::store::Store;

fn open_session(bed: &str) -> OpenSession {
    let s = example_session();
    OpenSession {
        bed: bed.into(),
        patient: s.patient.clone(),
        display_name: "王*明".into(),
        nurse_id: s.nurse_id.clone(),
        doctor_id: s.doctor_id.clone(),
        kind: s.treatment.kind,
        service_code: s.treatment.service_code.clone(),
        drug_code: None,
        dose: None,
        check_in: s.check_in.clone(),
        finger: None,
        dispensed: vec![],
    }
}

#[test]
fn signing_assigns_the_chain_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terminal.db");
    let signer = example_signer();
    {
        let mut store = Store::open(&path).unwrap();
        store.put_open_session(&open_session("B01")).unwrap();
        store
            .sign_and_store(
                &signer,
                Record::Enrolment(example_enrolment(99, RecordId([9; 32]))),
                None,
            )
            .unwrap();
        let e = store
            .sign_and_store(&signer, Record::Session(example_session()), Some("B01"))
            .unwrap();
        let v = e.verify(signer.public_key()).unwrap();
        assert_eq!(
            v.record.seq(),
            2,
            "the store, not the caller, picks the position"
        );
        assert!(
            store.open_sessions().unwrap().is_empty(),
            "closed in the same transaction"
        );
    }
    let store = Store::open(&path).unwrap();
    let (seq, head) = store.chain_head().unwrap();
    assert_eq!(seq, 2);
    let records = store.all_records().unwrap();
    assert_eq!(records[1].record_id(), head);
    let links = records.iter().map(|e| {
        let v = e.verify(signer.public_key()).unwrap();
        v.record.chain_link(v.id)
    });
    assert!(verify_chain(links, None).is_clean());
}

#[test]
fn outbox_entries_retire_only_on_receipt_and_idempotently() {
    let mut store = Store::in_memory().unwrap();
    let signer = example_signer();
    for _ in 0..3 {
        store
            .sign_and_store(&signer, Record::Session(example_session()), None)
            .unwrap();
    }
    let pending = store.pending(10).unwrap();
    assert_eq!(
        pending.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        store
            .retire(pending[1].record_id, "{\"receipt\":1}", 5)
            .unwrap()
    );
    assert!(
        !store
            .retire(pending[1].record_id, "{\"receipt\":1}", 6)
            .unwrap()
    );
    assert!(!store.retire(RecordId([7; 32]), "{}", 6).unwrap());
    let status = store.outbox_status().unwrap();
    assert_eq!((status.waiting, status.retired, status.head_seq), (2, 1, 3));
    assert_eq!(
        store
            .pending(10)
            .unwrap()
            .iter()
            .map(|p| p.seq)
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    // Retired records stay as local evidence.
    assert_eq!(store.all_records().unwrap().len(), 3);
}

#[test]
fn an_invalid_record_is_refused_and_nothing_advances() {
    let mut store = Store::in_memory().unwrap();
    let signer = example_signer();
    let mut bad = example_session();
    bad.charge.total_fen += 1;
    assert!(
        store
            .sign_and_store(&signer, Record::Session(bad), None)
            .is_err()
    );
    assert_eq!(store.chain_head().unwrap().0, 0);
    assert_eq!(store.outbox_status().unwrap().waiting, 0);
}

#[test]
fn open_sessions_and_audit_log_persist() {
    let mut store = Store::in_memory().unwrap();
    let mut s = open_session("B02");
    store.put_open_session(&s).unwrap();
    s.dispensed.push(("C-DIALYSER".into(), 1));
    store.put_open_session(&s).unwrap();
    assert_eq!(store.open_sessions().unwrap(), vec![s]);
    store.audit(1, "nurse N0231 logged in").unwrap();
    store.audit(2, "session opened at bed B02").unwrap();
    assert_eq!(
        store.audit_tail(1).unwrap(),
        vec![(2, "session opened at bed B02".to_string())]
    );
    store
        .set_meta("server_url", "http://127.0.0.1:8080")
        .unwrap();
    assert_eq!(
        store.meta("server_url").unwrap().as_deref(),
        Some("http://127.0.0.1:8080")
    );
}

#[test]
fn roster_cache_answers_the_bedside_questions() {
    use wuding_protocol::{Date, Finger, TemplateRef, TreatmentKind, TreatmentPlan};
    use wuding_terminal::store::{CachedPatient, CachedStaff, CachedTemplate};

    let mut store = Store::in_memory().unwrap();
    store
        .put_patient(&CachedPatient {
            insured_id: "330102195403170012".into(),
            card_uid: "04A1B2C3".into(),
            display_name: "王*明".into(),
        })
        .unwrap();
    store
        .put_staff(&CachedStaff {
            staff_id: "N0231".into(),
            card_uid: "04FF0001".into(),
            display_name: "李护士".into(),
            pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        })
        .unwrap();
    for finger in [Finger::RightIndex, Finger::RightMiddle] {
        store
            .put_template(&CachedTemplate {
                insured_id: "330102195403170012".into(),
                finger,
                sealed: vec![1, 2, 3],
                template_ref: TemplateRef([4; 32]),
            })
            .unwrap();
    }
    let plan = |id: &str, from: Date, to: Date, kind| TreatmentPlan {
        plan_id: id.into(),
        insured_id: "330102195403170012".into(),
        hospital_code: "H33010200017".into(),
        department_code: "NEPH-HD".into(),
        doctor_ids: vec!["D0107".into()],
        kinds: vec![kind],
        drug_code: None,
        max_dose: None,
        max_sessions_per_week: Some(3),
        valid_from: from,
        valid_to: to,
    };
    store
        .put_plan(&plan(
            "P-2025",
            Date::constant(2025, 1, 1),
            Date::constant(2025, 12, 31),
            TreatmentKind::HD,
        ))
        .unwrap();
    store
        .put_plan(&plan(
            "P-2026",
            Date::constant(2026, 1, 1),
            Date::constant(2026, 12, 31),
            TreatmentKind::HDF,
        ))
        .unwrap();
    store.put_price("003105010010000", 42_000).unwrap();

    let p = store.patient_by_card("04A1B2C3").unwrap().unwrap();
    assert_eq!(p.insured_id, "330102195403170012");
    assert!(store.patient_by_card("04000000").unwrap().is_none());
    assert_eq!(
        store.staff_by_card("04FF0001").unwrap().unwrap().staff_id,
        "N0231"
    );
    assert_eq!(
        store.staff_by_id("N0231").unwrap().unwrap().card_uid,
        "04FF0001"
    );
    let fingers: Vec<Finger> = store
        .templates_of(&p.insured_id)
        .unwrap()
        .into_iter()
        .map(|t| t.finger)
        .collect();
    assert_eq!(fingers, vec![Finger::RightIndex, Finger::RightMiddle]);
    let today = store
        .plan_for(&p.insured_id, Date::constant(2026, 11, 16))
        .unwrap()
        .unwrap();
    assert_eq!(today.plan_id, "P-2026");
    assert!(
        store
            .plan_for(&p.insured_id, Date::constant(2027, 1, 1))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.price_list().unwrap().unit_price_fen["003105010010000"],
        42_000
    );

    // Today's sessions come from what this terminal signed.
    let signer = example_signer();
    store
        .sign_and_store(&signer, Record::Session(example_session()), None)
        .unwrap();
    assert_eq!(
        store
            .sessions_on(&p.insured_id, Date::constant(2026, 11, 16), 480)
            .unwrap(),
        vec![TreatmentKind::HD]
    );
    assert!(
        store
            .sessions_on(&p.insured_id, Date::constant(2026, 11, 17), 480)
            .unwrap()
            .is_empty()
    );
}
