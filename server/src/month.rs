//! Loading a month written by `wuding-sim generate` (docs/data-formats.md):
//! the same library functions the import commands run, in the order README
//! "Load a generated month" gives. For tests, benchmarks and demos that
//! start from a generated month.

use std::io::BufReader;
use std::path::Path;

use anyhow::Context;

use crate::claims::{self, Mapping};
use crate::ingest::{ImportRecordsReport, IngestPolicy, Log, import_records, read_receipts};
use crate::roster::{self, RosterKind};
use crate::store::Store;

fn open(dir: &Path, name: &str) -> anyhow::Result<BufReader<std::fs::File>> {
    let path = dir.join(name);
    Ok(BufReader::new(
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?,
    ))
}

/// Imports terminals, roster, staff, plans, prices, claims and the signed
/// records (with their original receipt times) from `dir`. Any row error is
/// an error here: a generated month has none.
pub fn load_dir(
    store: &dyn Store,
    log: &Log,
    dir: &Path,
    now: &dyn Fn() -> i64,
) -> anyhow::Result<ImportRecordsReport> {
    let r = crate::registry::import_terminals(store, open(dir, "terminals.csv")?)?;
    anyhow::ensure!(r.errors.is_empty(), "terminals.csv: {:?}", r.errors);
    for (kind, name) in [
        (RosterKind::Patients, "roster.csv"),
        (RosterKind::Staff, "staff.csv"),
        (RosterKind::Plans, "plans.csv"),
        (RosterKind::Prices, "prices.csv"),
    ] {
        let r = roster::import(store, kind, open(dir, name)?)?;
        anyhow::ensure!(r.errors.is_empty(), "{name}: {:?}", r.errors);
    }
    let r = claims::import(
        store,
        open(dir, "claims.csv")?,
        &Mapping::standard(),
        "claims.csv",
        |_| {},
    )?;
    anyhow::ensure!(r.errors.is_empty(), "claims.csv: {:?}", r.errors);
    let receipts = read_receipts(open(dir, "receipts.csv")?)?;
    let report = import_records(
        store,
        log,
        &IngestPolicy::default(),
        open(dir, "records.jsonl")?,
        Some(&receipts),
        now,
    )?;
    anyhow::ensure!(
        report.bad_lines.is_empty(),
        "records.jsonl: {:?}",
        report.bad_lines
    );
    Ok(report)
}
