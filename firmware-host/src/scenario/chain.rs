//! Per-terminal chains: order, sign (in parallel, one terminal per task),
//! apply the integrity frauds, and simulate when the server received each
//! record.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use wuding_protocol::{
    Attestation, Charge, ChargeItem, Closure, Dose, EnrolmentRecord, Envelope, IdentityEvidence,
    PatientRef, Record, RecordId, SessionRecord, Treatment,
};

use super::calendar::{MINUTE_MS, UTC_OFFSET_MIN};
use super::catalog::{self, DRUGS, Dept};
use super::world::{self, Ev, Flag, Session, World};

#[derive(Debug, Clone, Copy)]
enum Item {
    Session(u32),
    Enrolment(u32),
}

/// One line of `records.jsonl` with its receipt.
pub struct SignedRecord {
    pub envelope: Envelope,
    pub record_id: RecordId,
    pub terminal: u32,
    pub seq: u64,
    pub received_at_ms: i64,
}

/// A terminal's signed records, each with the session it attests.
type Chain = Vec<(SignedRecord, Option<u32>)>;

pub struct Signed {
    /// In upload order: terminals by id, ascending seq.
    pub records: Vec<SignedRecord>,
    /// Id of the record in the file for each session (None if deleted).
    pub record_of: Vec<Option<RecordId>>,
}

pub fn sign_all(w: &World, threads: usize) -> Signed {
    let n_terms = w.terminals.len();
    let mut chains: Vec<Vec<(i64, u8, u32, Item)>> = vec![Vec::new(); n_terms];
    let mut forks: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n_terms];
    for (i, s) in w.sessions.iter().enumerate() {
        match s.flag {
            Flag::ForkOf(orig) => forks[s.terminal as usize].push((orig, i as u32)),
            _ => chains[s.terminal as usize].push((
                s.signed_at,
                1,
                i as u32,
                Item::Session(i as u32),
            )),
        }
    }
    for (i, e) in w.enrolments.iter().enumerate() {
        chains[e.terminal as usize].push((e.signed_at, 0, i as u32, Item::Enrolment(i as u32)));
    }
    let mut order: Vec<usize> = (0..n_terms).collect();
    order.sort_by(|&a, &b| w.terminals[a].id.cmp(&w.terminals[b].id));

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Chain>>> = Mutex::new((0..n_terms).map(|_| None).collect());
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n_terms {
                        break;
                    }
                    let t = order[k];
                    let mut items = chains[t].clone();
                    items.sort_by_key(|x| (x.0, x.1, x.2));
                    let out = sign_terminal(w, t as u32, &items, &forks[t]);
                    results.lock().unwrap()[t] = Some(out);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    let mut records = Vec::new();
    let mut record_of = vec![None; w.sessions.len()];
    for &t in &order {
        for (r, session) in results[t].take().unwrap_or_default() {
            if let Some(s) = session {
                record_of[s as usize] = Some(r.record_id);
            }
            records.push(r);
        }
    }
    Signed { records, record_of }
}

fn sign_terminal(
    w: &World,
    t: u32,
    items: &[(i64, u8, u32, Item)],
    forks: &[(u32, u32)],
) -> Vec<(SignedRecord, Option<u32>)> {
    let term = &w.terminals[t as usize];
    let mut rng = ChaCha20Rng::from_seed(world::derive(w.cfg_seed, "receipts", term.id.as_bytes()));
    let mut out = Vec::with_capacity(items.len() + forks.len());
    let mut prev = RecordId::GENESIS;
    let mut seq = 0u64;
    // Records signed while offline arrive together when the link returns.
    let mut backlog_ms = 0i64;
    let mut receive = |true_signed: i64, rng: &mut ChaCha20Rng| -> i64 {
        match term.outage {
            Some((from, to)) if true_signed >= from && true_signed < to => {
                backlog_ms += rng.random_range(200..1500);
                to + rng.random_range(30_000..300_000) + backlog_ms
            }
            _ => true_signed + rng.random_range(2_000..180_000),
        }
    };
    for &(_, _, _, item) in items {
        seq += 1;
        match item {
            Item::Enrolment(e) => {
                let record = Record::Enrolment(enrolment_record(w, e, seq, prev));
                let env = term
                    .signer
                    .sign(&record)
                    .expect("generated enrolments are valid");
                let id = env.record_id();
                let received = receive(record.signed_at_ms(), &mut rng);
                out.push((
                    SignedRecord {
                        envelope: env,
                        record_id: id,
                        terminal: t,
                        seq,
                        received_at_ms: received,
                    },
                    None,
                ));
                prev = id;
            }
            Item::Session(si) => {
                let s = &w.sessions[si as usize];
                let mut record = Record::Session(session_record(w, s, seq, prev));
                let mut env = term
                    .signer
                    .sign(&record)
                    .expect("generated sessions are valid");
                let id = env.record_id();
                let received = receive(s.signed_at - s.skew_ms, &mut rng);
                match s.flag {
                    Flag::Deleted => {
                        prev = id;
                        continue;
                    }
                    Flag::Tampered => {
                        if let Record::Session(r) = &mut record {
                            r.check_in.at_ms -= rng.random_range(30..=60) * MINUTE_MS;
                        }
                        env.payload = record.encode().expect("still valid");
                    }
                    _ => {}
                }
                let file_id = if s.flag == Flag::Tampered {
                    env.record_id()
                } else {
                    id
                };
                out.push((
                    SignedRecord {
                        envelope: env,
                        record_id: file_id,
                        terminal: t,
                        seq,
                        received_at_ms: received,
                    },
                    Some(si),
                ));
                // The fork: a second record at this seq, linked to the same prev.
                for &(orig, fi) in forks {
                    if orig == si {
                        let f = &w.sessions[fi as usize];
                        let frec = session_record(w, f, seq, prev);
                        let fenv = term
                            .signer
                            .sign(&Record::Session(frec))
                            .expect("valid fork");
                        let fid = fenv.record_id();
                        let freceived = receive(f.signed_at, &mut rng);
                        out.push((
                            SignedRecord {
                                envelope: fenv,
                                record_id: fid,
                                terminal: t,
                                seq,
                                received_at_ms: freceived,
                            },
                            Some(fi),
                        ));
                    }
                }
                prev = id;
            }
        }
    }
    out
}

fn evidence(w: &World, s: &Session, ev: Ev) -> IdentityEvidence {
    match ev {
        Ev::Finger {
            alt,
            score,
            attempts,
        } => {
            let p = &w.patients[s.patient as usize];
            let i = usize::from(alt);
            let template_ref = if s.hospital == p.hospital {
                p.template_refs[i]
            } else {
                world::template_for(
                    &w.hospitals[s.hospital as usize].template_key,
                    w.cfg_seed,
                    &p.insured_id,
                    p.fingers[i],
                )
            };
            IdentityEvidence::Fingerprint {
                finger: p.fingers[i],
                score,
                template_ref,
                attempts,
            }
        }
        Ev::Supervised {
            reason,
            witness,
            attempts,
        } => IdentityEvidence::Supervised {
            reason,
            nurse_id: w.staff[s.nurse as usize].id.clone(),
            witness_id: w.staff[witness as usize].id.clone(),
            attempts,
        },
    }
}

fn session_record(w: &World, s: &Session, seq: u64, prev: RecordId) -> SessionRecord {
    let h = &w.hospitals[s.hospital as usize];
    let p = &w.patients[s.patient as usize];
    let (bed, machine) = match (s.dept, s.kind) {
        (Dept::Neph, wuding_protocol::TreatmentKind::PD) => (format!("PD{}", s.bed), None),
        (Dept::Neph, _) => (
            format!("B{:02}", s.bed),
            Some(format!("{}-{:02}", h.machine_model, s.bed)),
        ),
        (Dept::Onc, _) => (format!("C{:02}", s.bed), None),
        (Dept::Rad, _) => (format!("LA{}", s.bed), Some(format!("LINAC-{}", s.bed))),
        (Dept::Tx, _) => (format!("W{}", s.bed), None),
    };
    let items = s.items[..s.n_items as usize]
        .iter()
        .map(|(code, price)| ChargeItem::new(*code, 1, *price))
        .collect();
    SessionRecord {
        terminal_id: w.terminals[s.terminal as usize].id.clone(),
        seq,
        prev,
        signed_at_ms: s.signed_at,
        utc_offset_min: UTC_OFFSET_MIN,
        hospital_code: h.code.clone(),
        department_code: s.dept.code().into(),
        bed,
        machine,
        patient: PatientRef {
            insured_id: p.insured_id.clone(),
            card_uid: p.card_uid.clone(),
        },
        nurse_id: w.staff[s.nurse as usize].id.clone(),
        doctor_id: w.staff[s.doctor as usize].id.clone(),
        treatment: Treatment {
            kind: s.kind,
            service_code: catalog::service_code(s.kind).into(),
            drug_code: s.drug.map(|d| DRUGS[d].code.to_owned()),
            dose: (s.dose_milli > 0).then(|| Dose {
                amount_milli: s.dose_milli,
                unit: s.dose_unit.into(),
            }),
        },
        check_in: Attestation {
            at_ms: s.check_in,
            identity: evidence(w, s, s.ev_in),
        },
        check_out: s.check_out.map(|at_ms| Attestation {
            at_ms,
            identity: evidence(w, s, s.ev_out),
        }),
        closure: if s.check_out.is_some() {
            Closure::Completed
        } else {
            Closure::MissingCheckout
        },
        charge: Charge::from_items(items),
    }
}

fn enrolment_record(w: &World, e: u32, seq: u64, prev: RecordId) -> EnrolmentRecord {
    let e = &w.enrolments[e as usize];
    let p = &w.patients[e.patient as usize];
    let term = &w.terminals[e.terminal as usize];
    EnrolmentRecord {
        terminal_id: term.id.clone(),
        seq,
        prev,
        signed_at_ms: e.signed_at,
        utc_offset_min: UTC_OFFSET_MIN,
        hospital_code: w.hospitals[term.hospital as usize].code.clone(),
        department_code: term.dept.code().into(),
        patient: PatientRef {
            insured_id: p.insured_id.clone(),
            card_uid: p.card_uid.clone(),
        },
        nurse_id: w.staff[e.nurse as usize].id.clone(),
        finger: p.fingers[0],
        template_ref: p.template_refs[0],
        captures: 3,
        module_slot: e.slot,
    }
}
