//! Records and envelopes: round trips, tamper detection, bad input.

use proptest::prelude::*;
use wuding_protocol::example::{
    example_chemo_fallback, example_enrolment, example_session, example_signer,
};
use wuding_protocol::{
    Attestation, Charge, ChargeItem, Closure, DecodeError, Dose, EnrolmentRecord, Envelope,
    EnvelopeError, FallbackReason, Finger, IdentityEvidence, MAX_PAYLOAD_BYTES, PatientRef, Record,
    RecordId, RecordType, SessionRecord, TemplateRef, TerminalSigner, Treatment, TreatmentKind,
    verify_many,
};

// ---- strategies ------------------------------------------------------------

fn code(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Z0-9][A-Za-z0-9_.-]{{0,{}}}", max - 1)).unwrap()
}

fn card_uid() -> impl Strategy<Value = String> {
    prop_oneof![Just(4usize), Just(7), Just(10)]
        .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
        .prop_map(hex::encode_upper)
}

fn evidence() -> impl Strategy<Value = IdentityEvidence> {
    prop_oneof![
        (0usize..10, any::<u16>(), any::<[u8; 32]>(), 1u8..10).prop_map(
            |(f, score, r, attempts)| {
                IdentityEvidence::Fingerprint {
                    finger: Finger::ALL[f],
                    score,
                    template_ref: TemplateRef(r),
                    attempts,
                }
            }
        ),
        (0usize..5, code(8), code(8), 0u8..10).prop_filter_map(
            "distinct staff",
            |(r, n, w, attempts)| {
                (n != w).then(|| IdentityEvidence::Supervised {
                    reason: FallbackReason::ALL[r],
                    nurse_id: n,
                    witness_id: w,
                    attempts,
                })
            }
        ),
    ]
}

fn charge() -> impl Strategy<Value = Charge> {
    proptest::collection::vec((code(12), 1u32..10, 0u64..1_000_000), 0..6).prop_map(|items| {
        Charge::from_items(
            items
                .into_iter()
                .map(|(c, q, p)| ChargeItem::new(c, q, p))
                .collect(),
        )
    })
}

fn treatment() -> impl Strategy<Value = Treatment> {
    (
        0usize..8,
        code(15),
        code(8),
        1u64..1_000_000,
        prop_oneof![Just("mg"), Just("Gy"), Just("IU")],
    )
        .prop_map(|(k, service_code, drug, amount, unit)| {
            let kind = TreatmentKind::ALL[k];
            let with_drug = kind.requires_drug();
            Treatment {
                kind,
                service_code,
                drug_code: with_drug.then_some(drug),
                dose: with_drug.then(|| Dose {
                    amount_milli: amount,
                    unit: unit.into(),
                }),
            }
        })
}

fn chain_position() -> impl Strategy<Value = (u64, RecordId)> {
    prop_oneof![
        Just((1u64, RecordId::GENESIS)),
        (2u64..1_000_000, any::<[u8; 32]>())
            .prop_filter_map("non-zero prev", |(s, p)| (p != [0; 32])
                .then_some((s, RecordId(p)))),
    ]
}

prop_compose! {
    fn session()(
        terminal_id in code(20),
        (seq, prev) in chain_position(),
        check_in in 1_600_000_000_000i64..1_900_000_000_000,
        minutes in 0i64..600,
        completed in any::<bool>(),
        offset in -720i16..=840,
        hospital in code(12), department in code(8), bed in code(4),
        machine in proptest::option::of(code(12)),
        insured in code(18), uid in card_uid(),
        nurse in code(6), doctor in code(6),
        treatment in treatment(),
        ev_in in evidence(), ev_out in evidence(),
        charge in charge(),
    ) -> SessionRecord {
        let check_out_at = check_in + minutes * 60_000;
        SessionRecord {
            terminal_id, seq, prev,
            signed_at_ms: check_out_at + 1_000,
            utc_offset_min: offset,
            hospital_code: hospital, department_code: department, bed, machine,
            patient: PatientRef { insured_id: insured, card_uid: uid },
            nurse_id: nurse, doctor_id: doctor,
            treatment,
            check_in: Attestation { at_ms: check_in, identity: ev_in },
            check_out: completed.then_some(Attestation { at_ms: check_out_at, identity: ev_out }),
            closure: if completed { Closure::Completed } else { Closure::MissingCheckout },
            charge,
        }
    }
}

prop_compose! {
    fn enrolment()(
        terminal_id in code(20),
        (seq, prev) in chain_position(),
        at in 1_600_000_000_000i64..1_900_000_000_000,
        hospital in code(12), department in code(8),
        insured in code(18), uid in card_uid(),
        nurse in code(6), finger in 0usize..10, r in any::<[u8; 32]>(),
        captures in 2u8..=3, slot in any::<u16>(),
    ) -> EnrolmentRecord {
        EnrolmentRecord {
            terminal_id, seq, prev, signed_at_ms: at, utc_offset_min: 480,
            hospital_code: hospital, department_code: department,
            patient: PatientRef { insured_id: insured, card_uid: uid },
            nurse_id: nurse, finger: Finger::ALL[finger], template_ref: TemplateRef(r),
            captures, module_slot: slot,
        }
    }
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        session().prop_map(Record::Session),
        enrolment().prop_map(Record::Enrolment)
    ]
}

fn signer() -> TerminalSigner {
    example_signer()
}

// ---- properties -------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_inverts_encode(record in record()) {
        let bytes = record.encode().unwrap();
        prop_assert_eq!(Record::decode(&bytes).unwrap(), record.clone());
        prop_assert_eq!(Record::decode_as(record.record_type(), &bytes).unwrap(), record);
    }

    #[test]
    fn envelope_json_round_trips_and_verifies(record in record()) {
        let signer = signer();
        let envelope = signer.sign(&record).unwrap();
        let parsed = Envelope::from_json(envelope.to_json().as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &envelope);
        let verified = parsed.verify(signer.public_key()).unwrap();
        prop_assert_eq!(verified.record, record);
        prop_assert_eq!(verified.id, RecordId::of_payload(&envelope.payload));
    }

    #[test]
    fn any_flipped_payload_bit_fails(record in record(), bit in any::<prop::sample::Index>()) {
        let signer = signer();
        let mut envelope = signer.sign(&record).unwrap();
        let i = bit.index(envelope.payload.len() * 8);
        envelope.payload[i / 8] ^= 1 << (i % 8);
        prop_assert!(envelope.verify(signer.public_key()).is_err());
        prop_assert!(verify_many(&[(&envelope, signer.public_key())])[0].is_err());
    }

    #[test]
    fn any_flipped_signature_bit_fails(record in record(), bit in 0usize..512) {
        let signer = signer();
        let mut envelope = signer.sign(&record).unwrap();
        envelope.signature[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(matches!(
            envelope.verify(signer.public_key()),
            Err(EnvelopeError::BadSignature(_))
        ));
        prop_assert!(verify_many(&[(&envelope, signer.public_key())])[0].is_err());
    }

    #[test]
    fn every_truncation_is_a_typed_error(record in record(), cut in any::<prop::sample::Index>()) {
        let bytes = record.encode().unwrap();
        let cut = cut.index(bytes.len());
        let err = Record::decode(&bytes[..cut]).unwrap_err();
        // A cut inside a number or literal (`-`, `tr`) is reported by the
        // JSON reader as a syntax error at the last byte; anywhere else it
        // is end-of-input. Either way a typed error at the cut, never a panic.
        let at_cut = matches!(err, DecodeError::Empty | DecodeError::Truncated { .. })
            || matches!(err, DecodeError::Syntax { line: 1, column, .. } if column >= cut);
        prop_assert!(at_cut, "{err:?}");
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::decode(&bytes);
        let _ = Envelope::from_json(&bytes);
    }
}

// ---- specific bad input -------------------------------------------------------

fn session_json() -> String {
    String::from_utf8(Record::Session(example_session()).encode().unwrap()).unwrap()
}

#[test]
fn payload_starts_with_type_and_version() {
    assert!(session_json().starts_with(r#"{"type":"session","v":1,"terminal_id":"#));
}

#[test]
fn oversized_payload_is_refused_before_parsing() {
    let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    assert_eq!(
        Record::decode(&big),
        Err(DecodeError::Oversized {
            len: MAX_PAYLOAD_BYTES + 1,
            max: MAX_PAYLOAD_BYTES
        })
    );
}

#[test]
fn non_utf8_payload_says_where() {
    let mut bytes = session_json().into_bytes();
    bytes[40] = 0xff;
    assert_eq!(
        Record::decode(&bytes),
        Err(DecodeError::NotUtf8 { valid_up_to: 40 })
    );
}

#[test]
fn wrong_version_is_named() {
    let text = session_json().replacen(r#""v":1"#, r#""v":2"#, 1);
    assert_eq!(
        Record::decode(text.as_bytes()),
        Err(DecodeError::UnsupportedVersion {
            record_type: RecordType::Session,
            found: 2,
            supported: 1
        })
    );
}

#[test]
fn wrong_context_is_named() {
    // An enrolment payload presented under the session context.
    let payload = Record::Enrolment(example_enrolment(1, RecordId::GENESIS))
        .encode()
        .unwrap();
    assert_eq!(
        Record::decode_as(RecordType::Session, &payload),
        Err(DecodeError::WrongContext {
            expected: RecordType::Session,
            found: RecordType::Enrolment
        })
    );
    // And signed so: the signature is over the session context, the payload
    // says enrolment. Verification must refuse it.
    let signer = signer();
    let envelope = signer.sign_payload(RecordType::Session, payload);
    assert!(matches!(
        envelope.verify(signer.public_key()),
        Err(EnvelopeError::Payload(DecodeError::WrongContext { .. }))
    ));
}

#[test]
fn signature_is_bound_to_its_context() {
    // Re-labelling a session envelope as an enrolment breaks the signature.
    let signer = signer();
    let mut envelope = signer.sign(&Record::Session(example_session())).unwrap();
    envelope.record_type = RecordType::Enrolment;
    assert_eq!(
        envelope.verify(signer.public_key()),
        Err(EnvelopeError::BadSignature(RecordType::Enrolment))
    );
}

#[test]
fn unknown_and_duplicate_members_are_refused() {
    let json = session_json();
    let unknown = json.replacen(r#""bed":"#, r#""colour":"red","bed":"#, 1);
    assert!(matches!(
        Record::decode(unknown.as_bytes()),
        Err(DecodeError::Layout { .. })
    ));
    let dup_field = json.replacen(r#""bed":"B07","#, r#""bed":"B07","bed":"B08","#, 1);
    assert!(matches!(
        Record::decode(dup_field.as_bytes()),
        Err(DecodeError::Layout { .. })
    ));
    let dup_type = json.replacen(r#""v":1,"#, r#""v":1,"type":"session","#, 1);
    assert!(Record::decode(dup_type.as_bytes()).is_err());
    let no_header = json.replacen(r#""type":"session","v":1,"#, "", 1);
    assert_eq!(
        Record::decode(no_header.as_bytes()),
        Err(DecodeError::MissingHeader)
    );
    let unknown_type = json.replacen(r#""type":"session""#, r#""type":"invoice""#, 1);
    assert_eq!(
        Record::decode(unknown_type.as_bytes()),
        Err(DecodeError::UnknownType("invoice".into()))
    );
}

#[test]
fn trailing_garbage_is_refused() {
    let text = format!("{} x", session_json());
    assert!(matches!(
        Record::decode(text.as_bytes()),
        Err(DecodeError::Syntax { .. })
    ));
}

#[test]
fn semantic_rules_are_enforced_on_decode() {
    type Mutation = fn(&mut SessionRecord);
    let cases: Vec<(&str, Mutation)> = vec![
        ("charge.total_fen", |r| r.charge.total_fen += 1),
        ("charge.items.amount_fen", |r| {
            r.charge.items[0].amount_fen += 1
        }),
        ("check_out.at_ms", |r| {
            r.check_out.as_mut().unwrap().at_ms = r.check_in.at_ms - 1
        }),
        ("check_out", |r| r.closure = Closure::MissingCheckout),
        ("prev", |r| r.prev = RecordId([1; 32])),
        ("seq", |r| r.seq = 0),
        ("patient.card_uid", |r| {
            r.patient.card_uid = "04a1b2c3".into()
        }),
        ("treatment.drug_code", |r| {
            r.treatment.kind = TreatmentKind::CHEMO
        }),
        ("identity.witness_id", |r| {
            r.check_in.identity = IdentityEvidence::Supervised {
                reason: FallbackReason::Other,
                nurse_id: "N1".into(),
                witness_id: "N1".into(),
                attempts: 0,
            }
        }),
        ("hospital_code", |r| r.hospital_code = "H 1".into()),
    ];
    let signer = signer();
    for (field, mutate) in cases {
        let mut record = example_session();
        mutate(&mut record);
        let err = Record::Session(record.clone()).encode().unwrap_err();
        assert_eq!(err.field, field, "encode must refuse: {err}");
        // A terminal that signs bad bytes anyway is refused at verification.
        let json = serde_json::json!({"type": "session", "v": 1});
        let mut object = json.as_object().unwrap().clone();
        object.extend(
            serde_json::to_value(&record)
                .unwrap()
                .as_object()
                .unwrap()
                .clone(),
        );
        let payload = serde_json::to_vec(&object).unwrap();
        let envelope = signer.sign_payload(RecordType::Session, payload);
        match envelope.verify(signer.public_key()) {
            Err(EnvelopeError::Payload(DecodeError::Field(e))) => assert_eq!(e.field, field),
            other => panic!("{field}: expected a field error, got {other:?}"),
        }
    }
}

#[test]
fn envelope_encoding_errors_are_specific() {
    let envelope = signer().sign(&Record::Session(example_session())).unwrap();
    let json: serde_json::Value = serde_json::from_str(&envelope.to_json()).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut j = json.clone();
        j[key] = value;
        Envelope::from_json(j.to_string().as_bytes())
    };
    assert!(matches!(
        with("signature", "AB".repeat(64).into()),
        Err(EnvelopeError::Encoding {
            field: "signature",
            ..
        })
    ));
    assert!(matches!(
        with("payload", "not base64!".into()),
        Err(EnvelopeError::Encoding {
            field: "payload",
            ..
        })
    ));
    assert!(matches!(
        with("key_id", "00".into()),
        Err(EnvelopeError::Encoding {
            field: "key_id",
            ..
        })
    ));
    assert_eq!(
        with("v", 9.into()),
        Err(EnvelopeError::UnsupportedVersion(9))
    );
    assert_eq!(
        with("type", "invoice".into()),
        Err(EnvelopeError::UnknownType("invoice".into()))
    );
    let mut extra = json.clone();
    extra["note"] = "hi".into();
    assert!(matches!(
        Envelope::from_json(extra.to_string().as_bytes()),
        Err(EnvelopeError::Json(_))
    ));
}

#[test]
fn wrong_key_is_named() {
    let envelope = signer().sign(&Record::Session(example_session())).unwrap();
    let other = TerminalSigner::from_seed(&[9; 32]);
    assert!(matches!(
        envelope.verify(other.public_key()),
        Err(EnvelopeError::WrongKey { .. })
    ));
}

#[test]
fn terminal_mismatch_is_named() {
    let signer = signer();
    let verified = signer
        .sign(&Record::Session(example_session()))
        .unwrap()
        .verify(signer.public_key())
        .unwrap();
    assert!(verified.check_terminal("T-330102-0007").is_ok());
    assert!(matches!(
        verified.check_terminal("T-OTHER"),
        Err(EnvelopeError::TerminalMismatch { .. })
    ));
}

#[test]
fn batch_verdicts_equal_single_verdicts() {
    let signer = signer();
    let key = signer.public_key();
    let good: Vec<Envelope> = (1..=20)
        .map(|seq| {
            let prev = if seq == 1 {
                RecordId::GENESIS
            } else {
                RecordId([seq as u8; 32])
            };
            signer
                .sign(&Record::Session(example_chemo_fallback(seq, prev)))
                .unwrap()
        })
        .collect();
    let mut items: Vec<Envelope> = good.clone();
    items[3].signature[10] ^= 0x40; // forged
    items[7].payload[30] ^= 0x01; // modified payload
    // An identity R with S = a * k (a signer who knows its own secret could
    // make this); cofactorless strict verification refuses it.
    items[11].signature = [0u8; 64];
    items[11].signature[0] = 1;
    let pairs: Vec<(&Envelope, &wuding_protocol::TerminalKey)> =
        items.iter().map(|e| (e, key)).collect();
    let batch = verify_many(&pairs);
    for (i, envelope) in items.iter().enumerate() {
        assert_eq!(batch[i].is_ok(), envelope.verify(key).is_ok(), "item {i}");
    }
    assert_eq!(batch.iter().filter(|r| r.is_err()).count(), 3);
    // All good: the batch path accepts every item.
    let pairs: Vec<_> = good.iter().map(|e| (e, key)).collect();
    assert!(verify_many(&pairs).iter().all(Result::is_ok));
}
