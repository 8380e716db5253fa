//! The national benchmark (issue 8): a month reconciled from the SQLite
//! store with the full rule set, at province and national scale, beside
//! DuckDB loading the same claims and records from CSV and running a plain
//! grouped join of them.
//!
//!     tests/national-bench.sh        # builds the stores once, then runs this
//!
//! Reads `WUDING_NATIONAL_STORE` (a folder with `province.db`,
//! `national.db` and `claims.csv`, made by the script). Each reconciliation
//! runs in a fresh child process (this program with `--reconcile DB`), so
//! its peak memory (VmHWM) is its own; wall time, the load / engine / store
//! split and the parts are printed. The records are written once as
//! `records.csv` (one row per accepted session: id, terminal, hospital,
//! patient, service date, kind) for DuckDB, which runs when
//! `WUDING_DUCKDB_PYTHON` names a Python with `duckdb`
//! (`tests/python/duckdb_join.py`).
//!
//! Under `cargo nextest run --all-targets` it offers one smoke case,
//! `national_smoke`: two provinces of 300 patients loaded into a temporary
//! store, reconciled in a child process in parts of 100 patients.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use wuding_firmware_host::scenario::{ScenarioConfig, generate};
use wuding_protocol::TerminalSigner;
use wuding_server::ingest::Log;
use wuding_server::reconcile;
use wuding_server::store::sqlite::SqliteStore;

/// The allocator `wuding-server` runs reconciliation with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Peak resident memory of this process, from /proc/self/status (Linux).
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The child: reconciles October 2026 of `db` in parts of `per_part`
/// patients and prints one line of figures.
fn reconcile_child(db: &Path, per_part: usize) {
    let t = Instant::now();
    let store = SqliteStore::open(db).expect("the store opens");
    let rules = reconcile::load_rules(None).expect("default rules");
    let period = reconcile::period("2026-10-01", "2026-10-31").expect("valid period");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let mut findings = 0usize;
    let summary = reconcile::run_in_parts(&store, &rules, period, now, false, per_part, &mut |f| {
        findings += f.len()
    })
    .expect("reconciliation runs");
    let wall = t.elapsed().as_secs_f64();
    println!(
        "RESULT sessions={} claims={} findings={} new={} parts={} load_ms={} engine_ms={} store_ms={} wall_s={wall:.2} peak_mib={:.0}",
        summary.sessions,
        summary.claims,
        findings,
        summary.stored.new,
        summary.parts,
        summary.load_ms,
        summary.reconcile_ms,
        summary.store_ms,
        peak_memory_mib().unwrap_or(0.0)
    );
}

/// Runs the child on `db` and returns its RESULT line's fields.
fn reconcile_in_child(db: &Path, per_part: usize) -> Vec<(String, String)> {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .arg("--reconcile")
        .arg(db)
        .arg(per_part.to_string())
        .output()
        .expect("the child starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reconciling {} failed:\n{stdout}\n{}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("the child prints its result");
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("?", |(_, v)| v.as_str())
}

fn number(fields: &[(String, String)], name: &str) -> f64 {
    field(fields, name).parse().unwrap_or(f64::NAN)
}

/// Writes the accepted session records of `db` as CSV for DuckDB.
fn write_records_csv(db: &Path, out: &Path) {
    let conn = rusqlite::Connection::open(db).expect("the store opens");
    let mut stmt = conn
        .prepare(
            "SELECT hex(record_id), terminal_id, hospital_code, insured_id, service_date, kind
             FROM records WHERE record_type = 'session'",
        )
        .expect("query");
    let tmp = out.with_extension("csv.part");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create records.csv"));
    writeln!(
        w,
        "record_id,terminal_id,hospital_code,insured_id,service_date,kind"
    )
    .expect("write");
    let mut rows = stmt.query([]).expect("query");
    while let Some(r) = rows.next().expect("row") {
        let cols: Vec<String> = (0..6)
            .map(|i| {
                r.get::<_, Option<String>>(i)
                    .expect("text")
                    .unwrap_or_default()
            })
            .collect();
        writeln!(w, "{}", cols.join(",")).expect("write");
    }
    w.flush().expect("flush");
    drop(w);
    std::fs::rename(&tmp, out).expect("rename records.csv");
}

fn report(name: &str, f: &[(String, String)]) {
    println!(
        "{name:<9} {:>10} sessions {:>10} claim lines -> {:>8} findings in {:>3} part(s): wall {:>7} s (load {:.1} s, engine {:.1} s, store {:.1} s; {} new), peak {} MiB",
        field(f, "sessions"),
        field(f, "claims"),
        field(f, "findings"),
        field(f, "parts"),
        field(f, "wall_s"),
        number(f, "load_ms") / 1000.0,
        number(f, "engine_ms") / 1000.0,
        number(f, "store_ms") / 1000.0,
        field(f, "new"),
        field(f, "peak_mib"),
    );
}

/// Two small provinces in a temporary store, reconciled in parts.
fn smoke() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("smoke.db");
    let store = SqliteStore::open(&db).expect("the store opens");
    let log = Log::new(TerminalSigner::from_seed(&[9; 32]));
    for province in [51, 11] {
        let mut cfg = ScenarioConfig::new(300, 2026, 10);
        cfg.seed = u64::from(province);
        cfg.province = province;
        let month = dir.path().join(format!("p{province}"));
        generate(&cfg).write_to(&month).expect("write the month");
        wuding_server::month::load_dir(&store, &log, &month, &|| 1_800_000_000_000)
            .expect("load the month");
    }
    drop(store);
    let f = reconcile_in_child(&db, 100);
    report("smoke", &f);
    assert!(number(&f, "parts") >= 6.0, "{f:?}");
    assert!(number(&f, "sessions") > 5_000.0, "{f:?}");
    assert!(number(&f, "findings") > 0.0, "{f:?}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--reconcile") {
        let db = PathBuf::from(&args[i + 1]);
        let per_part = args[i + 2].parse().expect("patients per part");
        reconcile_child(&db, per_part);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("national_smoke: test");
        }
        return;
    }
    if args.iter().any(|a| a == "national_smoke" || a == "--test") {
        smoke();
        return;
    }
    let Some(dir) = std::env::var_os("WUDING_NATIONAL_STORE").map(PathBuf::from) else {
        eprintln!("WUDING_NATIONAL_STORE is not set: run tests/national-bench.sh");
        smoke();
        return;
    };
    let per_part = reconcile::PATIENTS_PER_PART;
    let province = reconcile_in_child(&dir.join("province.db"), per_part);
    report("province", &province);
    let national = reconcile_in_child(&dir.join("national.db"), per_part);
    report("national", &national);
    let ratio = |name: &str| number(&national, name) / number(&province, name);
    println!(
        "growth province -> national: data x{:.1}, wall x{:.1}, load x{:.1}, engine x{:.1}, store x{:.1}, peak memory x{:.1}",
        ratio("sessions"),
        ratio("wall_s"),
        ratio("load_ms"),
        ratio("engine_ms"),
        ratio("store_ms"),
        ratio("peak_mib"),
    );
    // The next part loads while one is stored, so load + engine is no
    // longer a share of the wall time: the wall time is what compares.
    println!(
        "national wall time (what DuckDB's load + join compares with): {:.1} s",
        number(&national, "wall_s")
    );

    let records = dir.join("records.csv");
    if !records.exists() {
        let t = Instant::now();
        write_records_csv(&dir.join("national.db"), &records);
        println!(
            "wrote {} in {:.1} s",
            records.display(),
            t.elapsed().as_secs_f64()
        );
    }
    match std::env::var_os("WUDING_DUCKDB_PYTHON") {
        None => println!("DuckDB: skipped (WUDING_DUCKDB_PYTHON is not set)"),
        Some(python) => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/duckdb_join.py");
            let status = Command::new(python)
                .arg(script)
                .arg(dir.join("claims.csv"))
                .arg(&records)
                .status()
                .expect("DuckDB runs");
            assert!(status.success(), "the DuckDB script failed");
        }
    }
}
