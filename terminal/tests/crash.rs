//! Crash safety: the real core and store are killed with SIGKILL at random
//! moments across hundreds of check-in/check-out cycles. After every kill:
//! every acknowledged record is present exactly once, the chain has no gap
//! or fork, no session is signed twice, and every session that was shown
//! as open is still open (and resumes) or was checked out.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use wuding_protocol::{Record, verify_chain};
use wuding_terminal::store::Store;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let drill = env!("CARGO_BIN_EXE_wuding-terminal-drill");
    let mut rng = Lcg(0x5eed);
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    // Sessions shown as open: insured id -> check-in time.
    let mut shown_open: BTreeMap<String, i64> = BTreeMap::new();
    let mut runs = 0;
    let mut kills = 0;
    loop {
        runs += 1;
        let mut child = Command::new(drill)
            .arg(dir.path())
            .arg("12")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a random point of the run's progress (not of wall-clock
        // time, so a loaded machine kills as often mid-work as an idle
        // one): after start-up, after a random number of output lines, and
        // a random few milliseconds into whatever comes next.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen: Vec<String> = Vec::new();
        let target = (rng.next() % 28) as usize;
        let mut after_ready = 0usize;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            let ready = line == "READY";
            seen.push(line);
            if ready || after_ready > 0 {
                after_ready += 1;
                if after_ready > target {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 8));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        seen.extend(lines.map_while(Result::ok));
        for line in seen {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[..] {
                ["ACK", seq] => {
                    acked.insert(seq.parse().unwrap());
                }
                ["OPEN", patient, at] => {
                    shown_open.insert(patient.to_owned(), at.parse().unwrap());
                }
                _ => {}
            }
        }

        // What survived.
        let store = Store::open(&dir.path().join("terminal.db")).unwrap();
        let records = store.all_records().unwrap();
        let (head, _) = store.chain_head().unwrap();
        assert_eq!(
            records.len() as u64,
            head,
            "run {runs}: one stored record per chain position"
        );
        assert!(
            acked.iter().all(|s| *s <= head),
            "run {runs}: an acknowledged record was lost"
        );
        let decoded: Vec<_> = records.iter().map(|e| e.decode().unwrap()).collect();
        let report = verify_chain(decoded.iter().map(|v| v.record.chain_link(v.id)), None);
        assert!(report.is_clean(), "run {runs}: {:?}", report.defects);
        let mut signed_sessions = BTreeSet::new();
        for v in &decoded {
            if let Record::Session(s) = &v.record {
                assert!(
                    signed_sessions.insert((s.patient.insured_id.clone(), s.check_in.at_ms)),
                    "run {runs}: a session was signed twice"
                );
            }
        }
        let open: BTreeMap<String, i64> = store
            .open_sessions()
            .unwrap()
            .into_iter()
            .map(|s| (s.patient.insured_id, s.check_in.at_ms))
            .collect();
        for (patient, at) in &open {
            assert!(
                !signed_sessions.contains(&(patient.clone(), *at)),
                "run {runs}: a session is both open and signed"
            );
        }
        for (patient, at) in &shown_open {
            assert!(
                open.get(patient) == Some(at) || signed_sessions.contains(&(patient.clone(), *at)),
                "run {runs}: a session shown as open vanished"
            );
        }
        let check_outs = signed_sessions.len();
        if check_outs >= 200 && kills >= 50 {
            println!(
                "{runs} runs, {kills} killed mid-run, {check_outs} sessions signed, chain head {head}"
            );
            break;
        }
        assert!(runs < 2000, "too slow to reach 200 cycles");
    }
}
