//! The worked example of `docs/protocol.md`, and realistic sample records
//! for tests across the workspace.
//!
//! Changing anything here changes the documented example: the test
//! `protocol/tests/doc_example.rs` will then ask for the document to be
//! updated.

use crate::ids::RecordId;
use crate::keys::TerminalSigner;
use crate::record::{
    Attestation, Closure, EnrolmentRecord, PatientRef, Record, SessionRecord, Treatment,
};
use crate::types::{
    Charge, ChargeItem, FallbackReason, Finger, IdentityEvidence, TemplateRef, TreatmentKind,
};

/// Secret seed of the example terminal key (never use outside tests).
pub const EXAMPLE_SEED: [u8; 32] = [
    0x77, 0x75, 0x64, 0x69, 0x6e, 0x67, 0x2d, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2d, 0x74,
    0x65, 0x72, 0x6d, 0x69, 0x6e, 0x61, 0x6c, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x30, 0x30, 0x31,
];

/// The example terminal's signer.
pub fn example_signer() -> TerminalSigner {
    TerminalSigner::from_seed(&EXAMPLE_SEED)
}

/// 2026-11-16 08:02:11 +08:00 (a Monday morning dialysis shift).
pub const EXAMPLE_CHECK_IN_MS: i64 = 1_794_787_331_000;

/// A completed four-hour haemodialysis session, first in its chain.
pub fn example_session() -> SessionRecord {
    let check_in = EXAMPLE_CHECK_IN_MS;
    let check_out = check_in + (4 * 60 + 3) * 60_000;
    SessionRecord {
        terminal_id: "T-330102-0007".into(),
        seq: 1,
        prev: RecordId::GENESIS,
        signed_at_ms: check_out + 1_500,
        utc_offset_min: 480,
        hospital_code: "H33010200017".into(),
        department_code: "NEPH-HD".into(),
        bed: "B07".into(),
        machine: Some("HD-4008S-12".into()),
        patient: PatientRef {
            insured_id: "330102195403170012".into(),
            card_uid: "04A1B2C3".into(),
        },
        nurse_id: "N0231".into(),
        doctor_id: "D0107".into(),
        treatment: Treatment {
            kind: TreatmentKind::HD,
            service_code: "003105010010000".into(),
            drug_code: None,
            dose: None,
        },
        check_in: Attestation {
            at_ms: check_in,
            identity: IdentityEvidence::Fingerprint {
                finger: Finger::RightIndex,
                score: 142,
                template_ref: TemplateRef([0x5a; 32]),
                attempts: 1,
            },
        },
        check_out: Some(Attestation {
            at_ms: check_out,
            identity: IdentityEvidence::Fingerprint {
                finger: Finger::RightIndex,
                score: 97,
                template_ref: TemplateRef([0x5a; 32]),
                attempts: 2,
            },
        }),
        closure: Closure::Completed,
        charge: Charge::from_items(vec![
            ChargeItem::new("003105010010000", 1, 42_000),
            ChargeItem::new("C-DIALYSER-HF", 1, 9_800),
        ]),
    }
}

/// A chemotherapy session attested by supervised fallback, with a drug and
/// dose under the patient's 五定 plan.
pub fn example_chemo_fallback(seq: u64, prev: RecordId) -> SessionRecord {
    let mut r = example_session();
    r.seq = seq;
    r.prev = prev;
    r.department_code = "ONC-DAY".into();
    r.bed = "C03".into();
    r.machine = None;
    r.patient = PatientRef {
        insured_id: "330106196811020025".into(),
        card_uid: "04112233445566".into(),
    };
    r.doctor_id = "D0311".into();
    r.treatment = Treatment {
        kind: TreatmentKind::CHEMO,
        service_code: "311201001".into(),
        drug_code: Some("XL01XA01".into()),
        dose: Some(crate::types::Dose {
            amount_milli: 75_000,
            unit: "mg".into(),
        }),
    };
    let evidence = IdentityEvidence::Supervised {
        reason: FallbackReason::FingerprintUnreadable,
        nurse_id: "N0231".into(),
        witness_id: "N0198".into(),
        attempts: 4,
    };
    r.check_in.identity = evidence.clone();
    if let Some(out) = r.check_out.as_mut() {
        out.identity = evidence;
    }
    r.charge = Charge::from_items(vec![
        ChargeItem::new("311201001", 1, 3_500),
        ChargeItem::new("XL01XA01", 3, 12_650),
    ]);
    r
}

/// An enrolment record.
pub fn example_enrolment(seq: u64, prev: RecordId) -> EnrolmentRecord {
    EnrolmentRecord {
        terminal_id: "T-330102-0007".into(),
        seq,
        prev,
        signed_at_ms: EXAMPLE_CHECK_IN_MS - 86_400_000,
        utc_offset_min: 480,
        hospital_code: "H33010200017".into(),
        department_code: "NEPH-HD".into(),
        patient: PatientRef {
            insured_id: "330102195403170012".into(),
            card_uid: "04A1B2C3".into(),
        },
        nurse_id: "N0231".into(),
        finger: Finger::RightIndex,
        template_ref: TemplateRef([0x5a; 32]),
        captures: 3,
        module_slot: 17,
    }
}

/// A clean chain of `n` signed records from the example terminal,
/// alternating sessions and enrolments, one minute apart.
pub fn example_chain(n: u64) -> Vec<crate::envelope::Envelope> {
    let signer = example_signer();
    let mut prev = RecordId::GENESIS;
    let mut out = Vec::with_capacity(n as usize);
    for seq in 1..=n {
        let record = if seq % 5 == 0 {
            let mut e = example_enrolment(seq, prev);
            e.signed_at_ms += seq as i64 * 60_000;
            Record::Enrolment(e)
        } else {
            let mut s = example_session();
            s.seq = seq;
            s.prev = prev;
            s.check_in.at_ms += seq as i64 * 60_000;
            if let Some(o) = s.check_out.as_mut() {
                o.at_ms += seq as i64 * 60_000;
            }
            s.signed_at_ms += seq as i64 * 60_000;
            Record::Session(s)
        };
        let envelope = signer.sign(&record).expect("example records are valid");
        prev = envelope.record_id();
        out.push(envelope);
    }
    out
}

/// The lines of the worked example in `docs/protocol.md`, `name = value`.
pub fn worked_example_lines() -> Vec<String> {
    let signer = example_signer();
    let record = Record::Session(example_session());
    let envelope = signer.sign(&record).expect("the example is valid");
    let payload = String::from_utf8(envelope.payload.clone()).expect("ASCII JSON");
    vec![
        format!("seed        = {}", hex::encode(EXAMPLE_SEED)),
        format!("public_key  = {}", signer.public_key().to_hex()),
        format!("key_id      = {}", signer.key_id()),
        format!(
            "context     = {}",
            hex::encode(record.record_type().context())
        ),
        format!("payload     = {payload}"),
        format!("signature   = {}", hex::encode(envelope.signature)),
        format!("record_id   = {}", envelope.record_id()),
        format!("envelope    = {}", envelope.to_json()),
    ]
}
