//! Reconciliation: hash joins of claims against attested sessions over
//! in-memory data, then per-session, per-patient, per-subject and peer
//! rules. Deterministic: the same inputs give the same findings in the same
//! order, whatever the order of the inputs.

use std::collections::BTreeMap;

use wuding_protocol::{ClaimLine, Closure, Code, Date, RecordId, TreatmentKind, TreatmentPlan};

use crate::bedside::same_family;
use crate::config::{Composite, Condition, RuleId, Ruleset};
use crate::fivefixed::{PlanBreach, ServiceFacts, check_against_plans, money};
use crate::fx::{FxMap, FxSet, map_with};
use crate::model::{
    Dataset, Finding, FindingId, IntegrityEvent, IntegrityKind, Subject, Text, days_from_date,
    local_date,
};

const NONE: u32 = u32::MAX;

/// A kind's frequency family: centre dialysis variants count together.
fn family(kind: TreatmentKind) -> u8 {
    if kind.is_centre_dialysis() {
        0
    } else {
        1 + kind_index(kind) as u8
    }
}

/// A kind's position in [`TreatmentKind::ALL`].
fn kind_index(kind: TreatmentKind) -> usize {
    TreatmentKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
struct SessView {
    i: usize,
    patient: u32,
    hospital: u32,
    terminal: u32,
    nurse: u32,
    day: i64,
    date: Date,
    start_ms: i64,
    end_ms: Option<i64>,
    fallback: bool,
}

#[derive(Debug, Clone)]
struct ClaimView {
    i: usize,
    patient: u32,
    hospital: u32,
    day: i64,
    date: Date,
}

/// What every finding about one session record shares.
struct OnRecord<'r> {
    date: Date,
    rid: &'r str,
    hospital: &'r str,
    patient: &'r str,
    claim_ids: &'r [String],
    record_id: RecordId,
    amount: u64,
}

struct Engine<'a> {
    rs: &'a Ruleset,
    data: &'a Dataset<'a>,
    sv: Vec<SessView>,
    cv: Vec<ClaimView>,
    patient_ids: Vec<&'a str>,
    /// How many hospitals were numbered.
    hospitals: usize,
    /// For each session view, the claim view it was paired with.
    claim_of_session: Vec<u32>,
    /// Pairs (claim view, session view), sorted by claim.
    pairs: Vec<(u32, u32)>,
    /// Claim views whose amount exceeds their sessions' charges.
    above_charge: Vec<bool>,
    emit: Emit<'a>,
    sessions_by: ByPatient,
    claims_by: ByPatient,
}

/// View numbers grouped by patient: patient `p`'s are
/// `items[start[p]..start[p + 1]]`, in view order.
struct ByPatient {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl ByPatient {
    fn of_views(patients: usize, patient_of: impl Iterator<Item = u32> + Clone) -> ByPatient {
        let mut start = vec![0u32; patients + 1];
        for p in patient_of.clone() {
            start[p as usize + 1] += 1;
        }
        for i in 0..patients {
            start[i + 1] += start[i];
        }
        let mut items = vec![0u32; start[patients] as usize];
        let mut fill = start.clone();
        for (v, p) in patient_of.enumerate() {
            items[fill[p as usize] as usize] = v as u32;
            fill[p as usize] += 1;
        }
        ByPatient { start, items }
    }

    fn of(&self, p: usize) -> &[u32] {
        &self.items[self.start[p] as usize..self.start[p + 1] as usize]
    }
}

/// What pairing one share of the patients produced.
#[derive(Default)]
struct JoinPart {
    found: Vec<Finding>,
    /// (claim view, session view)
    pairs: Vec<(u32, u32)>,
    /// Claim views whose amount exceeds their sessions' charges.
    above: Vec<u32>,
}

/// A rule's position in [`RuleId::ALL`].
fn rule_index(rule: RuleId) -> usize {
    RuleId::ALL.iter().position(|r| *r == rule).unwrap_or(0)
}

/// Runs every enabled rule of `ruleset` over `data`, on up to two threads
/// (see [`reconcile_on`]).
pub fn reconcile(ruleset: &Ruleset, data: &Dataset<'_>) -> Vec<Finding> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    reconcile_on(ruleset, data, threads)
}

/// [`reconcile`] on at most `threads` threads (1: all on the caller's
/// thread). The findings are the same, in the same order, whatever the
/// number of threads: each phase writes its own list and the lists are
/// joined in phase order before the final sort. Beyond two threads nothing
/// is gained: the work is split in two halves of similar cost.
///
/// The whole data set is one part of a partitioned run ([`reconcile_part`]).
pub fn reconcile_on(ruleset: &Ruleset, data: &Dataset<'_>, threads: usize) -> Vec<Finding> {
    let part = reconcile_part(ruleset, data, threads);
    let mut out = part.findings;
    out.extend(part.tallies.findings(ruleset, data.period));
    sort_findings(&mut out);
    out
}

/// What one part of a partitioned run found: the findings of every rule
/// that looks at one patient, one record, one claim or one chain (final),
/// and the tallies of the rules that look across patients.
#[derive(Debug, Clone)]
pub struct Part {
    /// In the order [`reconcile`] gives them.
    pub findings: Vec<Finding>,
    /// To be merged over all parts; [`CrossTallies::findings`] then gives
    /// the cross-patient findings.
    pub tallies: CrossTallies,
    /// The part's sessions and claim lines with the numbers the engine gave
    /// their patients and hospitals.
    pub numbered: Numbered,
}

/// The sessions and claim lines of the period (those the rules looked at)
/// with the engine's numbers for their patients and hospitals (in order of
/// first appearance, sessions first): what the server's dashboard counts
/// by, without hashing every row's ids a second time.
#[derive(Debug, Clone, Default)]
pub struct Numbered {
    sessions: Vec<SessView>,
    claims: Vec<ClaimView>,
    patients: usize,
    hospitals: usize,
}

/// One session or claim line of [`Numbered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberedRow {
    /// Its index in the data set's sessions or claims.
    pub row: usize,
    pub patient: u32,
    pub hospital: u32,
    /// The service date (a session's local date of check-in).
    pub date: Date,
    /// A session attested by supervised fallback (false for claim lines).
    pub fallback: bool,
}

impl Numbered {
    /// How many patients and hospitals were numbered (`0..n`).
    pub fn counts(&self) -> (usize, usize) {
        (self.patients, self.hospitals)
    }

    /// The period's sessions, in data set order.
    pub fn sessions(&self) -> impl Iterator<Item = NumberedRow> + '_ {
        self.sessions.iter().map(|s| NumberedRow {
            row: s.i,
            patient: s.patient,
            hospital: s.hospital,
            date: s.date,
            fallback: s.fallback,
        })
    }

    /// The period's claim lines, in data set order.
    pub fn claims(&self) -> impl Iterator<Item = NumberedRow> + '_ {
        self.claims.iter().map(|c| NumberedRow {
            row: c.i,
            patient: c.patient,
            hospital: c.hospital,
            date: c.date,
            fallback: false,
        })
    }
}

/// Reconciles one part of a period partitioned by patient. The parts'
/// findings are disjoint and, with the findings of their merged tallies,
/// exactly those of one run over all the data, provided that each patient's
/// sessions, claims and plans are all in one part, and that each integrity
/// event is in exactly one part: the part holding its accepted records, if
/// any. This is how a month too large for memory is reconciled (the server
/// loads one share of the patients at a time).
pub fn reconcile_part(ruleset: &Ruleset, data: &Dataset<'_>, threads: usize) -> Part {
    let parallel = threads > 1;
    let mut engine = Engine::new(ruleset, data, parallel);
    let mut out = engine.join_slots(parallel);
    let e = &engine;
    // After the join every phase only reads the engine's state.
    // Two shares of similar cost (summed over a national run: about 1.9
    // and 1.6 s of CPU); each phase writes its own list.
    let per_patient = || {
        let mut found: [Vec<Finding>; 2] = Default::default();
        let [session, patient] = &mut found;
        e.per_session(session);
        e.per_patient(patient);
        found
    };
    let the_rest = || {
        let mut found: [Vec<Finding>; 3] = Default::default();
        let mut tallies = CrossTallies::default();
        let [fallback, plans, integrity] = &mut found;
        e.fallback_rates(fallback, &mut tallies);
        e.plan_checks(plans);
        e.integrity(integrity);
        tallies.peers = e.peer_tallies();
        (found, tallies)
    };
    let ([session, patient], ([fallback, plans, integrity], tallies)) = if parallel {
        std::thread::scope(|scope| {
            let patient = scope.spawn(per_patient);
            let rest = the_rest();
            let patient = patient
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (patient, rest)
        })
    } else {
        let rest = the_rest();
        (per_patient(), rest)
    };
    // Phase order, as if run one after another: dedup below keeps the
    // first of two findings with one id, so the order decides which.
    for phase in [session, patient, fallback, plans, integrity] {
        out.extend(phase);
    }
    sort_findings(&mut out);
    Part {
        findings: out,
        tallies,
        numbered: Numbered {
            patients: engine.patient_ids.len(),
            hospitals: engine.hospitals,
            sessions: engine.sv,
            claims: engine.cv,
        },
    }
}

/// Sorts findings by severity, rule and id and keeps one finding per id
/// (the first): a defect reported twice (measured from the receipt time
/// and reported by ingest) is one finding.
pub fn sort_findings(out: &mut Vec<Finding>) {
    out.sort_by(|a, b| (a.severity, &a.rule_id, a.id).cmp(&(b.severity, &b.rule_id, b.id)));
    out.dedup_by(|a, b| a.id == b.id);
}

/// Strings numbered in order of first appearance. The index keeps each
/// string's text inside its entry (a [`Code`], inline up to 24 bytes), so
/// finding a string compares it with bytes already at hand instead of
/// following a pointer back to the row it was first seen in: a part's
/// rows are hundreds of megabytes, and that row has long left the cache.
struct Interner<'a> {
    index: FxMap<Code, u32>,
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn with_capacity(n: usize) -> Interner<'a> {
        Interner {
            index: map_with(n),
            names: Vec::with_capacity(n),
        }
    }

    fn id(&mut self, s: &'a str) -> u32 {
        if let Some(&id) = self.index.get(s) {
            return id;
        }
        let next = self.names.len() as u32;
        self.index.insert(Code::from(s), next);
        self.names.push(s);
        next
    }

    /// Adds `other`'s names (in its order) and returns, for each of
    /// `other`'s ids, the id here: the numbering a single interner would
    /// have given had it seen this one's strings, then `other`'s.
    fn absorb(&mut self, other: &Interner<'a>) -> Vec<u32> {
        other.names.iter().map(|s| self.id(s)).collect()
    }
}

/// Session views with patients and hospitals numbered (terminals and
/// nurses are numbered apart, see [`staff_ids`]).
fn session_views<'a>(
    data: &Dataset<'a>,
    patients: &mut Interner<'a>,
    hospitals: &mut Interner<'a>,
) -> Vec<SessView> {
    let mut sv = Vec::with_capacity(data.sessions.len());
    let days = PeriodDays::of(&data.period);
    for (i, s) in data.sessions.iter().enumerate() {
        let r = &s.facts;
        let Some(date) = in_period(data, &days, s) else {
            continue;
        };
        sv.push(SessView {
            i,
            patient: patients.id(&r.insured_id),
            hospital: hospitals.id(&r.hospital_code),
            terminal: NONE,
            nurse: NONE,
            day: days_from_date(date),
            date,
            start_ms: r.check_in.at_ms,
            end_ms: r.check_out.map(|o| o.at_ms),
            fallback: s.is_fallback(),
        });
    }
    sv
}

/// The session's service date, if inside the period.
fn in_period(
    data: &Dataset<'_>,
    days: &PeriodDays,
    s: &crate::model::AttestedSession,
) -> Option<Date> {
    let r = &s.facts;
    match &days.dates {
        Some(dates) => {
            let local_ms = r
                .check_in
                .at_ms
                .checked_add(i64::from(r.utc_offset_min) * 60_000)?;
            let i = usize::try_from(local_ms.div_euclid(86_400_000) - days.first).ok()?;
            dates.get(i).copied()
        }
        None => local_date(r.check_in.at_ms, r.utc_offset_min).filter(|d| data.period.contains(*d)),
    }
}

/// The period's dates by day number from its first day, computed once
/// (absent for an implausibly long period: then each date is computed).
struct PeriodDays {
    first: i64,
    dates: Option<Vec<Date>>,
}

impl PeriodDays {
    fn of(period: &crate::model::Period) -> PeriodDays {
        let first = days_from_date(period.from);
        let last = days_from_date(period.to);
        let dates = (last - first < 100_000).then(|| {
            (first..=last)
                .map_while(crate::model::date_from_days)
                .collect()
        });
        PeriodDays { first, dates }
    }
}

/// Terminal and nurse numbers of the sessions in the period, in the order
/// of [`session_views`].
fn staff_ids(data: &Dataset<'_>) -> Vec<(u32, u32)> {
    let mut terminals = Interner::with_capacity(1024);
    let mut nurses = Interner::with_capacity(1024);
    let days = PeriodDays::of(&data.period);
    data.sessions
        .iter()
        .filter(|s| in_period(data, &days, s).is_some())
        .map(|s| {
            (
                terminals.id(&s.facts.terminal_id),
                nurses.id(&s.facts.nurse_id),
            )
        })
        .collect()
}

/// Claim views with patients and hospitals numbered by the given
/// interners.
fn claim_views<'a>(
    data: &Dataset<'a>,
    patients: &mut Interner<'a>,
    hospitals: &mut Interner<'a>,
) -> Vec<ClaimView> {
    let mut cv = Vec::with_capacity(data.claims.len());
    for (i, c) in data.claims.iter().enumerate() {
        if !data.period.contains(c.service_date) {
            continue;
        }
        cv.push(ClaimView {
            i,
            patient: patients.id(&c.insured_id),
            hospital: hospitals.id(&c.hospital_code),
            day: days_from_date(c.service_date),
            date: c.service_date,
        });
    }
    cv
}

/// Makes findings of a ruleset: severity, version and rendered
/// parameters of each rule.
struct Emit<'r> {
    rs: &'r Ruleset,
    /// Each rule's parameters rendered for its findings, by
    /// [`rule_index`].
    params: Vec<BTreeMap<String, String>>,
}

impl<'r> Emit<'r> {
    fn new(rs: &'r Ruleset) -> Emit<'r> {
        Emit {
            rs,
            params: RuleId::ALL.iter().map(|r| rs.params_of(*r)).collect(),
        }
    }

    /// Adds a finding of `rule` to `out`, if the rule is active.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        out: &mut Vec<Finding>,
        rule: RuleId,
        date: Option<Date>,
        subject: Subject,
        id_parts: &[&str],
        hospital: Option<&str>,
        patient: Option<&str>,
        claim_ids: Vec<String>,
        record_ids: Vec<RecordId>,
        amount_fen: u64,
        explanation: Text,
    ) {
        let Some(severity) = self.rs.active(rule) else {
            return;
        };
        out.push(Finding {
            id: FindingId::of(rule.code(), id_parts),
            rule_id: rule.code().to_owned(),
            ruleset_version: self.rs.version.clone(),
            params: self.params[rule_index(rule)].clone(),
            severity,
            date,
            subject,
            hospital_code: hospital.map(str::to_owned),
            insured_id: patient.map(str::to_owned),
            claim_ids,
            record_ids,
            amount_fen,
            explanation,
        });
    }
}

impl<'a> Engine<'a> {
    /// Numbers patients, hospitals, terminals and nurses in order of first
    /// appearance (sessions, then claims) and builds the views. With
    /// `parallel`, the claims and the sessions' staff are numbered on a
    /// second thread and renumbered after: the same numbers either way.
    fn new(rs: &'a Ruleset, data: &'a Dataset<'a>, parallel: bool) -> Engine<'a> {
        let mut patients = Interner::with_capacity(data.claims.len() / 8 + 16);
        let mut hospitals = Interner::with_capacity(256);
        let (mut sv, cv, staff) = if parallel {
            std::thread::scope(|scope| {
                let claims = scope.spawn(|| {
                    let mut patients = Interner::with_capacity(data.claims.len() / 8 + 16);
                    let mut hospitals = Interner::with_capacity(256);
                    let cv = claim_views(data, &mut patients, &mut hospitals);
                    (cv, patients, hospitals, staff_ids(data))
                });
                let sv = session_views(data, &mut patients, &mut hospitals);
                let (mut cv, claim_patients, claim_hospitals, staff) = claims
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                let patient_of = patients.absorb(&claim_patients);
                let hospital_of = hospitals.absorb(&claim_hospitals);
                for c in &mut cv {
                    c.patient = patient_of[c.patient as usize];
                    c.hospital = hospital_of[c.hospital as usize];
                }
                (sv, cv, staff)
            })
        } else {
            let sv = session_views(data, &mut patients, &mut hospitals);
            let cv = claim_views(data, &mut patients, &mut hospitals);
            (sv, cv, staff_ids(data))
        };
        for (s, (terminal, nurse)) in sv.iter_mut().zip(staff) {
            s.terminal = terminal;
            s.nurse = nurse;
        }
        let n_s = sv.len();
        let n_c = cv.len();
        let n_p = patients.names.len();
        let sessions_by = ByPatient::of_views(n_p, sv.iter().map(|s| s.patient));
        let claims_by = ByPatient::of_views(n_p, cv.iter().map(|c| c.patient));
        Engine {
            sessions_by,
            claims_by,
            rs,
            data,
            sv,
            cv,
            patient_ids: patients.names,
            hospitals: hospitals.names.len(),
            claim_of_session: vec![NONE; n_s],
            pairs: Vec::new(),
            above_charge: vec![false; n_c],
            emit: Emit::new(rs),
        }
    }

    fn session(&self, v: u32) -> &'a crate::model::AttestedSession {
        &self.data.sessions[self.sv[v as usize].i]
    }

    fn claim(&self, v: u32) -> &'a ClaimLine {
        &self.data.claims[self.cv[v as usize].i]
    }

    /// A finding about one attested session record: subject, date,
    /// hospital, patient, claim and money at stake are the record's.
    fn push_on_record(
        &self,
        out: &mut Vec<Finding>,
        rule: RuleId,
        on: &OnRecord<'_>,
        explanation: Text,
    ) {
        self.emit.push(
            out,
            rule,
            Some(on.date),
            Subject::Record(on.rid.to_owned()),
            &[on.rid],
            Some(on.hospital),
            Some(on.patient),
            on.claim_ids.to_vec(),
            vec![on.record_id],
            on.amount,
            explanation,
        );
    }

    // ---------------------------------------------------------------- slots

    /// Pairs claims with attested sessions (patient, hospital, day, kind
    /// family) and returns the findings of the pairing: phantom sessions,
    /// inflated counts, swapped services, amounts above the charge. Each
    /// patient's records are paired on their own, so with `parallel` the
    /// patients are split in two halves of similar size.
    fn join_slots(&mut self, parallel: bool) -> Vec<Finding> {
        let n = self.patient_ids.len();
        let parts: Vec<JoinPart> = if parallel && n > 1 {
            // Split where half of the records lie before.
            let total = self.sessions_by.start[n] + self.claims_by.start[n];
            let split = (0..n)
                .find(|&p| self.sessions_by.start[p] + self.claims_by.start[p] >= total / 2)
                .unwrap_or(n / 2);
            let e = &*self;
            std::thread::scope(|scope| {
                let second = scope.spawn(move || e.join_patients(split..n));
                let first = e.join_patients(0..split);
                let second = second
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                vec![first, second]
            })
        } else {
            vec![self.join_patients(0..n)]
        };
        let mut found = Vec::new();
        for part in parts {
            found.extend(part.found);
            for &c in &part.above {
                self.above_charge[c as usize] = true;
            }
            self.pairs.extend(part.pairs);
        }
        self.pairs.sort_unstable();
        for &(c, s) in &self.pairs {
            self.claim_of_session[s as usize] = c;
        }
        found
    }

    /// The pairing of the patients `patients`.
    fn join_patients(&self, patients: std::ops::Range<usize>) -> JoinPart {
        let mut part = JoinPart::default();
        let out = &mut part.found;
        let tolerance = self
            .rs
            .int(RuleId::AmountAboveCharge, "tolerance_fen")
            .max(0) as u64;
        type Slot = (u32, i64, u8);
        let mut s_keyed: Vec<(Slot, i64, RecordId, u32)> = Vec::new();
        let mut c_keyed: Vec<(Slot, &'a str, u32)> = Vec::new();
        let mut ss: Vec<u32> = Vec::new();
        let mut cs: Vec<u32> = Vec::new();
        let mut used: Vec<bool> = Vec::new();
        let mut paired: Vec<u32> = Vec::new();
        for p in patients {
            c_keyed.clear();
            for &c in self.claims_by.of(p) {
                let view = &self.cv[c as usize];
                let claim = self.claim(c);
                let slot = (view.hospital, view.day, family(claim.service_kind));
                c_keyed.push((slot, &claim.claim_id, c));
            }
            if c_keyed.is_empty() {
                continue;
            }
            c_keyed.sort_unstable();
            s_keyed.clear();
            for &v in self.sessions_by.of(p) {
                let view = &self.sv[v as usize];
                let att = self.session(v);
                let slot = (view.hospital, view.day, family(att.facts.kind));
                s_keyed.push((slot, view.start_ms, att.record_id, v));
            }
            s_keyed.sort_unstable();
            let mut a = 0;
            let mut b = 0;
            while b < c_keyed.len() {
                let slot = c_keyed[b].0;
                cs.clear();
                while b < c_keyed.len() && c_keyed[b].0 == slot {
                    cs.push(c_keyed[b].2);
                    b += 1;
                }
                while a < s_keyed.len() && s_keyed[a].0 < slot {
                    a += 1;
                }
                ss.clear();
                while a < s_keyed.len() && s_keyed[a].0 == slot {
                    ss.push(s_keyed[a].3);
                    a += 1;
                }
                self.pair_slot(
                    out,
                    &mut part.pairs,
                    &mut part.above,
                    &cs,
                    &ss,
                    tolerance,
                    &mut used,
                    &mut paired,
                );
            }
        }
        part
    }

    /// Pairs the claims `cs` (in claim-id order) of one patient, hospital,
    /// day and kind family with its sessions `ss` (in time order).
    #[allow(clippy::too_many_arguments)]
    fn pair_slot(
        &self,
        out: &mut Vec<Finding>,
        pairs: &mut Vec<(u32, u32)>,
        above: &mut Vec<u32>,
        cs: &[u32],
        ss: &[u32],
        tolerance: u64,
        used: &mut Vec<bool>,
        paired: &mut Vec<u32>,
    ) {
        if ss.is_empty() {
            for &c in cs {
                self.phantom(out, c);
            }
            return;
        }
        // Pair claim units with sessions: the same kind first.
        used.clear();
        used.resize(ss.len(), false);
        let mut units: u64 = 0;
        let mut amount: u64 = 0;
        for &c in cs {
            let claim = self.claim(c);
            units += u64::from(claim.quantity);
            amount = amount.saturating_add(claim.amount_fen);
            paired.clear();
            for _ in 0..claim.quantity {
                let same = (0..ss.len())
                    .find(|&k| !used[k] && self.session(ss[k]).facts.kind == claim.service_kind);
                let Some(k) = same.or_else(|| (0..ss.len()).find(|&k| !used[k])) else {
                    break;
                };
                used[k] = true;
                paired.push(ss[k]);
            }
            pairs.extend(paired.iter().map(|&s| (c, s)));
            if self.compare_claim(out, c, paired, tolerance) {
                above.push(c);
            }
        }
        if units > ss.len() as u64 {
            self.inflated(out, cs, ss, units, amount);
        }
    }

    fn phantom(&self, out: &mut Vec<Finding>, c: u32) {
        let claim = self.claim(c);
        let (zh_amt, en_amt) = money(claim.amount_fen);
        self.emit.push(
            out,
            RuleId::PhantomSession,
            Some(claim.service_date),
            Subject::Claim(claim.claim_id.as_str().to_owned()),
            &[&claim.claim_id],
            Some(&claim.hospital_code),
            Some(&claim.insured_id),
            vec![claim.claim_id.as_str().to_owned()],
            Vec::new(),
            claim.amount_fen,
            Text {
                zh: format!(
                    "申报 {} {} {}（{}），但当日在该院没有经指纹/监督核验的治疗记录",
                    claim.service_date, claim.service_kind, claim.service_code, zh_amt
                ),
                en: format!(
                    "claimed {} {} {} ({}), but no attested session at that hospital on that day",
                    claim.service_date, claim.service_kind, claim.service_code, en_amt
                ),
            },
        );
    }

    fn inflated(&self, out: &mut Vec<Finding>, cs: &[u32], ss: &[u32], units: u64, amount: u64) {
        let first = self.claim(cs[0]);
        let attested = ss.len() as u64;
        let excess = units - attested;
        let at_stake = (amount / units).saturating_mul(excess);
        let subject = format!(
            "{}|{}|{}|{}",
            first.insured_id,
            first.hospital_code,
            first.service_date,
            family(first.service_kind)
        );
        self.emit.push(
            out,
            RuleId::InflatedCount,
            Some(first.service_date),
            Subject::PatientDay(subject.clone()),
            &[&subject],
            Some(&first.hospital_code),
            Some(&first.insured_id),
            cs.iter().map(|&c| self.claim(c).claim_id.as_str().to_owned()).collect(),
            ss.iter().map(|&s| self.session(s).record_id).collect(),
            at_stake,
            Text {
                zh: format!(
                    "{} 申报 {units} 次，核验记录仅 {attested} 次，多报 {excess} 次",
                    first.service_date
                ),
                en: format!(
                    "{}: {units} unit(s) claimed, {attested} attested session(s); {excess} too many",
                    first.service_date
                ),
            },
        );
    }

    /// Emits the findings comparing claim `c` with the sessions paired with
    /// it; returns whether its amount exceeds their bound charges.
    fn compare_claim(
        &self,
        out: &mut Vec<Finding>,
        c: u32,
        paired: &[u32],
        tolerance: u64,
    ) -> bool {
        if paired.is_empty() {
            return false;
        }
        let claim = self.claim(c);
        let charges: u64 = paired
            .iter()
            .map(|&s| self.session(s).facts.charge_fen)
            .fold(0, u64::saturating_add);
        let swapped = paired
            .iter()
            .copied()
            .find(|&s| self.session(s).facts.kind != claim.service_kind);
        let data = self.data;
        let sv = &self.sv;
        let records = || -> Vec<RecordId> {
            paired
                .iter()
                .map(|&s| data.sessions[sv[s as usize].i].record_id)
                .collect()
        };
        if let Some(s) = swapped {
            let attested = self.session(s).facts.kind;
            self.emit.push(
                out,
                RuleId::ServiceSwapped,
                Some(claim.service_date),
                Subject::Claim(claim.claim_id.as_str().to_owned()),
                &[&claim.claim_id],
                Some(&claim.hospital_code),
                Some(&claim.insured_id),
                vec![claim.claim_id.as_str().to_owned()],
                records(),
                claim.amount_fen.saturating_sub(charges),
                Text {
                    zh: format!(
                        "{} 申报 {}，核验记录为 {}（串换项目）",
                        claim.service_date, claim.service_kind, attested
                    ),
                    en: format!(
                        "{}: {} claimed where {} was attested (service swapped)",
                        claim.service_date, claim.service_kind, attested
                    ),
                },
            );
            return false;
        }
        if paired.len() as u32 == claim.quantity
            && claim.amount_fen > charges.saturating_add(tolerance)
        {
            let diff = claim.amount_fen - charges;
            let (zc, ec) = money(claim.amount_fen);
            let (zb, eb) = money(charges);
            self.emit.push(
                out,
                RuleId::AmountAboveCharge,
                Some(claim.service_date),
                Subject::Claim(claim.claim_id.as_str().to_owned()),
                &[&claim.claim_id],
                Some(&claim.hospital_code),
                Some(&claim.insured_id),
                vec![claim.claim_id.as_str().to_owned()],
                records(),
                diff,
                Text {
                    zh: format!("申报金额 {zc} 高于床旁记录绑定的费用 {zb}"),
                    en: format!("claimed {ec}, above the {eb} bound into the record"),
                },
            );
            return true;
        }
        false
    }

    // ---------------------------------------------------------- per session

    fn claimed_amount(&self, s: u32) -> u64 {
        let c = self.claim_of_session[s as usize];
        if c == NONE {
            return 0;
        }
        let claim = self.claim(c);
        claim.amount_fen / u64::from(claim.quantity.max(1))
    }

    fn per_session(&self, out: &mut Vec<Finding>) {
        let missing_kinds: Vec<TreatmentKind> =
            self.rs.kinds(RuleId::MissingCheckout, "kinds").to_vec();
        let composites: Vec<Composite> = self
            .rs
            .composites
            .iter()
            .filter(|c| c.enabled)
            .cloned()
            .collect();
        let threshold = |rule: RuleId, param: &str, unit_ms: i64| {
            self.rs
                .active(rule)
                .map(|_| self.rs.int(rule, param).saturating_mul(unit_ms).max(1))
        };
        let skew_min_ms = threshold(RuleId::ClockSkew, "min_skew_minutes", 60_000);
        let late_min_ms = threshold(RuleId::LateSync, "min_delay_hours", 3_600_000);
        let min_minutes_of: Vec<Option<i64>> = TreatmentKind::ALL
            .iter()
            .map(|&kind| {
                self.rs
                    .kind_int(RuleId::ShortDialysis, "min_minutes", kind)
                    .filter(|_| kind.is_centre_dialysis())
            })
            .collect();
        for v in 0..self.sv.len() as u32 {
            let s = self.session(v);
            let r = &s.facts;
            let view = &self.sv[v as usize];
            let kind = r.kind;
            let fallback = view.fallback;
            let minutes = r.duration_min();
            let min_minutes = min_minutes_of[kind_index(kind)];
            let short = matches!((minutes, min_minutes), (Some(m), Some(min)) if m < min);
            let missing = r.closure == Closure::MissingCheckout;
            let missing_hit = missing && missing_kinds.contains(&kind);
            // Clock skew and late arrival, from the receipt time stored
            // beside the record (the same rules also take ingest's events).
            let skew_ms = r.signed_at_ms.saturating_sub(s.received_at_ms);
            let skew = skew_min_ms.is_some_and(|t| skew_ms >= t);
            let delay_ms = s.received_at_ms.saturating_sub(r.signed_at_ms);
            let late = late_min_ms.is_some_and(|t| delay_ms >= t);
            let claimed_kind = match self.claim_of_session[v as usize] {
                NONE => None,
                c => Some(self.claim(c).service_kind),
            };
            let above = match self.claim_of_session[v as usize] {
                NONE => false,
                c => self.above_charge[c as usize],
            };
            let holds = |cond: &Condition| match cond {
                Condition::Fallback => fallback,
                Condition::Short => short,
                Condition::MissingCheckout => missing,
                Condition::ClaimedKind(k) => claimed_kind == Some(*k),
                Condition::AttestedKind(k) => kind == *k,
                Condition::AmountAboveCharge => above,
            };
            let hits: Vec<&Composite> = composites
                .iter()
                .filter(|c| {
                    c.all.iter().all(holds) && (c.any.is_empty() || c.any.iter().any(holds))
                })
                .collect();
            if !(fallback || short || missing_hit || skew || late || !hits.is_empty()) {
                continue;
            }
            let amount = self.claimed_amount(v);
            let claim_ids: Vec<String> = match self.claim_of_session[v as usize] {
                NONE => Vec::new(),
                c => vec![self.claim(c).claim_id.as_str().to_owned()],
            };
            let rid = s.record_id.to_hex();
            let date = view.date;
            let on = OnRecord {
                date,
                rid: &rid,
                hospital: &r.hospital_code,
                patient: &r.insured_id,
                claim_ids: &claim_ids,
                record_id: s.record_id,
                amount,
            };

            if fallback {
                let reason = r.fallback_reason().map_or("", |r| r.code());
                self.push_on_record(
                    out,
                    RuleId::SupervisedFallback,
                    &on,
                    Text {
                        zh: format!("{date} 的治疗以人工监督核验代替指纹（{reason}）"),
                        en: format!(
                            "session on {date} attested by supervised fallback instead of fingerprint ({reason})"
                        ),
                    },
                );
            }
            if short && let (Some(m), Some(min)) = (minutes, min_minutes) {
                self.push_on_record(
                    out,
                    RuleId::ShortDialysis,
                    &on,
                    Text {
                        zh: format!("{date} {kind} 透析仅 {m} 分钟，低于 {min} 分钟"),
                        en: format!("{kind} on {date} lasted {m} min, under the minimum of {min}"),
                    },
                );
            }
            if missing_hit {
                self.push_on_record(
                    out,
                    RuleId::MissingCheckout,
                    &on,
                    Text {
                        zh: format!("{date} {kind} 只有签到，没有签退"),
                        en: format!("{kind} on {date}: checked in, never checked out"),
                    },
                );
            }
            if skew {
                let t = &r.terminal_id;
                let min = skew_ms / 60_000;
                self.push_on_record(
                    out,
                    RuleId::ClockSkew,
                    &on,
                    Text {
                        zh: format!("终端 {t} 记录时间超前服务器接收时间 {min} 分钟"),
                        en: format!("terminal {t}: record dated {min} min ahead of its receipt"),
                    },
                );
            }
            if late {
                let t = &r.terminal_id;
                let hours = delay_ms / 3_600_000;
                self.push_on_record(
                    out,
                    RuleId::LateSync,
                    &on,
                    Text {
                        zh: format!("终端 {t} 的记录签名后 {hours} 小时才上传"),
                        en: format!("terminal {t}: record arrived {hours} h after signing"),
                    },
                );
            }
            for comp in hits {
                {
                    let conds: Vec<String> = comp
                        .all
                        .iter()
                        .map(Condition::code)
                        .chain(comp.any.iter().filter(|c| holds(c)).map(Condition::code))
                        .collect();
                    out.push(Finding {
                        id: FindingId::of(&comp.id, &[&rid]),
                        rule_id: comp.id.clone(),
                        ruleset_version: self.rs.version.clone(),
                        params: BTreeMap::from([("conditions".to_owned(), conds.join(" & "))]),
                        severity: comp.severity,
                        date: Some(date),
                        subject: Subject::Record(rid.clone()),
                        hospital_code: Some(on.hospital.to_owned()),
                        insured_id: Some(on.patient.to_owned()),
                        claim_ids: claim_ids.clone(),
                        record_ids: vec![s.record_id],
                        amount_fen: amount,
                        explanation: Text {
                            zh: format!("{date}：{}（{}）", comp.title.zh, conds.join(" 且 ")),
                            en: format!("{date}: {} ({})", comp.title.en, conds.join(" and ")),
                        },
                    });
                }
            }
        }
    }

    // ---------------------------------------------------------- per patient

    fn per_patient(&self, out: &mut Vec<Finding>) {
        let plans_of = self.plans_by_patient(false);

        let day_on = self.rs.active(RuleId::FrequencyDay).is_some();
        let week_on = self.rs.active(RuleId::FrequencyWeek).is_some();
        let month_on = self.rs.active(RuleId::FrequencyMonth).is_some();
        let overlap_on = self.rs.active(RuleId::OverlapPlaces).is_some();
        let mut ss: Vec<u32> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut sorted: Vec<Event> = Vec::new();
        let weeks = IsoWeeks::of(&self.data.period);
        for (p, plans) in plans_of.iter().enumerate() {
            ss.clear();
            ss.extend_from_slice(self.sessions_by.of(p));
            // By check-in, then record id: the rows (far from the views in
            // memory) are read only for the rare sessions checked in at the
            // same millisecond.
            ss.sort_by(|&a, &b| {
                let (start_a, start_b) =
                    (self.sv[a as usize].start_ms, self.sv[b as usize].start_ms);
                start_a
                    .cmp(&start_b)
                    .then_with(|| self.session(a).record_id.cmp(&self.session(b).record_id))
            });
            if overlap_on {
                self.overlaps(out, &ss);
            }
            if !(day_on || week_on || month_on) {
                continue;
            }
            events.clear();
            for &v in &ss {
                let view = &self.sv[v as usize];
                let kind = self.session(v).facts.kind;
                events.push(Event {
                    day: view.day,
                    date: view.date,
                    week: weeks.week(view.day, view.date),
                    kind,
                    family: family(kind),
                    claim: false,
                    units: 1,
                    amount: 0,
                    idx: v,
                });
            }
            for &c in self.claims_by.of(p) {
                let claim = self.claim(c);
                let view = &self.cv[c as usize];
                events.push(Event {
                    day: view.day,
                    date: view.date,
                    week: weeks.week(view.day, view.date),
                    kind: claim.service_kind,
                    family: family(claim.service_kind),
                    claim: true,
                    units: claim.quantity,
                    amount: claim.amount_fen,
                    idx: c,
                });
            }
            // Stable: sessions stay in time order; a day's claim lines of
            // one family then go in claim-id order (most days have one, so
            // the lines' rows are seldom read).
            events.sort_by_key(|e| (e.day, e.family, e.claim));
            for run in events
                .chunk_by_mut(|a, b| a.claim && b.claim && (a.day, a.family) == (b.day, b.family))
            {
                // Runs of more than one are claim lines only.
                if run.len() > 1 {
                    run.sort_by(|a, b| self.claim(a.idx).claim_id.cmp(&self.claim(b.idx).claim_id));
                }
            }
            let patient = self.patient_ids[p];
            if day_on {
                self.frequency_day(out, patient, &events);
            }
            if week_on {
                self.frequency_week(out, patient, &events, plans, &mut sorted);
            }
            if month_on {
                self.frequency_month(out, patient, &events, &mut sorted);
            }
        }
    }

    fn overlaps(&self, out: &mut Vec<Finding>, ss: &[u32]) {
        let min_overlap = self.rs.int(RuleId::OverlapPlaces, "min_overlap_minutes") * 60_000;
        let open = self.rs.int(RuleId::OverlapPlaces, "open_session_minutes") * 60_000;
        for a in 0..ss.len() {
            let (a_end, a_start, a_date) = {
                let va = &self.sv[ss[a] as usize];
                (va.end_ms, va.start_ms, va.date)
            };
            let end_a = a_end.unwrap_or(a_start + open);
            for &sb in &ss[a + 1..] {
                let (b_start, b_end) = {
                    let vb = &self.sv[sb as usize];
                    (vb.start_ms, vb.end_ms)
                };
                if b_start >= end_a {
                    break;
                }
                let end_b = b_end.unwrap_or(b_start + open);
                let overlap = end_a.min(end_b) - b_start;
                let ra = &self.session(ss[a]).facts;
                let rb = &self.session(sb).facts;
                if ra.terminal_id == rb.terminal_id || overlap < min_overlap.max(1) {
                    continue;
                }
                let (ia, ib) = (self.session(ss[a]).record_id, self.session(sb).record_id);
                let (x, y) = if ia <= ib { (ia, ib) } else { (ib, ia) };
                let subject = format!("{}|{}", x.to_hex(), y.to_hex());
                let mut claims = Vec::new();
                for s in [ss[a], sb] {
                    let c = self.claim_of_session[s as usize];
                    if c != NONE {
                        claims.push(self.claim(c).claim_id.as_str().to_owned());
                    }
                }
                let amount = self.claimed_amount(ss[a]).min(self.claimed_amount(sb));
                let minutes = overlap / 60_000;
                let date = a_date;
                self.emit.push(
                    out,
                    RuleId::OverlapPlaces,
                    Some(date),
                    Subject::Record(subject.clone()),
                    &[&subject],
                    Some(&rb.hospital_code),
                    Some(&ra.insured_id),
                    claims,
                    vec![x, y],
                    amount,
                    Text {
                        zh: format!(
                            "{date} 同一患者在 {} 与 {} 的治疗时间重叠 {minutes} 分钟",
                            ra.hospital_code, rb.hospital_code
                        ),
                        en: format!(
                            "{date}: the patient was attested at {} and {} at overlapping times ({minutes} min)",
                            ra.hospital_code, rb.hospital_code
                        ),
                    },
                );
            }
        }
    }

    fn evidence(&self, events: &[Event]) -> (Vec<String>, Vec<RecordId>, Option<String>) {
        let mut claims = Vec::new();
        let mut records = Vec::new();
        let mut hospital = None;
        for e in events {
            if e.claim {
                let c = self.claim(e.idx);
                claims.push(c.claim_id.as_str().to_owned());
                hospital.get_or_insert_with(|| c.hospital_code.as_str().to_owned());
            } else {
                let s = self.session(e.idx);
                records.push(s.record_id);
                hospital.get_or_insert_with(|| s.facts.hospital_code.as_str().to_owned());
            }
        }
        claims.sort();
        records.sort();
        (claims, records, hospital)
    }

    /// Units attested and claimed in a group of events, and the claims'
    /// average amount per unit.
    fn count(events: &[Event]) -> (u64, u64, u64) {
        let attested = events.iter().filter(|e| !e.claim).count() as u64;
        let claimed: u64 = events
            .iter()
            .filter(|e| e.claim)
            .map(|e| u64::from(e.units))
            .sum();
        let amount: u64 = events
            .iter()
            .filter(|e| e.claim)
            .map(|e| e.amount)
            .fold(0, u64::saturating_add);
        let unit = amount.checked_div(claimed).unwrap_or(0);
        (attested, claimed, unit)
    }

    fn frequency_day(&self, out: &mut Vec<Finding>, patient: &str, events: &[Event]) {
        let max = self
            .rs
            .int(RuleId::FrequencyDay, "max_centre_dialysis_per_day") as u64;
        let mut i = 0;
        while i < events.len() {
            let day = events[i].day;
            let len = events[i..].iter().take_while(|e| e.day == day).count();
            let on_day = &events[i..i + len];
            i += len;
            // Most days hold one session: count before collecting.
            let dialysis = || on_day.iter().filter(|e| e.kind.is_centre_dialysis());
            let attested = dialysis().filter(|e| !e.claim).count() as u64;
            let claimed: u64 = dialysis()
                .filter(|e| e.claim)
                .map(|e| u64::from(e.units))
                .sum();
            if attested.max(claimed) <= max {
                continue;
            }
            let group: Vec<Event> = dialysis().copied().collect();
            let (attested, claimed, unit) = Self::count(&group);
            let n = attested.max(claimed);
            let date = group[0].date;
            let (claims, records, hospital) = self.evidence(&group);
            let subject = format!("{patient}|{date}");
            self.emit.push(
                out,
                RuleId::FrequencyDay,
                Some(date),
                Subject::PatientDay(subject.clone()),
                &[&subject],
                hospital.as_deref(),
                Some(patient),
                claims,
                records,
                unit.saturating_mul(claimed.saturating_sub(max)),
                Text {
                    zh: format!(
                        "{date} 血液净化 {n} 次（核验 {attested}，申报 {claimed}），超过每日 {max} 次"
                    ),
                    en: format!(
                        "{date}: {n} centre dialysis sessions ({attested} attested, {claimed} claimed), above {max} a day"
                    ),
                },
            );
        }
    }

    fn frequency_week(
        &self,
        out: &mut Vec<Finding>,
        patient: &str,
        events: &[Event],
        plans: &[&TreatmentPlan],
        sorted: &mut Vec<Event>,
    ) {
        for ((year, week, fam), group) in
            groups_by(events, sorted, |e| (e.week.0, e.week.1, e.family))
        {
            let first = group[0];
            let limit = plans
                .iter()
                .filter(|p| {
                    p.covers(first.date) && p.kinds.iter().any(|k| same_family(*k, first.kind))
                })
                .filter_map(|p| p.max_sessions_per_week)
                .map(u64::from)
                .max()
                .or_else(|| {
                    self.rs
                        .kind_int(RuleId::FrequencyWeek, "default_max_per_week", first.kind)
                        .map(|v| v as u64)
                });
            let Some(limit) = limit else { continue };
            let (attested, claimed, unit) = Self::count(group);
            let n = attested.max(claimed);
            if n <= limit {
                continue;
            }
            let (claims, records, hospital) = self.evidence(group);
            let subject = format!("{patient}|{year}-W{week:02}|{fam}");
            let kind = first.kind;
            self.emit.push(
                out,
                RuleId::FrequencyWeek,
                Some(first.date),
                Subject::PatientWeek(subject.clone()),
                &[&subject],
                hospital.as_deref(),
                Some(patient),
                claims,
                records,
                unit.saturating_mul(n.saturating_sub(limit)),
                Text {
                    zh: format!(
                        "{year} 年第 {week} 周 {kind} 类治疗 {n} 次（核验 {attested}，申报 {claimed}），超过每周 {limit} 次"
                    ),
                    en: format!(
                        "ISO week {year}-W{week:02}: {n} {kind}-family sessions ({attested} attested, {claimed} claimed), above {limit} a week"
                    ),
                },
            );
        }
    }

    fn frequency_month(
        &self,
        out: &mut Vec<Finding>,
        patient: &str,
        events: &[Event],
        sorted: &mut Vec<Event>,
    ) {
        for ((year, month, fam), group) in groups_by(events, sorted, |e| {
            (e.date.year(), e.date.month(), e.family)
        }) {
            let kind = group[0].kind;
            let Some(max) = self
                .rs
                .kind_int(RuleId::FrequencyMonth, "max_per_month", kind)
                .map(|v| v as u64)
            else {
                continue;
            };
            let (attested, claimed, unit) = Self::count(group);
            let n = attested.max(claimed);
            if n <= max {
                continue;
            }
            let (claims, records, hospital) = self.evidence(group);
            let subject = format!("{patient}|{year}-{month:02}|{fam}");
            self.emit.push(
                out,
                RuleId::FrequencyMonth,
                Some(group[0].date),
                Subject::PatientMonth(subject.clone()),
                &[&subject],
                hospital.as_deref(),
                Some(patient),
                claims,
                records,
                unit.saturating_mul(n.saturating_sub(max)),
                Text {
                    zh: format!(
                        "{year} 年 {month} 月 {kind} 类治疗 {n} 次（核验 {attested}，申报 {claimed}），超过每月 {max} 次"
                    ),
                    en: format!(
                        "{year}-{month:02}: {n} {kind}-family sessions ({attested} attested, {claimed} claimed), above {max} a month"
                    ),
                },
            );
        }
    }

    // ------------------------------------------------------ fallback rates

    /// Sessions and fallback sessions per terminal (`by` 0), nurse (1) or
    /// patient (2). With `every_key`, keys without a fallback session are
    /// counted too (a terminal's or nurse's other parts may have some).
    fn fallback_tallies(&self, by: u8, every_key: bool) -> BTreeMap<String, FallbackTally> {
        let key_of = |view: &SessView| -> u32 {
            match by {
                0 => view.terminal,
                1 => view.nurse,
                _ => view.patient,
            }
        };
        // Per key: sessions, first session view, fallback session views.
        let mut counts: Vec<(u64, u32, Vec<u32>)> = Vec::new();
        for (v, view) in self.sv.iter().enumerate() {
            let k = key_of(view) as usize;
            if k >= counts.len() {
                counts.resize_with(k + 1, || (0, NONE, Vec::new()));
            }
            let c = &mut counts[k];
            c.0 += 1;
            if c.1 == NONE {
                c.1 = v as u32;
            }
            if view.fallback {
                c.2.push(v as u32);
            }
        }
        let mut out = BTreeMap::new();
        for (n, first, list) in counts {
            if n == 0 || (!every_key && list.is_empty()) {
                continue;
            }
            let r = &self.session(first).facts;
            let name = match by {
                0 => &r.terminal_id,
                1 => &r.nurse_id,
                _ => &r.insured_id,
            };
            let fallback = list
                .iter()
                .map(|&v| {
                    let s = self.session(v);
                    FallbackSession {
                        start_ms: self.sv[v as usize].start_ms,
                        record_id: s.record_id,
                        hospital: s.facts.hospital_code.as_str().to_owned(),
                        claim_id: match self.claim_of_session[v as usize] {
                            NONE => None,
                            c => Some(self.claim(c).claim_id.as_str().to_owned()),
                        },
                        amount: self.claimed_amount(v),
                    }
                })
                .collect();
            out.insert(
                name.as_str().to_owned(),
                FallbackTally {
                    sessions: n,
                    fallback,
                },
            );
        }
        out
    }

    /// The per-patient fallback rate (complete within a part: all of a
    /// patient's sessions are in it) and the terminal and nurse tallies.
    fn fallback_rates(&self, out: &mut Vec<Finding>, cross: &mut CrossTallies) {
        if self.rs.active(RuleId::FallbackRatePatient).is_some() {
            let patients = self.fallback_tallies(2, false);
            fallback_findings(&self.emit, self.data.period, 2, patients, out);
        }
        if self.rs.active(RuleId::FallbackRateTerminal).is_some() {
            cross.fallback[0] = self.fallback_tallies(0, true);
        }
        if self.rs.active(RuleId::FallbackRateNurse).is_some() {
            cross.fallback[1] = self.fallback_tallies(1, true);
        }
    }

    // ------------------------------------------------------------- 五定

    fn plan_checks(&self, out: &mut Vec<Finding>) {
        let any_on = [
            RuleId::NoPlan,
            RuleId::PlanHospital,
            RuleId::PlanDepartment,
            RuleId::PlanDoctor,
            RuleId::PlanKind,
            RuleId::PlanDrug,
            RuleId::PlanDose,
        ]
        .iter()
        .any(|r| self.rs.active(*r).is_some());
        if !any_on {
            return;
        }
        let plans_of = self.plans_by_patient(true);
        let mut p = 0usize;
        let mut sessions: Vec<u32> = Vec::new();
        for c in 0..self.cv.len() as u32 {
            let claim = self.claim(c);
            let plans = &plans_of[self.cv[c as usize].patient as usize];
            let facts = ServiceFacts {
                hospital_code: &claim.hospital_code,
                department_code: &claim.department_code,
                doctor_id: &claim.doctor_id,
                kind: claim.service_kind,
                drug_code: claim.drug_code.as_deref(),
                dose: claim.dose.as_ref(),
                date: claim.service_date,
            };
            let claim_breaches = check_against_plans(self.rs, plans, &facts);
            while p < self.pairs.len() && self.pairs[p].0 < c {
                p += 1;
            }
            sessions.clear();
            while p < self.pairs.len() && self.pairs[p].0 == c {
                sessions.push(self.pairs[p].1);
                p += 1;
            }
            if !claim_breaches.is_empty() {
                sessions
                    .sort_by_key(|&v| (self.sv[v as usize].start_ms, self.session(v).record_id));
                let records: Vec<RecordId> = sessions
                    .iter()
                    .map(|&s| self.session(s).record_id)
                    .collect();
                for b in &claim_breaches {
                    self.plan_finding(
                        out,
                        b,
                        Subject::Claim(claim.claim_id.as_str().to_owned()),
                        &claim.claim_id,
                        &claim.hospital_code,
                        &claim.insured_id,
                        vec![claim.claim_id.as_str().to_owned()],
                        records.clone(),
                        claim.amount_fen,
                        claim.service_date,
                    );
                }
            }
            for &s in &sessions {
                self.session_plan_check(out, s, plans, &claim_breaches);
            }
        }
        for s in 0..self.sv.len() as u32 {
            if self.claim_of_session[s as usize] == NONE {
                let plans = &plans_of[self.sv[s as usize].patient as usize];
                self.session_plan_check(out, s, plans, &[]);
            }
        }
    }

    /// Each patient's plans, by patient number; `sorted`: in a fixed order
    /// (plan id, validity, hospital, department) whatever the input order.
    fn plans_by_patient(&self, sorted: bool) -> Vec<Vec<&'a TreatmentPlan>> {
        let mut plans_of: Vec<Vec<&'a TreatmentPlan>> = vec![Vec::new(); self.patient_ids.len()];
        let index: FxMap<&str, u32> = self
            .patient_ids
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
            .collect();
        for plan in self.data.plans {
            if let Some(&p) = index.get(plan.insured_id.as_str()) {
                plans_of[p as usize].push(plan);
            }
        }
        if sorted {
            for list in &mut plans_of {
                list.sort_by(|a, b| {
                    let key = |p: &'a TreatmentPlan| {
                        (
                            &p.plan_id,
                            p.valid_from,
                            p.valid_to,
                            &p.hospital_code,
                            &p.department_code,
                        )
                    };
                    key(a).cmp(&key(b))
                });
            }
        }
        plans_of
    }

    fn session_plan_check(
        &self,
        out: &mut Vec<Finding>,
        s: u32,
        plans: &[&TreatmentPlan],
        already: &[PlanBreach],
    ) {
        let att = self.session(s);
        let r = &att.facts;
        let facts = ServiceFacts {
            hospital_code: &r.hospital_code,
            department_code: &r.department_code,
            doctor_id: &r.doctor_id,
            kind: r.kind,
            drug_code: r.drug_code.as_deref(),
            dose: r.dose.as_ref(),
            date: self.sv[s as usize].date,
        };
        let breaches = check_against_plans(self.rs, plans, &facts);
        if breaches.is_empty() {
            return;
        }
        let claim_ids: Vec<String> = match self.claim_of_session[s as usize] {
            NONE => Vec::new(),
            c => vec![self.claim(c).claim_id.as_str().to_owned()],
        };
        let amount = self.claimed_amount(s);
        for b in breaches {
            if already.iter().any(|a| a.rule == b.rule) {
                continue;
            }
            let rid = att.record_id.to_hex();
            self.plan_finding(
                out,
                &b,
                Subject::Record(rid.clone()),
                &rid,
                &r.hospital_code,
                &r.insured_id,
                claim_ids.clone(),
                vec![att.record_id],
                amount,
                facts.date,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_finding(
        &self,
        out: &mut Vec<Finding>,
        b: &PlanBreach,
        subject: Subject,
        key: &str,
        hospital: &str,
        patient: &str,
        claims: Vec<String>,
        records: Vec<RecordId>,
        amount: u64,
        date: Date,
    ) {
        self.emit.push(
            out,
            b.rule,
            Some(date),
            subject,
            &[key],
            Some(hospital),
            Some(patient),
            claims,
            records,
            amount,
            Text {
                zh: format!("{date} 违反五定：{}", b.reason.zh),
                en: format!("{date}, outside the 五定 plan: {}", b.reason.en),
            },
        );
    }

    // ------------------------------------------------------------ integrity

    fn integrity(&self, out: &mut Vec<Finding>) {
        if self.data.integrity.is_empty() {
            return;
        }
        let mut wanted: FxMap<RecordId, u32> = map_with(self.data.integrity.len() * 2);
        for e in self.data.integrity {
            for id in &e.record_ids {
                wanted.insert(*id, NONE);
            }
        }
        for v in 0..self.sv.len() {
            let id = self.data.sessions[self.sv[v].i].record_id;
            if let Some(slot) = wanted.get_mut(&id) {
                *slot = v as u32;
            }
        }
        // Processed in a fixed order, so that two events about one subject
        // resolve the same way whatever order ingest reported them in.
        let mut events: Vec<&IntegrityEvent> = self.data.integrity.iter().collect();
        events.sort();
        for e in events {
            self.integrity_event(out, e, &wanted);
        }
    }

    fn integrity_event(
        &self,
        out: &mut Vec<Finding>,
        e: &IntegrityEvent,
        accepted: &FxMap<RecordId, u32>,
    ) {
        let (rule, threshold_ms) = match e.kind {
            IntegrityKind::BadSignature => (RuleId::BadSignature, None),
            IntegrityKind::UnknownKey | IntegrityKind::NotApproved => (RuleId::UnknownKey, None),
            IntegrityKind::Revoked => (RuleId::RevokedKey, None),
            IntegrityKind::AfterRevocation => (RuleId::AfterRevocation, None),
            IntegrityKind::WrongTerminal
            | IntegrityKind::WrongHospital
            | IntegrityKind::Malformed => (RuleId::RefusedRecord, None),
            IntegrityKind::Gap => (RuleId::ChainGap, None),
            IntegrityKind::Fork => (RuleId::ChainFork, None),
            IntegrityKind::BrokenLink => (RuleId::ChainBrokenLink, None),
            IntegrityKind::ClockSkew => (
                RuleId::ClockSkew,
                Some(self.rs.int(RuleId::ClockSkew, "min_skew_minutes") * 60_000),
            ),
            IntegrityKind::Backdated => (
                RuleId::Backdated,
                Some(self.rs.int(RuleId::Backdated, "min_minutes") * 60_000),
            ),
            IntegrityKind::LateSync => (
                RuleId::LateSync,
                Some(self.rs.int(RuleId::LateSync, "min_delay_hours") * 3_600_000),
            ),
        };
        if let Some(t) = threshold_ms
            && e.measured_ms.unwrap_or(0) < t.max(1)
        {
            return;
        }
        if e.date.is_some_and(|d| !self.data.period.contains(d)) {
            return;
        }
        let mut date = e.date;
        let mut claims = Vec::new();
        let mut amount = 0u64;
        let mut patient = None;
        let mut hospital = e.hospital_code.clone();
        for id in &e.record_ids {
            if let Some(&v) = accepted.get(id)
                && v != NONE
            {
                let r = &self.session(v).facts;
                date.get_or_insert(self.sv[v as usize].date);
                patient.get_or_insert_with(|| r.insured_id.clone());
                hospital.get_or_insert_with(|| r.hospital_code.as_str().to_owned());
                let c = self.claim_of_session[v as usize];
                if c != NONE {
                    claims.push(self.claim(c).claim_id.as_str().to_owned());
                    amount = amount.saturating_add(self.claimed_amount(v));
                }
            }
        }
        let ids: Vec<String> = e.record_ids.iter().map(RecordId::to_hex).collect();
        let seq = e.seq.map(|s| s.to_string()).unwrap_or_default();
        let missing = e
            .missing
            .map(|(a, b)| format!("{a}-{b}"))
            .unwrap_or_default();
        // Identity = rule + subject: the record for a record's defect, the
        // chain position for a gap or a fork.
        let subject = match (e.kind, ids.first()) {
            (IntegrityKind::Gap, _) => Subject::Chain(format!("{}#{missing}", e.terminal_id)),
            (IntegrityKind::Fork, _) => Subject::Chain(format!("{}#{seq}", e.terminal_id)),
            (_, Some(id)) => Subject::Record(id.clone()),
            (_, None) => Subject::Chain(format!("{}#{seq}", e.terminal_id)),
        };
        let key = match &subject {
            Subject::Record(id) | Subject::Chain(id) => id.clone(),
            other => format!("{other:?}"),
        };
        let parts: Vec<&str> = vec![&key];
        let t = &e.terminal_id;
        let detail = match (e.kind, e.measured_ms, e.missing) {
            (IntegrityKind::Gap, _, Some((a, b))) => (
                format!("终端 {t} 的记录链缺少序号 {a}-{b}"),
                format!("terminal {t}: chain is missing seq {a}-{b}"),
            ),
            (IntegrityKind::Fork, _, _) => (
                format!("终端 {t} 序号 {seq} 出现两条不同记录（分叉）"),
                format!("terminal {t}: two different records at seq {seq} (fork)"),
            ),
            (IntegrityKind::ClockSkew, Some(ms), _) => (
                format!("终端 {t} 记录时间超前服务器 {} 分钟", ms / 60_000),
                format!(
                    "terminal {t}: record dated {} min ahead of the server",
                    ms / 60_000
                ),
            ),
            (IntegrityKind::Backdated, Some(ms), _) => (
                format!("终端 {t} 记录时间早于前一条 {} 分钟", ms / 60_000),
                format!(
                    "terminal {t}: record dated {} min before its predecessor",
                    ms / 60_000
                ),
            ),
            (IntegrityKind::LateSync, Some(ms), _) => (
                format!("终端 {t} 的记录签名后 {} 小时才上传", ms / 3_600_000),
                format!(
                    "terminal {t}: record arrived {} h after signing",
                    ms / 3_600_000
                ),
            ),
            _ => (
                format!("终端 {t} 的记录：{}", self.rs.rule(rule).title.zh),
                format!("terminal {t}: {}", self.rs.rule(rule).title.en),
            ),
        };
        self.emit.push(
            out,
            rule,
            date,
            subject,
            &parts,
            hospital.as_deref(),
            patient.as_deref(),
            claims,
            e.record_ids.clone(),
            amount,
            Text {
                zh: detail.0,
                en: detail.1,
            },
        );
    }

    // ---------------------------------------------------------------- peers

    /// Units, money and patients claimed per hospital and month, for the
    /// peer comparison.
    fn peer_tallies(&self) -> BTreeMap<(i16, i8), BTreeMap<String, PeerTally>> {
        let mut by_month: BTreeMap<(i16, i8), BTreeMap<String, PeerTally>> = BTreeMap::new();
        if self.rs.active(RuleId::PeerSessions).is_none() {
            return by_month;
        }
        let kinds = self.rs.kinds(RuleId::PeerSessions, "kinds").to_vec();
        // (hospital, year, month) -> units, amount, patients
        let mut groups: FxMap<(u32, i16, i8), PeerTally> = map_with(1024);
        let mut seen: FxSet<(u32, u32, i16, i8)> = FxSet::default();
        let mut names: FxMap<u32, &'a str> = map_with(1024);
        for view in &self.cv {
            let claim = &self.data.claims[view.i];
            if !kinds.contains(&claim.service_kind) {
                continue;
            }
            let key = (view.hospital, view.date.year(), view.date.month());
            names.entry(view.hospital).or_insert(&claim.hospital_code);
            let g = groups.entry(key).or_default();
            g.units += u64::from(claim.quantity);
            g.amount = g.amount.saturating_add(claim.amount_fen);
            if seen.insert((view.hospital, view.patient, key.1, key.2)) {
                g.patients += 1;
            }
        }
        for ((h, y, m), tally) in groups {
            by_month
                .entry((y, m))
                .or_default()
                .insert(names[&h].to_owned(), tally);
        }
        by_month
    }
}

/// One session attested by supervised fallback, as a fallback-rate
/// finding cites it.
#[derive(Debug, Clone)]
struct FallbackSession {
    start_ms: i64,
    record_id: RecordId,
    hospital: String,
    claim_id: Option<String>,
    /// Claimed amount of the session.
    amount: u64,
}

/// A terminal's, nurse's or patient's sessions in (a part of) the period.
#[derive(Debug, Clone, Default)]
struct FallbackTally {
    sessions: u64,
    fallback: Vec<FallbackSession>,
}

/// A hospital's claims of one month (kinds the peer rule compares).
#[derive(Debug, Clone, Copy, Default)]
struct PeerTally {
    units: u64,
    amount: u64,
    /// Distinct patients.
    patients: u64,
}

/// What the rules that look across patients (fallback rates per terminal
/// and nurse, peer statistics per hospital) need from a part of the
/// patients. Tallies of parts with disjoint patients add up.
#[derive(Debug, Clone, Default)]
pub struct CrossTallies {
    /// Per terminal (0) and nurse (1).
    fallback: [BTreeMap<String, FallbackTally>; 2],
    peers: BTreeMap<(i16, i8), BTreeMap<String, PeerTally>>,
}

impl CrossTallies {
    /// Adds another part's tallies (the parts' patients must be disjoint:
    /// a hospital's patients are counted, not deduplicated).
    pub fn merge(&mut self, other: CrossTallies) {
        for (mine, theirs) in self.fallback.iter_mut().zip(other.fallback) {
            for (key, t) in theirs {
                let m = mine.entry(key).or_default();
                m.sessions += t.sessions;
                m.fallback.extend(t.fallback);
            }
        }
        for (month, hospitals) in other.peers {
            let mine = self.peers.entry(month).or_default();
            for (h, t) in hospitals {
                let m = mine.entry(h).or_default();
                m.units += t.units;
                m.amount = m.amount.saturating_add(t.amount);
                m.patients += t.patients;
            }
        }
    }

    /// The findings of the cross-patient rules over the merged tallies
    /// (fallback rate per terminal and per nurse, peer sessions).
    pub fn findings(self, ruleset: &Ruleset, period: crate::model::Period) -> Vec<Finding> {
        let emit = Emit::new(ruleset);
        let mut out = Vec::new();
        let [terminals, nurses] = self.fallback;
        fallback_findings(&emit, period, 0, terminals, &mut out);
        fallback_findings(&emit, period, 1, nurses, &mut out);
        peer_findings(&emit, self.peers, &mut out);
        out
    }
}

/// Fallback-rate findings of terminals (`by` 0), nurses (1) or patients
/// (2) over complete tallies, in key order.
fn fallback_findings(
    emit: &Emit<'_>,
    period: crate::model::Period,
    by: u8,
    tallies: BTreeMap<String, FallbackTally>,
    out: &mut Vec<Finding>,
) {
    let rule = match by {
        0 => RuleId::FallbackRateTerminal,
        1 => RuleId::FallbackRateNurse,
        _ => RuleId::FallbackRatePatient,
    };
    if emit.rs.active(rule).is_none() {
        return;
    }
    let max_rate = emit.rs.float(rule, "max_rate");
    let min_sessions = emit.rs.int(rule, "min_sessions") as u64;
    let range = format!("{}..{}", period.from, period.to);
    for (key, tally) in tallies {
        let n = tally.sessions;
        let fb = tally.fallback.len() as u64;
        if fb == 0 || n < min_sessions || (fb as f64) <= max_rate * (n as f64) {
            continue;
        }
        let mut list = tally.fallback;
        list.sort_by_key(|s| (s.start_ms, s.record_id));
        let hospital = list[0].hospital.clone();
        let patient = (by == 2).then(|| key.clone());
        let mut records: Vec<RecordId> = list.iter().map(|s| s.record_id).collect();
        records.sort();
        let amount: u64 = list.iter().map(|s| s.amount).fold(0, u64::saturating_add);
        let mut claims: Vec<String> = list.into_iter().filter_map(|s| s.claim_id).collect();
        claims.sort();
        let pct = fb as f64 * 100.0 / n as f64;
        let limit = max_rate * 100.0;
        let (who_zh, who_en, subject) = match by {
            0 => ("终端", "terminal", Subject::Terminal(key.clone())),
            1 => ("护士", "nurse", Subject::Nurse(key.clone())),
            _ => ("患者", "patient", Subject::Patient(key.clone())),
        };
        let shown = if by == 2 { "" } else { key.as_str() };
        emit.push(
            out,
            rule,
            Some(period.from),
            subject,
            &[&key, &range],
            Some(&hospital),
            patient.as_deref(),
            claims,
            records,
            amount,
            Text {
                zh: format!(
                    "{who_zh} {shown} 的 {n} 次治疗中 {fb} 次人工监督核验（{pct:.1}%），高于 {limit:.1}%"
                ),
                en: format!(
                    "{who_en} {shown}: {fb} of {n} sessions by supervised fallback ({pct:.1}%), above {limit:.1}%"
                ),
            },
        );
    }
}

/// Peer-sessions findings over complete per-hospital tallies: a hospital
/// whose sessions per patient-month stand too far above its peers' median.
fn peer_findings(
    emit: &Emit<'_>,
    by_month: BTreeMap<(i16, i8), BTreeMap<String, PeerTally>>,
    out: &mut Vec<Finding>,
) {
    let rs = emit.rs;
    if rs.active(RuleId::PeerSessions).is_none() {
        return;
    }
    let max_ratio = rs.float(RuleId::PeerSessions, "max_ratio_to_median");
    let min_patients = rs.int(RuleId::PeerSessions, "min_patients") as u64;
    let min_peers = rs.int(RuleId::PeerSessions, "min_peers") as usize;
    for ((year, month), hospitals) in by_month {
        // In hospital-code order (a BTreeMap).
        let rows: Vec<(String, PeerTally)> = hospitals
            .into_iter()
            .filter(|(_, t)| t.patients >= min_patients)
            .collect();
        if rows.len() < min_peers {
            continue;
        }
        let mut rates: Vec<f64> = rows
            .iter()
            .map(|(_, t)| t.units as f64 / t.patients as f64)
            .collect();
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        let sd =
            (rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rates.len() as f64).sqrt();
        rates.sort_by(f64::total_cmp);
        let mid = rates.len() / 2;
        let median = if rates.len().is_multiple_of(2) {
            (rates[mid - 1] + rates[mid]) / 2.0
        } else {
            rates[mid]
        };
        if median <= 0.0 {
            continue;
        }
        let period = format!("{year}-{month:02}");
        for (hospital, t) in rows {
            let (units, amount, patients) = (t.units, t.amount, t.patients);
            let rate = units as f64 / patients as f64;
            let ratio = rate / median;
            if ratio <= max_ratio {
                continue;
            }
            let z = if sd > 0.0 { (rate - mean) / sd } else { 0.0 };
            let excess = ((rate - median) * patients as f64).round().max(0.0) as u64;
            let unit = amount / units.max(1);
            let peers = rates.len();
            emit.push(
                out,
                RuleId::PeerSessions,
                Date::new(year, month, 1).ok(),
                Subject::Hospital(hospital.clone()),
                &[&hospital, &period],
                Some(&hospital),
                None,
                Vec::new(),
                Vec::new(),
                excess.saturating_mul(unit),
                Text {
                    zh: format!(
                        "{period} {hospital} 人均申报 {rate:.2} 次/月，同类 {peers} 家机构中位数 {median:.2}（{ratio:.2} 倍，z = {z:.1}）"
                    ),
                    en: format!(
                        "{period}: {hospital} claimed {rate:.2} sessions per patient-month against a median of {median:.2} over {peers} peers ({ratio:.2}x, z = {z:.1})"
                    ),
                },
            );
        }
    }
}

#[derive(Clone, Copy)]
struct Event {
    day: i64,
    date: Date,
    /// ISO week-numbering year and week of `date`.
    week: (i16, i8),
    kind: TreatmentKind,
    family: u8,
    claim: bool,
    units: u32,
    amount: u64,
    idx: u32,
}

/// The events grouped by `key`, groups in key order, each group's events
/// in their order in `events`: sorted into `sorted`, a buffer the caller
/// keeps from patient to patient (a patient's groups cost no allocation).
fn groups_by<'s, K: Ord + Copy>(
    events: &[Event],
    sorted: &'s mut Vec<Event>,
    key: impl Fn(&Event) -> K + Copy,
) -> impl Iterator<Item = (K, &'s [Event])> {
    sorted.clear();
    sorted.extend_from_slice(events);
    // Stable: equal keys keep the events' order.
    sorted.sort_by_key(key);
    sorted
        .chunk_by(move |a, b| key(a) == key(b))
        .map(move |group| (key(&group[0]), group))
}

/// ISO week (year, week) of each day of the period, by day number from
/// the period's first day.
struct IsoWeeks {
    first_day: i64,
    weeks: Vec<(i16, i8)>,
}

impl IsoWeeks {
    fn of(period: &crate::model::Period) -> IsoWeeks {
        let first_day = days_from_date(period.from);
        let last_day = days_from_date(period.to).max(first_day);
        let weeks = (first_day..=last_day)
            .map(|d| {
                let w = crate::model::date_from_days(d)
                    .unwrap_or(period.from)
                    .iso_week_date();
                (w.year(), w.week())
            })
            .collect();
        IsoWeeks { first_day, weeks }
    }

    fn week(&self, day: i64, date: Date) -> (i16, i8) {
        usize::try_from(day - self.first_day)
            .ok()
            .and_then(|i| self.weeks.get(i).copied())
            .unwrap_or_else(|| {
                let w = date.iso_week_date();
                (w.year(), w.week())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Interner;

    /// Strings are numbered in order of first appearance, the same string
    /// (long or short, wherever its text lives) always the same number;
    /// absorbing another interner numbers its strings as one interner
    /// seeing both in turn would.
    #[test]
    fn strings_are_numbered_in_order_of_first_appearance() {
        let long = "a claim id longer than twenty-four bytes".to_owned();
        let copy = long.clone();
        let texts = [
            "P5101000016733",
            "H51010001",
            "P5101000016733",
            &long,
            "",
            &copy,
            "H51010001",
        ];
        let mut one = Interner::with_capacity(2);
        let ids: Vec<u32> = texts.iter().map(|t| one.id(t)).collect();
        assert_eq!(ids, [0, 1, 0, 2, 3, 2, 1]);
        assert_eq!(
            one.names,
            ["P5101000016733", "H51010001", long.as_str(), ""]
        );

        let mut other = Interner::with_capacity(2);
        for t in ["H9", "", "P5101000016733"] {
            other.id(t);
        }
        let mapped = one.absorb(&other);
        assert_eq!(mapped, [4, 3, 0]);
        assert_eq!(one.id("H9"), 4);
    }
}
