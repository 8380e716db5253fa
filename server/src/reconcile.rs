//! Reconciliation over the store: load a period (accepted session records
//! with their receipt times, claim lines, 五定 plans, the ingest's alarms as
//! integrity events), run the rule engine (`wuding_rules::reconcile`) and
//! upsert the findings by their stable id.
//!
//! Incremental by construction: a run recomputes the period from what is
//! stored now. The same data gives the same findings (same ids, nothing
//! new); new records or claims change a finding in place (same id, new
//! evidence, `last_seen_ms` moves) or add new ones. A finding keeps its
//! `status` (the auditor's workflow) and `first_seen_ms` across runs. A
//! finding a later run no longer produces (a late record now covers the
//! claim) stays stored with its old `last_seen_ms`.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use thiserror::Error;
use wuding_protocol::{ClaimLine, Code, Date, RecordId, TreatmentPlan};
use wuding_rules::fx::{FxMap, FxSet, map_with};
use wuding_rules::whatif::{self, WhatIfRow};
use wuding_rules::{
    AttestedSession, Dataset, Finding, IntegrityEvent, IntegrityKind, Numbered, NumberedRow,
    Period, RuleId, Ruleset,
};

use crate::store::{
    Alarm, FindingFilter, FindingRow, HospitalMonth, PatientMonth, PatientRange, SeenFinding,
    Store, StoreError, UpsertCounts, digest_of_finding,
};

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bad date, period, rule, parameter or rules file.
    #[error("{0}")]
    Invalid(String),
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<Date, ReconcileError> {
    let d: Date = text
        .parse()
        .map_err(|_| ReconcileError::Invalid(format!("`{text}` is not a date (YYYY-MM-DD)")))?;
    if d.to_string() != text {
        return Err(ReconcileError::Invalid(format!(
            "`{text}` is not a date (YYYY-MM-DD)"
        )));
    }
    Ok(d)
}

/// The period `from..=to` (local dates).
pub fn period(from: &str, to: &str) -> Result<Period, ReconcileError> {
    let (from, to) = (parse_date(from)?, parse_date(to)?);
    if to < from {
        return Err(ReconcileError::Invalid(format!(
            "the period ends ({to}) before it starts ({from})"
        )));
    }
    Ok(Period { from, to })
}

/// The default rules, or a TOML rules file (`docs/rules.md`).
pub fn load_rules(path: Option<&std::path::Path>) -> Result<Ruleset, ReconcileError> {
    match path {
        None => Ok(Ruleset::default_rules()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ReconcileError::Invalid(format!("reading {}: {e}", p.display())))?;
            Ruleset::parse(&text)
                .map_err(|e| ReconcileError::Invalid(format!("{}: {e}", p.display())))
        }
    }
}

/// Everything one run looks at, loaded from the store.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub period: Period,
    pub sessions: Vec<AttestedSession>,
    pub claims: Vec<ClaimLine>,
    pub plans: Vec<TreatmentPlan>,
    pub integrity: Vec<IntegrityEvent>,
}

impl Loaded {
    pub fn dataset(&self) -> Dataset<'_> {
        Dataset {
            period: self.period,
            sessions: &self.sessions,
            claims: &self.claims,
            plans: &self.plans,
            integrity: &self.integrity,
        }
    }
}

/// Maps an ingest alarm to the engine's integrity event (`None` for an
/// unknown code).
pub fn integrity_event(a: &Alarm) -> Option<IntegrityEvent> {
    let kind = IntegrityKind::from_code(&a.kind)?;
    let mut record_ids: Vec<RecordId> = a.record_id.into_iter().collect();
    if kind == IntegrityKind::Fork {
        record_ids.extend(a.other_record_id);
    }
    Some(IntegrityEvent {
        kind,
        terminal_id: a.terminal_id.clone(),
        hospital_code: a.hospital_code.clone(),
        seq: a.seq,
        record_ids,
        missing: a.missing,
        measured_ms: a.measured_ms,
        at_ms: a.at_ms,
        date: a.service_date.as_deref().and_then(|d| d.parse().ok()),
    })
}

/// Patients per part of a run: about 150,000 session records and as many
/// claim lines of a dialysis-heavy month; memory holds two parts at a time
/// (about 0.9 GB for a national month, 0.45 GB for a province). Measured
/// against 25,000 and 8,000 once a part's commit wrote only its own
/// findings' sightings (docs/rules.md, "Sightings by patient"): a national
/// re-run 0.5 s shorter with a quarter less memory (fewer fresh pages to
/// zero), a province 0.75-0.8 s against 0.85-1.1 s. A period with fewer
/// patients is one part.
pub const PATIENTS_PER_PART: usize = 12_500;

/// What every part of a run shares: the period's plans (sorted by patient)
/// and its integrity events, each with the patient of its first accepted
/// record (`None`: no accepted record). An event goes to that patient's
/// part; ingest accepts one record per chain position, so an event's
/// accepted records never belong to patients of two parts.
pub struct Shared {
    pub period: Period,
    pub plans: Vec<TreatmentPlan>,
    pub events: Vec<(IntegrityEvent, Option<String>)>,
}

impl Shared {
    /// Reads the period's plans and integrity events. The two are read side
    /// by side (the integrity events look up each event's records), and the
    /// plans' bodies are parsed on two threads: a national month has
    /// hundreds of thousands of plans, and nothing else runs before its
    /// first part can be loaded.
    pub fn read(store: &dyn Store, period: Period) -> Result<Shared, ReconcileError> {
        let (plans, events) = std::thread::scope(|scope| {
            let events = scope.spawn(|| integrity_events(store, period));
            let plans = plans_of_period(store, period);
            let events = events
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (plans, events)
        });
        Ok(Shared {
            period,
            plans: plans?,
            events: events?,
        })
    }

    /// The plans of a range of patients: one slice, the plans being sorted
    /// by patient.
    pub fn plans_of(&self, range: &PatientRange) -> &[TreatmentPlan] {
        let first_at_or_after = |id: &Option<String>, default: usize| match id {
            Some(id) => self.plans.partition_point(|p| p.insured_id < *id),
            None => default,
        };
        let start = first_at_or_after(&range.from, 0);
        let end = first_at_or_after(&range.to, self.plans.len());
        &self.plans[start..end.max(start)]
    }

    /// Splits the patients into ranges of about `per_part` patients each, by
    /// the insured ids of the plans (patients without a plan fall in
    /// whichever range their id does).
    pub fn ranges(&self, per_part: usize) -> Vec<PatientRange> {
        let mut ids: Vec<&str> = self.plans.iter().map(|p| p.insured_id.as_str()).collect();
        ids.dedup();
        let mut bounds: Vec<String> = ids
            .iter()
            .skip(per_part.max(1))
            .step_by(per_part.max(1))
            .map(|id| (*id).to_owned())
            .collect();
        bounds.dedup();
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut from = None;
        for b in bounds {
            ranges.push(PatientRange {
                from: from.take(),
                to: Some(b.clone()),
            });
            from = Some(b);
        }
        ranges.push(PatientRange { from, to: None });
        ranges
    }
}

/// The plans valid on some day of `period`, sorted by patient (a
/// patient's plans in their stored order).
fn plans_of_period(
    store: &dyn Store,
    period: Period,
) -> Result<Vec<TreatmentPlan>, ReconcileError> {
    let bodies = store.roster_bodies("plan")?;
    let parse = |bodies: &[String]| -> Result<Vec<TreatmentPlan>, StoreError> {
        let mut plans = Vec::with_capacity(bodies.len());
        for body in bodies {
            let plan: TreatmentPlan =
                serde_json::from_str(body).map_err(|_| StoreError::Corrupt("stored plan"))?;
            if plan.valid_from <= period.to && plan.valid_to >= period.from {
                plans.push(plan);
            }
        }
        Ok(plans)
    };
    let (first, second) = bodies.split_at(bodies.len() / 2);
    let (plans, rest) = std::thread::scope(|scope| {
        let rest = scope.spawn(|| parse(second));
        let plans = parse(first);
        let rest = rest.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (plans, rest)
    });
    let mut plans = plans?;
    plans.extend(rest?);
    // Stable: a patient's plans keep their stored order.
    plans.sort_by(|a, b| a.insured_id.cmp(&b.insured_id));
    Ok(plans)
}

/// The integrity events of `period`, each with the patient of its first
/// accepted session record of the period (`None`: no such record). A gap
/// whose held records have all since entered the chain was filled and is
/// left out.
fn integrity_events(
    store: &dyn Store,
    period: Period,
) -> Result<Vec<(IntegrityEvent, Option<String>)>, ReconcileError> {
    let (from, to) = (period.from.to_string(), period.to.to_string());
    let mut events = Vec::new();
    for event in store
        .alarms_between(&from, &to)?
        .iter()
        .filter_map(integrity_event)
    {
        let mut accepted = 0;
        let mut patient = None;
        for id in &event.record_ids {
            if let Some((row, _)) = store.record(id)?
                && row.record_type == "session"
                && row.service_date >= from
                && row.service_date <= to
            {
                accepted += 1;
                patient.get_or_insert(row.insured_id);
            }
        }
        if event.kind == IntegrityKind::Gap && accepted == event.record_ids.len() {
            continue;
        }
        events.push((event, patient));
    }
    Ok(events)
}

/// Loads one range of patients of a period: their sessions, claims and
/// plans; `first` (the first part of a run)
/// also takes the integrity events about no accepted record.
pub fn load_part(
    store: &dyn Store,
    shared: &Shared,
    range: &PatientRange,
    first: bool,
    step: &mut dyn FnMut(&str),
) -> Result<Loaded, ReconcileError> {
    let period = shared.period;
    let (from, to) = (period.from.to_string(), period.to.to_string());
    // Sessions and claim lines are read side by side.
    let (sessions, claims) = std::thread::scope(|scope| {
        let sessions = scope.spawn(|| store.attested_sessions(&from, &to, range));
        let claims = store.claims_of_patients(&from, &to, range);
        let sessions = sessions
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (sessions, claims)
    });
    let (sessions, claims) = (sessions?, claims?);
    step("sessions and claims");
    let plans = shared.plans_of(range).to_vec();
    let integrity = shared
        .events
        .iter()
        .filter(|(_, patient)| match patient {
            Some(p) => range.contains(p),
            None => first,
        })
        .map(|(e, _)| e.clone())
        .collect();
    step("plans and alarms");
    Ok(Loaded {
        period,
        sessions,
        claims,
        plans,
        integrity,
    })
}

/// Loads a whole period as one part, whatever its size (tests compare runs
/// in parts against it).
pub fn load(
    store: &dyn Store,
    period: Period,
    step: &mut dyn FnMut(&str),
) -> Result<Loaded, ReconcileError> {
    let shared = Shared::read(store, period)?;
    load_part(store, &shared, &PatientRange::all(), true, step)
}

/// A finding as stored.
pub fn finding_row(f: &Finding) -> FindingRow {
    FindingRow {
        id: f.id.to_string(),
        rule_id: f.rule_id.clone(),
        ruleset_version: f.ruleset_version.clone(),
        severity: f.severity.code().to_owned(),
        service_date: f.date.map(|d| d.to_string()),
        subject_type: f.subject.kind().to_owned(),
        subject_id: f.subject.id().to_owned(),
        hospital_code: f.hospital_code.clone(),
        insured_id: f.insured_id.clone(),
        claim_ids: f.claim_ids.clone(),
        record_ids: f.record_ids.iter().map(RecordId::to_hex).collect(),
        amount_fen: f.amount_fen,
        params: f.params.clone(),
        explanation_zh: f.explanation.zh.clone(),
        explanation_en: f.explanation.en.clone(),
        status: "open".into(),
        first_seen_ms: 0,
        last_seen_ms: 0,
    }
}

/// Findings and money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub findings: u64,
    pub amount_fen: u64,
}

impl Tally {
    fn add(&mut self, amount_fen: u64) {
        self.findings += 1;
        self.amount_fen = self.amount_fen.saturating_add(amount_fen);
    }
}

/// What one run did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub from: String,
    pub to: String,
    pub ruleset_version: String,
    pub sessions: usize,
    pub claims: usize,
    pub plans: usize,
    pub integrity_events: usize,
    /// All findings of the run, and the money at stake.
    pub total: Tally,
    pub by_severity: BTreeMap<String, Tally>,
    pub by_rule: BTreeMap<String, Tally>,
    /// What the upsert did: new, updated, unchanged.
    pub stored: UpsertCounts,
    /// Ranges of patients the period was loaded in, one at a time.
    pub parts: usize,
    /// Time spent loading, reconciling and storing. From the second part
    /// on, a part loads while the one before is stored, so on several parts
    /// the three add up to more than the run's wall time.
    pub load_ms: u64,
    pub reconcile_ms: u64,
    pub store_ms: u64,
}

impl Summary {
    /// Counts findings into the totals.
    fn add_findings(&mut self, findings: &[Finding]) {
        for f in findings {
            self.total.add(f.amount_fen);
            self.by_severity
                .entry(f.severity.code().to_owned())
                .or_default()
                .add(f.amount_fen);
            self.by_rule
                .entry(f.rule_id.clone())
                .or_default()
                .add(f.amount_fen);
        }
    }

    /// A short human-readable report.
    pub fn render(&self) -> String {
        let yuan = |fen: u64| format!("{}.{:02}", fen / 100, fen % 100);
        let mut out = format!(
            "period {} to {} (rules version {}): {} sessions, {} claim lines, {} plans, {} integrity events\n",
            self.from,
            self.to,
            self.ruleset_version,
            self.sessions,
            self.claims,
            self.plans,
            self.integrity_events
        );
        out.push_str(&format!(
            "findings: {} ({} new, {} updated, {} unchanged), money at stake {} yuan\n",
            self.total.findings,
            self.stored.new,
            self.stored.updated,
            self.stored.unchanged,
            yuan(self.total.amount_fen)
        ));
        for sev in ["red", "yellow", "green"] {
            let t = self.by_severity.get(sev).copied().unwrap_or_default();
            out.push_str(&format!(
                "  {sev:<7} {:>7}  {:>14} yuan\n",
                t.findings,
                yuan(t.amount_fen)
            ));
        }
        out.push_str("by rule:\n");
        for (rule, t) in &self.by_rule {
            out.push_str(&format!(
                "  {rule:<26} {:>7}  {:>14} yuan\n",
                t.findings,
                yuan(t.amount_fen)
            ));
        }
        out.push_str(&format!(
            "time: load {} ms, reconcile {} ms, store {} ms ({} part{})\n",
            self.load_ms,
            self.reconcile_ms,
            self.store_ms,
            self.parts,
            if self.parts == 1 { "" } else { "s" }
        ));
        out
    }
}

fn progress_bar(show: bool, steps: u64) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    Some(shown(
        indicatif::ProgressBar::new(steps),
        "{bar:30} {pos}/{len} {msg} {elapsed}",
    ))
}

/// A progress bar or spinner in `template`'s style, redrawn five times a
/// second.
fn shown(bar: indicatif::ProgressBar, template: &str) -> indicatif::ProgressBar {
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Loads `period`, reconciles it under `rules`, upserts the findings (now =
/// `now_ms`) and returns the summary and the findings. `progress` shows a
/// progress bar on stderr (the caller checks that stderr is a terminal).
pub fn run(
    store: &dyn Store,
    rules: &Ruleset,
    period: Period,
    now_ms: i64,
    progress: bool,
) -> Result<(Summary, Vec<Finding>), ReconcileError> {
    let mut all = Vec::new();
    let summary = run_in_parts(
        store,
        rules,
        period,
        now_ms,
        progress,
        PATIENTS_PER_PART,
        &mut |found| all.extend_from_slice(found),
    )?;
    wuding_rules::sort_findings(&mut all);
    Ok((summary, all))
}

/// [`run`] without keeping the findings (they are stored): what the
/// `reconcile` command, the admin API and the automatic runs use, so a
/// national month never holds all its findings at once.
pub fn run_stored(
    store: &dyn Store,
    rules: &Ruleset,
    period: Period,
    now_ms: i64,
    progress: bool,
) -> Result<Summary, ReconcileError> {
    run_in_parts(
        store,
        rules,
        period,
        now_ms,
        progress,
        PATIENTS_PER_PART,
        &mut |_| {},
    )
}

/// [`run`], one range of about `per_part` patients at a time (see
/// [`wuding_rules::reconcile_part`]): each part is loaded, reconciled and
/// its findings stored before the next is loaded, so memory holds one part;
/// the rules that look across patients (fallback rates per terminal and
/// nurse, peer statistics) run last over the parts' merged tallies. The
/// findings are those of a single run over the whole period, whatever
/// `per_part`. `found` sees each part's findings as they are stored.
pub fn run_in_parts(
    store: &dyn Store,
    rules: &Ruleset,
    period: Period,
    now_ms: i64,
    progress: bool,
    per_part: usize,
    found: &mut dyn FnMut(&[Finding]),
) -> Result<Summary, ReconcileError> {
    let _kept = crate::allocator::FreedMemoryKept::during_run();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut load_ms, mut reconcile_ms, mut store_ms) = (0u64, 0u64, 0u64);
    let ms = |t: Instant| t.elapsed().as_millis() as u64;
    let t = Instant::now();
    // The run's timeline, for whoever measures it
    // (`RUST_LOG=wuding_server::reconcile=debug`): steps and times only.
    let started = t;
    let mark = |what: &str| {
        tracing::debug!(at_ms = started.elapsed().as_millis() as u64, "{what}");
    };
    // Session facts not yet caught up with the log (after an import, or
    // every record after a migration that changed their layout: a national
    // month's millions take a minute or more) are written first, in sight.
    let spinner = progress.then(|| {
        let s = shown(
            indicatif::ProgressBar::new_spinner(),
            "{spinner} {msg} {elapsed}",
        );
        s.set_message("bringing the session facts up to the log");
        s
    });
    store.catch_up_sessions()?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let shared = Shared::read(store, period)?;
    let ranges = shared.ranges(per_part);
    load_ms += ms(t);
    mark("plans and integrity events read");
    let bar = progress_bar(progress, ranges.len() as u64 * 3 + 1);
    let parts = ranges.len();
    let step = |what: &str| {
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(what.to_owned());
        }
    };
    let mut summary = Summary {
        from: period.from.to_string(),
        to: period.to.to_string(),
        ruleset_version: rules.version.clone(),
        sessions: 0,
        claims: 0,
        plans: 0,
        integrity_events: 0,
        total: Tally::default(),
        by_severity: BTreeMap::new(),
        by_rule: BTreeMap::new(),
        stored: UpsertCounts::default(),
        parts,
        load_ms: 0,
        reconcile_ms: 0,
        store_ms: 0,
    };
    let key = patient_ref_key(store)?;
    let mut hospitals: BTreeMap<(String, String), HospitalMonth> = BTreeMap::new();
    let mut patients: Vec<PatientMonth> = Vec::new();
    let mut tallies = wuding_rules::CrossTallies::default();
    let (mut held, mut held_parts): (Vec<FindingRow>, usize) = (Vec::new(), 0);
    let mut store_part = |loaded: &Loaded,
                          numbered: &Numbered,
                          findings: &[Finding],
                          summary: &mut Summary,
                          confirm: bool|
     -> Result<(), ReconcileError> {
        // The dashboard's figures are counted on another core while the
        // writer stores the findings: neither needs the other.
        let (counts, (months, patient_rows)) = std::thread::scope(|scope| {
            let figures = scope.spawn(|| {
                let figures =
                    month_figures(loaded, numbered, findings, &|id| patient_ref(&key, id));
                mark("figures counted");
                figures
            });
            // A run that expects new findings (indexes deferred) holds
            // their rows and writes them a few parts at a time: each commit
            // rewrites the pages of the id-keyed indexes it touched, and a
            // part's new ids touch nearly every page of them.
            let counts = if confirm {
                store_findings(store, findings, now_ms, true, None)
            } else {
                held_parts += 1;
                store_findings(store, findings, now_ms, false, Some(&mut held)).and_then(
                    |mut counts| {
                        if held_parts >= HELD_PARTS {
                            add_counts(&mut counts, store.upsert_findings(&held, now_ms)?);
                            held.clear();
                            held_parts = 0;
                        }
                        Ok(counts)
                    },
                )
            };
            mark("findings stored");
            let figures = figures
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (counts, figures)
        });
        let counts = counts?;
        summary.stored.new += counts.new;
        summary.stored.updated += counts.updated;
        summary.stored.unchanged += counts.unchanged;
        for m in months {
            match hospitals.entry((m.month.clone(), m.hospital_code.clone())) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(m);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => add_figures(o.get_mut(), &m),
            }
        }
        patients.extend(patient_rows);
        summary.add_findings(findings);
        found(findings);
        Ok(())
    };
    // The next part loads while this one's findings are stored: loading
    // reads on connections of their own, storing writes on the store's, and
    // each is mostly one core's work. Memory holds two parts at that time.
    let load = |i: usize| -> Result<(Loaded, u64), ReconcileError> {
        let mut part_step = |what: &str| step(&format!("part {}/{parts}: loaded {what}", i + 1));
        let t = Instant::now();
        let loaded = load_part(store, &shared, &ranges[i], i == 0, &mut part_step)?;
        mark(&format!("part {} loaded", i + 1));
        Ok((loaded, ms(t)))
    };
    // A run that will add many findings to a small table stores them
    // without the table's secondary indexes and builds those once at the
    // end (decided when the table is empty, or from the first part's count
    // of new findings); the guard builds them however the run ends.
    let mut indexes = DeferredIndexes {
        store,
        deferred: store.defer_finding_indexes(0)?,
    };
    std::thread::scope(|scope| -> Result<(), ReconcileError> {
        let mut next = (parts > 0).then(|| load(0));
        for i in 0..parts {
            let Some(loaded) = next.take() else { break };
            let (loaded, took) = loaded?;
            load_ms += took;
            let t = Instant::now();
            let part = wuding_rules::reconcile_part(rules, &loaded.dataset(), threads);
            reconcile_ms += ms(t);
            mark(&format!("part {} reconciled", i + 1));
            let load = &load;
            let loading = (i + 1 < parts).then(|| scope.spawn(move || load(i + 1)));
            let t = Instant::now();
            summary.sessions += loaded.sessions.len();
            summary.claims += loaded.claims.len();
            summary.plans += loaded.plans.len();
            summary.integrity_events += loaded.integrity.len();
            let new_before = summary.stored.new;
            store_part(
                &loaded,
                &part.numbered,
                &part.findings,
                &mut summary,
                !indexes.deferred,
            )?;
            // A part that added nothing asks nothing (the store counts its
            // findings to decide: 10-20 ms a part of a national re-run).
            let new_here = summary.stored.new - new_before;
            if !indexes.deferred && i + 1 < parts && new_here > 0 {
                let expected = new_here * (parts - i - 1) as u64;
                indexes.deferred = store.defer_finding_indexes(expected)?;
            }
            tallies.merge(part.tallies);
            drop((loaded, part.findings, part.numbered));
            store_ms += ms(t);
            mark(&format!("part {} stored", i + 1));
            step(&format!("part {}/{parts}: stored", i + 1));
            next = loading.map(|l| l.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        Ok(())
    })?;
    let t = Instant::now();
    let cross = tallies.findings(rules, period);
    reconcile_ms += ms(t);
    let t = Instant::now();
    let nothing = Loaded {
        period,
        sessions: Vec::new(),
        claims: Vec::new(),
        plans: Vec::new(),
        integrity: Vec::new(),
    };
    store_part(
        &nothing,
        &Numbered::default(),
        &cross,
        &mut summary,
        !indexes.deferred,
    )?;
    if !held.is_empty() {
        let counts = store.upsert_findings(&held, now_ms)?;
        add_counts(&mut summary.stored, counts);
    }
    drop(held);
    if let (true, Some(b)) = (indexes.deferred, &bar) {
        b.set_message("building the findings' indexes");
    }
    indexes.build()?;
    mark("cross-patient findings stored");
    let (from_month, to_month) = (
        period.from.to_string()[..7].to_owned(),
        period.to.to_string()[..7].to_owned(),
    );
    let months: Vec<HospitalMonth> = hospitals.into_values().collect();

    patients.sort_by(|a, b| {
        (&a.figures.month, &a.figures.hospital_code, &a.insured_id).cmp(&(
            &b.figures.month,
            &b.figures.hospital_code,
            &b.insured_id,
        ))
    });
    store.put_run_figures(&from_month, &to_month, &months, &patients)?;
    mark("run figures stored");
    // The planner's statistics move when the findings do: a run that
    // found a tenth or more of its findings new or changed refreshes them
    // (a first run, and each day's run early in a month); one that found
    // nearly all of them as stored leaves them (they describe the same
    // rows). ANALYZE costs 0.1-0.2 s for a national month's findings.
    let changed = summary.stored.new + summary.stored.updated;
    if changed > 0 && changed * 10 >= changed + summary.stored.unchanged {
        store.refresh_statistics()?;
    }
    store_ms += ms(t);
    step("stored");
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    summary.load_ms = load_ms;
    summary.reconcile_ms = reconcile_ms;
    summary.store_ms = store_ms;
    Ok(summary)
}

/// Stores a part's findings in the order the store keeps their sightings
/// (month, patient, then id: the writer walks that table front to back and the
/// part's commit writes only its share of it). With `confirm` (a run that
/// expects most findings stored already) each is first offered by its
/// digest: those the store confirms unchanged are marked as seen and no
/// row is made of them; the rest (new, changed) are upserted as rows.
fn store_findings(
    store: &dyn Store,
    findings: &[Finding],
    now_ms: i64,
    confirm: bool,
    hold: Option<&mut Vec<FindingRow>>,
) -> Result<UpsertCounts, StoreError> {
    fn patient(f: &Finding) -> &str {
        f.insured_id.as_deref().unwrap_or("")
    }
    // `None` (undated) first, then months in `YYYY-MM` order.
    let month = |f: &Finding| f.date.map(|d| (d.year(), d.month()));
    let mut order: Vec<&Finding> = findings.iter().collect();
    order.sort_unstable_by(|a, b| {
        (month(a), patient(a), a.id.0).cmp(&(month(b), patient(b), b.id.0))
    });
    let mut counts = UpsertCounts::default();
    if confirm {
        let seen: Vec<SeenFinding<'_>> = order
            .iter()
            .map(|f| SeenFinding {
                id: f.id.to_string(),
                insured_id: patient(f),
                month: month(f).map_or_else(String::new, |(y, m)| format!("{y:04}-{m:02}")),
                digest: digest_of_finding(f),
            })
            .collect();
        let confirmed = store.confirm_unchanged(&seen, now_ms)?;
        if confirmed.len() != seen.len() {
            return Err(StoreError::Corrupt("an answer for each finding confirmed"));
        }
        let mut confirmed = confirmed.into_iter();
        order.retain(|_| !confirmed.next().unwrap_or(false));
        counts.unchanged = (seen.len() - order.len()) as u64;
    }
    match hold {
        Some(held) => held.extend(order.into_iter().map(finding_row)),
        None if !order.is_empty() => {
            let rows: Vec<FindingRow> = order.into_iter().map(finding_row).collect();
            add_counts(&mut counts, store.upsert_findings(&rows, now_ms)?);
        }
        None => {}
    }
    Ok(counts)
}

/// Parts whose new findings a run expecting new findings holds before it
/// writes them (see [`run_in_parts`]): about 60,000 findings and 70 MB of
/// rows for a dialysis month. A national first run: the parts' stores
/// summed 5.1 s against 8.1 s written part by part.
const HELD_PARTS: usize = 4;

fn add_counts(into: &mut UpsertCounts, more: UpsertCounts) {
    into.new += more.new;
    into.updated += more.updated;
    into.unchanged += more.unchanged;
}

/// The findings' indexes a run has deferred
/// ([`Store::defer_finding_indexes`]): built by [`DeferredIndexes::build`],
/// or when dropped (a run that fails), so a store is never left without
/// them by a run that ends.
struct DeferredIndexes<'a> {
    store: &'a dyn Store,
    deferred: bool,
}

impl DeferredIndexes<'_> {
    fn build(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.deferred) {
            self.store.build_finding_indexes()?;
        }
        Ok(())
    }
}

impl Drop for DeferredIndexes<'_> {
    fn drop(&mut self) {
        if self.deferred
            && let Err(e) = self.build()
        {
            tracing::warn!(error = %e, "building the findings' indexes after a failed run");
        }
    }
}

/// Adds `more`'s counters to `into` (parts have disjoint patients, so
/// patient counts add up too).
fn add_figures(into: &mut HospitalMonth, more: &HospitalMonth) {
    into.attested_sessions += more.attested_sessions;
    into.fallback_sessions += more.fallback_sessions;
    into.attested_patients += more.attested_patients;
    into.claimed_lines += more.claimed_lines;
    into.claimed_fen = into.claimed_fen.saturating_add(more.claimed_fen);
    into.claimed_patients += more.claimed_patients;
    into.phantom_claims += more.phantom_claims;
    into.phantom_fen = into.phantom_fen.saturating_add(more.phantom_fen);
    into.red += more.red;
    into.yellow += more.yellow;
    into.green += more.green;
    into.findings_fen = into.findings_fen.saturating_add(more.findings_fen);
}

/// The dashboard's figures of a reconciled period (or part of one), per
/// hospital and month and per patient, hospital and month (the
/// drill-down's patient level): attested sessions (and how many by
/// supervised fallback), claimed lines and money, distinct patients on each
/// side, phantom claims (the `phantom_session` findings) and the findings by
/// severity. Findings about no patient (terminals, peers) count at the
/// hospital level only. `patient_ref` names each patient opaquely
/// ([`patient_ref`]). Both levels in (month, hospital[, insured id]) order.
///
/// Counts the period's sessions and claim lines as the engine numbered
/// them (`numbered`, from reconciling `loaded`): a row is counted by its
/// patient's and hospital's numbers, not by hashing its ids again.
pub fn month_figures(
    loaded: &Loaded,
    numbered: &Numbered,
    findings: &[Finding],
    patient_ref: &dyn Fn(&str) -> String,
) -> (Vec<HospitalMonth>, Vec<PatientMonth>) {
    let month_of = |d: Date| (d.year(), d.month());
    // Counted per patient, hospital and month; the hospital level is the
    // sum of its patients plus the findings about no patient. A patient's
    // rows (nearly always one: one hospital, one month) are chained from
    // the patient's number.
    let (patients_n, hospitals_n) = numbered.counts();
    let mut patients = PatientSlots::new(patients_n, hospitals_n);
    for r in numbered.sessions() {
        let s = &loaded.sessions[r.row];
        let pm = patients.get(r, || (&s.facts.insured_id, &s.facts.hospital_code));
        pm.attested_patients = 1;
        pm.attested_sessions += 1;
        pm.fallback_sessions += u64::from(r.fallback);
    }
    // The claim lines phantom findings name (few), each with whether it
    // is its finding's first line (which carries the finding's money); a
    // claim line's id is looked up only if its patient has such a finding.
    let mut phantom: FxMap<&str, Vec<(bool, u64)>> = map_with(1024);
    let mut phantom_patients: FxSet<&str> = FxSet::default();
    for f in findings.iter().filter(|f| f.rule_id == "phantom_session") {
        phantom_patients.extend(f.insured_id.as_deref());
        for (i, id) in f.claim_ids.iter().enumerate() {
            phantom
                .entry(id.as_str())
                .or_default()
                .push((i == 0, f.amount_fen));
        }
    }
    // Per patient number: 0 not yet known, 1 named by a phantom finding, 2 not.
    let mut has_phantom = vec![0u8; patients_n];
    for r in numbered.claims() {
        let c = &loaded.claims[r.row];
        let pm = patients.get(r, || (&c.insured_id, &c.hospital_code));
        pm.claimed_patients = 1;
        pm.claimed_lines += 1;
        pm.claimed_fen = pm.claimed_fen.saturating_add(c.amount_fen);
        let known = &mut has_phantom[r.patient as usize];
        if *known == 0 {
            *known = if phantom_patients.contains(c.insured_id.as_str()) {
                1
            } else {
                2
            };
        }
        if *known == 1
            && let Some(named) = phantom.get(c.claim_id.as_str())
        {
            for &(first, amount_fen) in named {
                pm.phantom_claims += 1;
                if first {
                    pm.phantom_fen = pm.phantom_fen.saturating_add(amount_fen);
                }
            }
        }
    }
    let mut hospitals: FxMap<(Month, &str), HospitalMonth> = map_with(1024);
    let mut numbers = patients.numbers();
    for f in findings {
        let (Some(h), Some(d)) = (&f.hospital_code, f.date) else {
            continue;
        };
        let m = month_of(d);
        let e = match &f.insured_id {
            Some(p) => numbers.figures(&mut patients, p, m, h),
            None => hospitals.entry((m, h)).or_default(),
        };
        match f.severity.code() {
            "red" => e.red += 1,
            "yellow" => e.yellow += 1,
            _ => e.green += 1,
        }
        e.findings_fen = e.findings_fen.saturating_add(f.amount_fen);
    }
    for slot in &patients.slots {
        add_figures(
            hospitals
                .entry((slot.month, patients.hospital_names[slot.hospital as usize]))
                .or_default(),
            &slot.figures,
        );
    }
    let name = |(y, m): Month| format!("{y:04}-{m:02}");
    let mut hospital_rows: Vec<(Month, &str, HospitalMonth)> =
        hospitals.into_iter().map(|((m, h), f)| (m, h, f)).collect();
    hospital_rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let hospital_rows = hospital_rows
        .into_iter()
        .map(|(m, h, mut f)| {
            f.hospital_code = h.to_owned();
            f.month = name(m);
            f
        })
        .collect();
    let PatientSlots {
        slots,
        patient_names,
        hospital_names,
        ..
    } = patients;
    let mut patient_rows: Vec<((Month, &str, &str), HospitalMonth)> = slots
        .into_iter()
        .map(|s| {
            (
                (
                    s.month,
                    hospital_names[s.hospital as usize],
                    patient_names[s.patient as usize],
                ),
                s.figures,
            )
        })
        .collect();
    patient_rows.sort_by(|a, b| a.0.cmp(&b.0));
    let patient_rows = patient_rows
        .into_iter()
        .map(|((m, h, p), mut f)| {
            f.hospital_code = h.to_owned();
            f.month = name(m);
            PatientMonth {
                patient_ref: patient_ref(p),
                insured_id: p.to_owned(),
                figures: f,
            }
        })
        .collect();
    (hospital_rows, patient_rows)
}

/// A month's year and month.
type Month = (i16, i8);

const LAST: u32 = u32::MAX;

/// The figures of each (patient, month, hospital) of [`month_figures`], by
/// the engine's patient and hospital numbers: each patient's first row,
/// and each row pointing at the patient's next (`LAST`: the last).
struct PatientSlots<'a> {
    first: Vec<u32>,
    slots: Vec<PatientSlot>,
    /// By number, filled from the row that first brings each.
    patient_names: Vec<&'a str>,
    hospital_names: Vec<&'a str>,
}

struct PatientSlot {
    patient: u32,
    month: Month,
    hospital: u32,
    next: u32,
    figures: HospitalMonth,
}

impl<'a> PatientSlots<'a> {
    fn new(patients: usize, hospitals: usize) -> Self {
        PatientSlots {
            first: vec![LAST; patients],
            slots: Vec::with_capacity(patients),
            patient_names: vec![""; patients],
            hospital_names: vec![""; hospitals],
        }
    }

    /// The figures of `row`'s patient in its month at its hospital (zero at
    /// first); `names` gives the row's insured id and hospital code, read
    /// only when a patient or hospital is seen for the first time.
    fn get(
        &mut self,
        row: NumberedRow,
        names: impl FnOnce() -> (&'a Code, &'a Code),
    ) -> &mut HospitalMonth {
        let (p, h) = (row.patient as usize, row.hospital as usize);
        if self.patient_names[p].is_empty() || self.hospital_names[h].is_empty() {
            let (patient, hospital) = names();
            self.patient_names[p] = patient;
            self.hospital_names[h] = hospital;
        }
        self.slot(
            row.patient,
            (row.date.year(), row.date.month()),
            row.hospital,
        )
    }

    fn slot(&mut self, patient: u32, month: Month, hospital: u32) -> &mut HospitalMonth {
        let new = self.slots.len() as u32;
        let mut at = self.first[patient as usize];
        if at == LAST {
            self.first[patient as usize] = new;
            at = new;
        }
        loop {
            if at == new {
                self.slots.push(PatientSlot {
                    patient,
                    month,
                    hospital,
                    next: LAST,
                    figures: HospitalMonth::default(),
                });
                break;
            }
            let slot = &mut self.slots[at as usize];
            if slot.month == month && slot.hospital == hospital {
                break;
            }
            if slot.next == LAST {
                slot.next = new;
            }
            at = slot.next;
        }
        &mut self.slots[at as usize].figures
    }

    /// The numbers of the patients and hospitals named so far, by name.
    fn numbers(&self) -> Numbers<'a> {
        let index = |names: &[&'a str]| -> FxMap<&'a str, u32> {
            let mut by_name = map_with(names.len());
            for (i, n) in names.iter().enumerate() {
                by_name.insert(*n, i as u32);
            }
            by_name
        };
        Numbers {
            patients: index(&self.patient_names),
            hospitals: index(&self.hospital_names),
        }
    }
}

/// Patients and hospitals by name, for the findings, which name them: one
/// the engine did not number (a finding about a patient without a session
/// or claim line of the period) gets the next number.
struct Numbers<'a> {
    patients: FxMap<&'a str, u32>,
    hospitals: FxMap<&'a str, u32>,
}

impl<'a> Numbers<'a> {
    fn figures<'s>(
        &mut self,
        slots: &'s mut PatientSlots<'a>,
        patient: &'a str,
        month: Month,
        hospital: &'a str,
    ) -> &'s mut HospitalMonth {
        let p = *self.patients.entry(patient).or_insert_with(|| {
            slots.first.push(LAST);
            slots.patient_names.push(patient);
            (slots.patient_names.len() - 1) as u32
        });
        let h = *self.hospitals.entry(hospital).or_insert_with(|| {
            slots.hospital_names.push(hospital);
            (slots.hospital_names.len() - 1) as u32
        });
        slots.slot(p, month, h)
    }
}

/// The opaque reference of a patient: HMAC-SHA256 of the insured id under
/// a key kept in the database's settings (made on first use), 16 bytes in
/// hex. Insured ids have too little entropy for a plain hash.
pub fn patient_ref_key(store: &dyn Store) -> Result<Vec<u8>, ReconcileError> {
    const KEY: &str = "patient_ref_key";
    if let Some(k) = store.setting(KEY)?.and_then(|h| hex::decode(h).ok()) {
        return Ok(k);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source works");
    store.put_setting(KEY, &hex::encode(key))?;
    Ok(key.to_vec())
}

/// See [`patient_ref_key`].
pub fn patient_ref(key: &[u8], insured_id: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(insured_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Reads a candidate value as TOML (`0.3`, `10`, `{ HD = 200 }`, `["HD"]`),
/// or as a string when it is not TOML.
pub fn parse_value(text: &str) -> toml::Value {
    #[derive(serde::Deserialize)]
    struct V {
        v: toml::Value,
    }
    toml::from_str::<V>(&format!("v = {text}"))
        .map(|v| v.v)
        .unwrap_or_else(|_| toml::Value::String(text.to_owned()))
}

/// Threshold what-if over a stored period: `rule` alone, once per value of
/// `param` (nothing is stored), one range of patients at a time as a
/// reconciliation run.
pub fn whatif(
    store: &dyn Store,
    rules: &Ruleset,
    period: Period,
    rule: &str,
    param: &str,
    values: &[toml::Value],
) -> Result<Vec<WhatIfRow>, ReconcileError> {
    whatif_in_parts(store, rules, period, rule, param, values, PATIENTS_PER_PART)
}

/// [`whatif`] in parts of about `per_part` patients.
pub fn whatif_in_parts(
    store: &dyn Store,
    rules: &Ruleset,
    period: Period,
    rule: &str,
    param: &str,
    values: &[toml::Value],
    per_part: usize,
) -> Result<Vec<WhatIfRow>, ReconcileError> {
    let id = RuleId::from_code(rule)
        .ok_or_else(|| ReconcileError::Invalid(format!("`{rule}` is not a built-in rule")))?;
    let mut sweep = whatif::Sweep::new(rules, id, param, values)
        .map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    let _kept = crate::allocator::FreedMemoryKept::during_run();
    let shared = Shared::read(store, period)?;
    for (i, range) in shared.ranges(per_part).iter().enumerate() {
        let loaded = load_part(store, &shared, range, i == 0, &mut |_| {})?;
        sweep.add_part(&loaded.dataset());
    }
    Ok(sweep.finish(period))
}

/// The what-if rows as a table.
pub fn render_whatif(rule: &str, param: &str, rows: &[WhatIfRow]) -> String {
    let mut out = format!(
        "{:<24} {:>9} {:>16}  severity\n",
        format!("{rule}.{param}"),
        "findings",
        "yuan"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:>9} {:>16}  {}\n",
            r.value,
            r.findings,
            format!("{}.{:02}", r.amount_fen / 100, r.amount_fen % 100),
            r.severity.map_or("off", |s| s.code())
        ));
    }
    out
}

/// Output format of `findings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// The CSV columns of `findings --format csv`.
pub use crate::export::CSV_HEADER;

/// Writes findings: CSV (one row per finding, lists `;`-separated) or JSON
/// (`{"findings": [...]}`, every stored field).
pub fn write_findings(
    rows: &[FindingRow],
    format: Format,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "findings": rows }))?;
            writeln!(out)
        }
        Format::Csv => crate::export::findings_csv(rows, out),
    }
}

/// The filter of `findings` and `GET /api/v1/admin/findings`, checked.
pub fn filter(
    from: Option<&str>,
    to: Option<&str>,
    severity: Option<&str>,
    rule: Option<&str>,
) -> Result<FindingFilter, ReconcileError> {
    for d in [from, to].into_iter().flatten() {
        parse_date(d)?;
    }
    if let Some(s) = severity
        && wuding_rules::Severity::from_code(s).is_none()
    {
        return Err(ReconcileError::Invalid(format!(
            "`{s}` is not a severity (red, yellow, green)"
        )));
    }
    Ok(FindingFilter {
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        severity: severity.map(str::to_owned),
        rule_id: rule.map(str::to_owned),
    })
}

/// What the automatic reconciliation last saw: the transparency log's size
/// and the number of claim lines. Any growth means new evidence or new
/// claims, and a new run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermark {
    pub log_size: u64,
    pub claims: u64,
}

/// The months an automatic run covers at `now_ms`: the previous and the
/// current month in China Standard Time (claims for a month arrive in the
/// first days of the next).
pub fn recent_period(now_ms: i64) -> Result<Period, ReconcileError> {
    let today = crate::ingest::local_date(now_ms, 480);
    let d = jiff::civil::Date::strptime("%Y-%m-%d", &today)
        .map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    let first_this = d.first_of_month();
    let first_prev = first_this
        .checked_sub(jiff::Span::new().months(1))
        .map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    period(&first_prev.to_string(), &d.last_of_month().to_string())
}

/// One step of the automatic reconciliation: if records or claims arrived
/// since `mark`, reconciles [`recent_period`] and moves the mark; otherwise
/// does nothing. `log_size` is the transparency log's size now.
pub fn reconcile_if_changed(
    store: &dyn Store,
    rules: &Ruleset,
    log_size: u64,
    mark: &mut Watermark,
    now_ms: i64,
) -> Result<Option<Summary>, ReconcileError> {
    let seen = Watermark {
        log_size,
        claims: store.claim_count()?,
    };
    if seen == *mark {
        return Ok(None);
    }
    let summary = run_stored(store, rules, recent_period(now_ms)?, now_ms, false)?;
    *mark = seen;
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The dashboard's figures counted the plainest way: one ordered map
    /// keyed by (month, hospital, patient) text.
    fn figures_by_hand(
        loaded: &Loaded,
        findings: &[Finding],
    ) -> BTreeMap<(String, String, String), HospitalMonth> {
        let mut by: BTreeMap<(String, String, String), HospitalMonth> = BTreeMap::new();
        let key = |d: Date, h: &str, p: &str| (d.to_string()[..7].to_owned(), h.into(), p.into());
        for s in &loaded.sessions {
            let d = s.service_date().unwrap();
            let f = &s.facts;
            let m = by
                .entry(key(d, &f.hospital_code, &f.insured_id))
                .or_default();
            m.attested_patients = 1;
            m.attested_sessions += 1;
            m.fallback_sessions += u64::from(s.is_fallback());
        }
        for c in &loaded.claims {
            let m = by
                .entry(key(c.service_date, &c.hospital_code, &c.insured_id))
                .or_default();
            m.claimed_patients = 1;
            m.claimed_lines += 1;
            m.claimed_fen += c.amount_fen;
            for f in findings.iter().filter(|f| f.rule_id == "phantom_session") {
                for (i, id) in f.claim_ids.iter().enumerate() {
                    if id == c.claim_id.as_str() {
                        m.phantom_claims += 1;
                        m.phantom_fen += if i == 0 { f.amount_fen } else { 0 };
                    }
                }
            }
        }
        for f in findings {
            let (Some(h), Some(d), Some(p)) = (&f.hospital_code, f.date, &f.insured_id) else {
                continue;
            };
            let m = by.entry(key(d, h, p)).or_default();
            match f.severity.code() {
                "red" => m.red += 1,
                "yellow" => m.yellow += 1,
                _ => m.green += 1,
            }
            m.findings_fen += f.amount_fen;
        }
        by
    }

    /// A generated October of `patients` patients, stored with the import
    /// commands' code and loaded as a run loads it.
    fn generated_october(patients: u32, seed: u64) -> Loaded {
        use wuding_firmware_host::scenario::{ScenarioConfig, generate};
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ScenarioConfig::new(patients, 2026, 10);
        cfg.seed = seed;
        generate(&cfg).write_to(dir.path()).unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let log = crate::ingest::Log::new(wuding_protocol::TerminalSigner::from_seed(&[3; 32]));
        crate::month::load_dir(&store, &log, dir.path(), &|| 1_800_000_000_000).unwrap();
        let october = period("2026-10-01", "2026-10-31").unwrap();
        load(&store, october, &mut |_| {}).unwrap()
    }

    /// A finding's digest taken from the engine's finding is the digest
    /// of the row stored for it, for every rule's findings of a generated
    /// month and for findings without a date, patient or hospital: a run
    /// confirms unchanged findings by the one and stores the other.
    #[test]
    fn a_finding_digested_without_its_row_has_its_row_digest() {
        let loaded = generated_october(60, 5);
        let mut findings = wuding_rules::reconcile(&Ruleset::default_rules(), &loaded.dataset());
        let rules: std::collections::BTreeSet<&str> =
            findings.iter().map(|f| f.rule_id.as_str()).collect();
        assert!(rules.len() >= 8, "{rules:?}");
        assert!(
            findings
                .iter()
                .any(|f| !f.record_ids.is_empty() && f.params.len() > 1)
        );
        let mut bare = findings[0].clone();
        bare.date = None;
        bare.insured_id = None;
        bare.hospital_code = None;
        bare.claim_ids.clear();
        bare.params.clear();
        findings.push(bare);
        for f in &findings {
            assert_eq!(
                digest_of_finding(f),
                crate::store::finding_digest(&finding_row(f)),
                "{} {}",
                f.rule_id,
                f.id
            );
        }
        // Any field's change changes it.
        let mut changed = findings[0].clone();
        changed.amount_fen += 1;
        assert_ne!(digest_of_finding(&changed), digest_of_finding(&findings[0]));
    }

    /// Patients seen at several hospitals and in two months get a row for
    /// each (month, hospital), with the same counts as counting by hand;
    /// each hospital's row is the sum of its patients' and its findings
    /// about no patient.
    #[test]
    fn month_figures_count_each_patient_at_each_hospital_and_month() {
        let mut loaded = generated_october(60, 11);
        let findings = wuding_rules::reconcile(&Ruleset::default_rules(), &loaded.dataset());
        // Every third session at another hospital; every fifth a month
        // later; every fourth claim line at a third hospital.
        for (i, s) in loaded.sessions.iter_mut().enumerate() {
            if i % 3 == 0 {
                s.facts.hospital_code = "H-ELSEWHERE".into();
            }
            if i % 5 == 0 {
                s.facts.check_in.at_ms += 31 * 86_400_000;
            }
        }
        for (i, c) in loaded.claims.iter_mut().enumerate() {
            if i % 4 == 0 {
                c.hospital_code = "H-THIRD".into();
            }
        }
        // A finding about a patient (and hospital) with no row of the
        // period: counted at the patient level all the same.
        let mut findings = findings;
        let mut lone = findings
            .iter()
            .find(|f| f.insured_id.is_some() && f.date.is_some())
            .unwrap()
            .clone();
        lone.insured_id = Some("P-WITHOUT-ROWS".into());
        lone.hospital_code = Some("H-WITHOUT-ROWS".into());
        findings.push(lone);
        // The moved sessions reach into November and December: the
        // engine numbers the rows of the period it is given.
        loaded.period = period("2026-10-01", "2026-12-31").unwrap();
        let part = wuding_rules::reconcile_part(&Ruleset::default_rules(), &loaded.dataset(), 2);
        let want = figures_by_hand(&loaded, &findings);
        let (hospitals, patients) =
            month_figures(&loaded, &part.numbered, &findings, &|p| format!("ref-{p}"));

        let got: BTreeMap<(String, String, String), HospitalMonth> = patients
            .iter()
            .map(|p| {
                assert_eq!(p.patient_ref, format!("ref-{}", p.insured_id));
                let f = &p.figures;
                (
                    (
                        f.month.clone(),
                        f.hospital_code.clone(),
                        p.insured_id.clone(),
                    ),
                    HospitalMonth {
                        month: String::new(),
                        hospital_code: String::new(),
                        ..f.clone()
                    },
                )
            })
            .collect();
        assert_eq!(
            got.len(),
            patients.len(),
            "one row per (month, hospital, patient)"
        );
        assert_eq!(got, want);
        let months: std::collections::BTreeSet<&str> = got.keys().map(|k| k.0.as_str()).collect();
        assert!(months.len() >= 2, "{months:?}");
        let mut per_patient: BTreeMap<&str, usize> = BTreeMap::new();
        for k in got.keys() {
            *per_patient.entry(k.2.as_str()).or_default() += 1;
        }
        assert!(per_patient.values().any(|n| *n >= 4), "{per_patient:?}");
        // Rows in (month, hospital, patient) order.
        let keys: Vec<_> = patients
            .iter()
            .map(|p| (&p.figures.month, &p.figures.hospital_code, &p.insured_id))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));

        // The hospital level: the sum of its patients, and findings about
        // no patient.
        for h in &hospitals {
            let mut sum = HospitalMonth::default();
            for ((m, hc, _), f) in &want {
                if *m == h.month && *hc == h.hospital_code {
                    add_figures(&mut sum, f);
                }
            }
            for f in findings.iter().filter(|f| {
                f.insured_id.is_none()
                    && f.hospital_code.as_deref() == Some(h.hospital_code.as_str())
                    && f.date.is_some_and(|d| d.to_string()[..7] == h.month)
            }) {
                match f.severity.code() {
                    "red" => sum.red += 1,
                    "yellow" => sum.yellow += 1,
                    _ => sum.green += 1,
                }
                sum.findings_fen += f.amount_fen;
            }
            sum.month = h.month.clone();
            sum.hospital_code = h.hospital_code.clone();
            assert_eq!(*h, sum);
        }
        assert!(patients.iter().any(
            |p| p.insured_id == "P-WITHOUT-ROWS" && p.figures.hospital_code == "H-WITHOUT-ROWS"
        ));
        let all: u64 = hospitals.iter().map(|h| h.attested_sessions).sum();
        assert_eq!(all as usize, loaded.sessions.len());
    }
}
