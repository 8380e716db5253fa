//! Claims import: the CSV layout of DESIGN.md, or any layout through a
//! column-mapping file (TOML). Streaming: rows are read, checked and stored
//! in batches, so memory stays constant whatever the file size. A bad row
//! gets one precise error (line, column, why) and the good rows go in;
//! importing the same file again changes nothing (claim ids are unique).
//!
//! Mapping files map each claim field to a *spec*:
//! * `"column_name"`: the cell as is;
//! * `"{a}-{b}"`: a template over several columns (for composite ids);
//! * `{ column = "x", yuan = true }`: yuan with up to two decimals → fen, exactly;
//! * `{ column = "x", date = true }`: the date part of `YYYY-MM-DD[ HH:MM:SS]`;
//! * `{ column = "x", integer = true }`: a count such as `1` or `1.0000`;
//! * `{ column = "x", lookup = true }`: through the `[service_kinds]` table;
//! * `{ value = "..." }`: a constant.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;
use thiserror::Error;
use wuding_protocol::{ClaimLine, Code, Date, Dose, TreatmentKind, parse_fixed_point};

use crate::store::{Store, StoreError};

/// The claim fields, in the order of the standard CSV header.
pub const FIELDS: [&str; 12] = [
    "claim_id",
    "insured_id",
    "hospital_code",
    "department_code",
    "doctor_id",
    "service_date",
    "service_code",
    "service_kind",
    "quantity",
    "amount_fen",
    "drug_code",
    "dose",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Spec {
    Column(String),
    Derived {
        column: String,
        #[serde(default)]
        yuan: bool,
        #[serde(default)]
        date: bool,
        #[serde(default)]
        integer: bool,
        #[serde(default)]
        lookup: bool,
    },
    Constant {
        value: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// A name for reports.
    pub name: String,
    pub fields: BTreeMap<String, Spec>,
    /// Catalogue code → treatment kind, for `lookup` specs.
    #[serde(default)]
    pub service_kinds: BTreeMap<String, String>,
}

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("mapping file: {0}")]
    Mapping(String),
    #[error("CSV header: {0}")]
    Header(String),
    #[error("reading the file: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub why: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.why
        )
    }
}

#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub rows: u64,
    pub inserted: u64,
    pub already_present: u64,
    pub errors: Vec<RowError>,
    /// Errors beyond the first 1,000 are counted, not kept.
    pub errors_not_kept: u64,
}

impl Mapping {
    /// The DESIGN.md layout: every field is the column of the same name.
    pub fn standard() -> Mapping {
        Mapping {
            name: "standard".into(),
            fields: FIELDS
                .iter()
                .map(|f| (f.to_string(), Spec::Column(f.to_string())))
                .collect(),
            service_kinds: BTreeMap::new(),
        }
    }

    /// The shipped mapping for the national platform's fee-detail fields
    /// (`server/mappings/national-fee-detail.toml`).
    pub fn national_fee_detail() -> Mapping {
        Mapping::parse(include_str!("../mappings/national-fee-detail.toml"))
            .expect("the shipped mapping parses")
    }

    pub fn parse(text: &str) -> Result<Mapping, ImportError> {
        let m: Mapping = toml::from_str(text).map_err(|e| ImportError::Mapping(e.to_string()))?;
        for f in m.fields.keys() {
            if !FIELDS.contains(&f.as_str()) {
                return Err(ImportError::Mapping(format!("unknown claim field `{f}`")));
            }
        }
        for f in &FIELDS[..10] {
            if !m.fields.contains_key(*f) {
                return Err(ImportError::Mapping(format!("field `{f}` is not mapped")));
            }
        }
        for (code, kind) in &m.service_kinds {
            if TreatmentKind::from_code(kind).is_none() {
                return Err(ImportError::Mapping(format!(
                    "service kind `{kind}` for `{code}` is not a treatment kind"
                )));
            }
        }
        Ok(m)
    }
}

/// A mapping resolved against a file's header.
struct Plan {
    fields: Vec<(usize, Resolved)>,
}

enum Part {
    Literal(String),
    Column(usize),
}

enum Resolved {
    Absent,
    Template(Vec<Part>, String),
    Cell {
        index: usize,
        name: String,
        how: How,
    },
    Constant(String),
}

#[derive(Clone, Copy)]
enum How {
    Plain,
    Yuan,
    Date,
    Integer,
    Lookup,
}

fn resolve(mapping: &Mapping, header: &csv::StringRecord) -> Result<Plan, ImportError> {
    let index = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            ImportError::Header(format!(
                "the file has no column `{name}` (mapping `{}`)",
                mapping.name
            ))
        })
    };
    let mut fields = Vec::new();
    for (i, field) in FIELDS.iter().enumerate() {
        let resolved = match mapping.fields.get(*field) {
            None => Resolved::Absent,
            Some(Spec::Constant { value }) => Resolved::Constant(value.clone()),
            Some(Spec::Column(text)) if text.contains('{') => {
                let mut parts = Vec::new();
                let mut rest = text.as_str();
                while let Some(open) = rest.find('{') {
                    if open > 0 {
                        parts.push(Part::Literal(rest[..open].to_owned()));
                    }
                    let close = rest[open..].find('}').ok_or_else(|| {
                        ImportError::Mapping(format!("unclosed `{{` in `{text}`"))
                    })?;
                    parts.push(Part::Column(index(&rest[open + 1..open + close])?));
                    rest = &rest[open + close + 1..];
                }
                if !rest.is_empty() {
                    parts.push(Part::Literal(rest.to_owned()));
                }
                Resolved::Template(parts, text.clone())
            }
            Some(Spec::Column(name)) => Resolved::Cell {
                index: index(name)?,
                name: name.clone(),
                how: How::Plain,
            },
            Some(Spec::Derived {
                column,
                yuan,
                date,
                integer,
                lookup,
            }) => Resolved::Cell {
                index: index(column)?,
                name: column.clone(),
                how: match (yuan, date, integer, lookup) {
                    (true, _, _, _) => How::Yuan,
                    (_, true, _, _) => How::Date,
                    (_, _, true, _) => How::Integer,
                    (_, _, _, true) => How::Lookup,
                    _ => How::Plain,
                },
            },
        };
        fields.push((i, resolved));
    }
    Ok(Plan { fields })
}

fn convert(how: How, cell: &str, mapping: &Mapping) -> Result<String, String> {
    let cell = cell.trim();
    match how {
        How::Plain => Ok(cell.to_owned()),
        How::Yuan => parse_fixed_point(cell, 2)
            .map(|fen| fen.to_string())
            .ok_or_else(|| format!("`{cell}` is not an amount in yuan with at most two decimals")),
        How::Date => Ok(cell.split([' ', 'T']).next().unwrap_or("").to_owned()),
        How::Integer => {
            let (whole, frac) = cell.split_once('.').unwrap_or((cell, ""));
            if frac.bytes().all(|b| b == b'0') {
                Ok(whole.to_owned())
            } else {
                Err(format!("`{cell}` is not a whole number"))
            }
        }
        How::Lookup => mapping
            .service_kinds
            .get(cell)
            .cloned()
            .ok_or_else(|| format!("code `{cell}` is not in the mapping's service_kinds table")),
    }
}

/// The column name a field's error names.
fn column_of(plan: &Plan, i: usize) -> String {
    match &plan.fields[i].1 {
        Resolved::Template(_, text) => text.clone(),
        Resolved::Cell { name, .. } => name.clone(),
        Resolved::Absent | Resolved::Constant(_) => FIELDS[i].to_owned(),
    }
}

/// Turns one CSV row into a claim line, or says precisely what is wrong.
fn line_from(
    row: &csv::StringRecord,
    plan: &Plan,
    mapping: &Mapping,
    line: u64,
) -> Result<ClaimLine, RowError> {
    let mut values: [std::borrow::Cow<'_, str>; 12] = Default::default();
    for (i, resolved) in &plan.fields {
        values[*i] = match resolved {
            Resolved::Absent => std::borrow::Cow::Borrowed(""),
            Resolved::Constant(v) => std::borrow::Cow::Borrowed(v.as_str()),
            Resolved::Template(parts, _) => std::borrow::Cow::Owned(
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Literal(s) => s.as_str(),
                        Part::Column(c) => row.get(*c).unwrap_or("").trim(),
                    })
                    .collect(),
            ),
            Resolved::Cell {
                index,
                how: How::Plain,
                ..
            } => std::borrow::Cow::Borrowed(row.get(*index).unwrap_or("").trim()),
            Resolved::Cell { index, name, how } => {
                let cell = row.get(*index).unwrap_or("");
                std::borrow::Cow::Owned(convert(*how, cell, mapping).map_err(|why| RowError {
                    line,
                    column: name.clone(),
                    why,
                })?)
            }
        };
    }
    let err = |i: usize, why: String| RowError {
        line,
        column: column_of(plan, i),
        why,
    };
    let required = |i: usize| -> Result<Code, RowError> {
        if values[i].is_empty() {
            Err(err(i, "is empty".into()))
        } else {
            Ok(Code::from(&*values[i]))
        }
    };
    if values[5].is_empty() {
        return Err(err(5, "is empty".into()));
    }
    let service_date: Date = values[5]
        .parse()
        .map_err(|_| err(5, format!("`{}` is not a date YYYY-MM-DD", values[5])))?;
    if values[7].is_empty() {
        return Err(err(7, "is empty".into()));
    }
    let service_kind = TreatmentKind::from_code(&values[7]).ok_or_else(|| {
        err(
            7,
            format!(
                "`{}` is not one of HD, HDF, HF, HP, PD, CHEMO, RADIO, ANTIREJECT",
                values[7]
            ),
        )
    })?;
    if values[8].is_empty() {
        return Err(err(8, "is empty".into()));
    }
    let quantity: u32 = values[8]
        .parse()
        .map_err(|_| err(8, format!("`{}` is not a whole number", values[8])))?;
    if values[9].is_empty() {
        return Err(err(9, "is empty".into()));
    }
    let amount_fen: u64 = values[9].parse().map_err(|_| {
        err(
            9,
            format!("`{}` is not an amount in fen (a whole number)", values[9]),
        )
    })?;
    let drug_code = (!values[10].is_empty()).then(|| Code::from(&*values[10]));
    let dose = if values[11].is_empty() {
        None
    } else {
        Some(Dose::parse_text(&values[11]).map_err(|e| err(11, e.to_string()))?)
    };
    let claim = ClaimLine {
        claim_id: required(0)?,
        insured_id: required(1)?,
        hospital_code: required(2)?,
        department_code: required(3)?,
        doctor_id: required(4)?,
        service_date,
        service_code: required(6)?,
        service_kind,
        quantity,
        amount_fen,
        drug_code,
        dose,
    };
    claim.validate().map_err(|e| {
        let i = FIELDS.iter().position(|f| *f == e.field).unwrap_or(0);
        err(i, e.reason.to_owned())
    })?;
    Ok(claim)
}

/// Imports claims from `reader`, calling `progress(bytes_read_so_far)` now
/// and then.
///
/// Two stages run at once: this thread reads and checks rows, a second
/// thread writes each finished batch, so parsing and the database overlap
/// (memory stays bounded: one batch being parsed, one waiting, one being
/// written).
pub fn import(
    store: &dyn Store,
    reader: impl Read + Send,
    mapping: &Mapping,
    source: &str,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    // One transaction per batch: bigger batches write each index page
    // fewer times (SQLite rewrites every index page a transaction touched).
    const BATCH: usize = 50_000;
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    let plan = resolve(mapping, &header)?;
    let mut report = ImportReport::default();
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<Vec<ClaimLine>>(1);
    let (to_reader, recycled) = std::sync::mpsc::channel::<Vec<ClaimLine>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(u64, u64), StoreError> {
            let (mut inserted, mut present) = (0u64, 0u64);
            for mut batch in batches {
                let n = store.insert_claims(&batch, source)?;
                inserted += n;
                present += batch.len() as u64 - n;
                batch.clear();
                let _ = to_reader.send(batch);
            }
            Ok((inserted, present))
        });
        let mut batch = Vec::with_capacity(BATCH);
        let mut record = csv::StringRecord::new();
        let mut failed: Option<ImportError> = None;
        loop {
            match csv.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        failed = Some(ImportError::Io(e.to_string()));
                        break;
                    }
                    report.rows += 1;
                    keep_error(
                        &mut report,
                        RowError {
                            line,
                            column: "-".into(),
                            why: e.to_string(),
                        },
                    );
                    continue;
                }
            }
            report.rows += 1;
            let line = record.position().map_or(0, |p| p.line());
            match line_from(&record, &plan, mapping, line) {
                Ok(claim) => batch.push(claim),
                Err(e) => keep_error(&mut report, e),
            }
            if batch.len() == BATCH {
                let next = recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                if to_writer.send(std::mem::replace(&mut batch, next)).is_err() {
                    // The writer stopped on a storage error; it says why below.
                    break;
                }
                progress(record.position().map_or(0, |p| p.byte()));
            }
        }
        if failed.is_none() && !batch.is_empty() {
            let _ = to_writer.send(batch);
        }
        drop(to_writer);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the claims writer thread panicked")));
        match (failed, written) {
            (_, Err(e)) => Err(ImportError::Store(e)),
            (Some(e), Ok(_)) => Err(e),
            (None, Ok((inserted, present))) => {
                report.inserted = inserted;
                report.already_present = present;
                Ok(report)
            }
        }
    })
}

fn keep_error(report: &mut ImportReport, e: RowError) {
    if report.errors.len() < 1000 {
        report.errors.push(e);
    } else {
        report.errors_not_kept += 1;
    }
}
