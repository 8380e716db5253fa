//! Injected frauds: every kind of `docs/data-formats.md`'s table, each
//! remembered with the claims and records it rests on (the ground truth).

use std::collections::HashSet;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use wuding_protocol::{FallbackReason, TreatmentKind};

use super::calendar::{self, MINUTE_MS};
use super::catalog::{self, DRUGS, Dept};
use super::world::{self, Care, ClaimDraft, Ev, Flag, Session, Terminal, World};

/// What was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FraudKind {
    PhantomSession,
    InflatedCount,
    ServiceSwapped,
    AmountAboveCharge,
    FallbackAbuseNurse,
    FallbackHdf,
    ShortDialysis,
    ShortFallback,
    MissingCheckout,
    FrequencyWeek,
    SecondDialysisDay,
    OverlapPlaces,
    PlanHospital,
    PlanDepartment,
    PlanDoctor,
    PlanDrug,
    PlanDose,
    BadSignature,
    UnknownKey,
    RevokedKey,
    ChainGap,
    ChainFork,
    ClockSkew,
    PeerOutlier,
}

impl FraudKind {
    pub const ALL: [FraudKind; 24] = [
        FraudKind::PhantomSession,
        FraudKind::InflatedCount,
        FraudKind::ServiceSwapped,
        FraudKind::AmountAboveCharge,
        FraudKind::FallbackAbuseNurse,
        FraudKind::FallbackHdf,
        FraudKind::ShortDialysis,
        FraudKind::ShortFallback,
        FraudKind::MissingCheckout,
        FraudKind::FrequencyWeek,
        FraudKind::SecondDialysisDay,
        FraudKind::OverlapPlaces,
        FraudKind::PlanHospital,
        FraudKind::PlanDepartment,
        FraudKind::PlanDoctor,
        FraudKind::PlanDrug,
        FraudKind::PlanDose,
        FraudKind::BadSignature,
        FraudKind::UnknownKey,
        FraudKind::RevokedKey,
        FraudKind::ChainGap,
        FraudKind::ChainFork,
        FraudKind::ClockSkew,
        FraudKind::PeerOutlier,
    ];

    /// The `kind` column of `truth.csv`.
    pub fn code(self) -> &'static str {
        match self {
            FraudKind::PhantomSession => "phantom_session",
            FraudKind::InflatedCount => "inflated_count",
            FraudKind::ServiceSwapped => "service_swapped",
            FraudKind::AmountAboveCharge => "amount_above_charge",
            FraudKind::FallbackAbuseNurse => "fallback_abuse_nurse",
            FraudKind::FallbackHdf => "fallback_hdf",
            FraudKind::ShortDialysis => "short_dialysis",
            FraudKind::ShortFallback => "short_fallback",
            FraudKind::MissingCheckout => "missing_checkout",
            FraudKind::FrequencyWeek => "frequency_week",
            FraudKind::SecondDialysisDay => "second_dialysis_day",
            FraudKind::OverlapPlaces => "overlap_places",
            FraudKind::PlanHospital => "plan_hospital",
            FraudKind::PlanDepartment => "plan_department",
            FraudKind::PlanDoctor => "plan_doctor",
            FraudKind::PlanDrug => "plan_drug",
            FraudKind::PlanDose => "plan_dose",
            FraudKind::BadSignature => "bad_signature",
            FraudKind::UnknownKey => "unknown_key",
            FraudKind::RevokedKey => "revoked_key",
            FraudKind::ChainGap => "chain_gap",
            FraudKind::ChainFork => "chain_fork",
            FraudKind::ClockSkew => "clock_skew",
            FraudKind::PeerOutlier => "peer_outlier",
        }
    }

    /// The rule expected to find it (`rule_id` column).
    pub fn rule_id(self) -> &'static str {
        match self {
            FraudKind::FallbackAbuseNurse => "fallback_rate_nurse",
            FraudKind::FallbackHdf => "fallback_pricier_service",
            FraudKind::ShortFallback => "short_with_fallback",
            FraudKind::SecondDialysisDay => "frequency_day",
            FraudKind::PeerOutlier => "peer_sessions",
            other => other.code(),
        }
    }

    /// The severity the rule gives it under the default configuration.
    pub fn severity(self) -> &'static str {
        match self {
            FraudKind::FallbackAbuseNurse
            | FraudKind::FallbackHdf
            | FraudKind::ShortDialysis
            | FraudKind::MissingCheckout
            | FraudKind::FrequencyWeek
            | FraudKind::PlanDepartment
            | FraudKind::PlanDoctor
            | FraudKind::ChainGap
            | FraudKind::ClockSkew
            | FraudKind::PeerOutlier => "yellow",
            _ => "red",
        }
    }

    /// Relative frequency among injected frauds.
    fn weight(self) -> f64 {
        match self {
            FraudKind::PhantomSession => 14.0,
            FraudKind::InflatedCount => 6.0,
            FraudKind::ServiceSwapped => 9.0,
            FraudKind::AmountAboveCharge => 8.0,
            FraudKind::FallbackAbuseNurse => 0.3,
            FraudKind::FallbackHdf => 4.0,
            FraudKind::ShortDialysis => 6.0,
            FraudKind::ShortFallback => 3.0,
            FraudKind::MissingCheckout => 5.0,
            FraudKind::FrequencyWeek => 5.0,
            FraudKind::SecondDialysisDay => 3.0,
            FraudKind::OverlapPlaces => 2.0,
            FraudKind::PlanHospital => 2.0,
            FraudKind::PlanDepartment => 2.0,
            FraudKind::PlanDoctor => 3.0,
            FraudKind::PlanDrug => 2.0,
            FraudKind::PlanDose => 2.0,
            FraudKind::BadSignature => 2.0,
            FraudKind::UnknownKey => 2.0,
            FraudKind::RevokedKey => 1.0,
            FraudKind::ChainGap => 2.0,
            FraudKind::ChainFork => 2.0,
            FraudKind::ClockSkew => 2.0,
            FraudKind::PeerOutlier => 0.2,
        }
    }
}

/// What a rate or peer fraud is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    None,
    Terminal(u32),
    Nurse(u32),
    Hospital(u32),
}

/// One injected fraud before ids are known.
#[derive(Debug, Clone)]
pub struct FraudDraft {
    pub kind: FraudKind,
    pub hospital: u32,
    pub patient: Option<u32>,
    pub subject: Subject,
    pub claims: Vec<u32>,
    pub sessions: Vec<u32>,
    pub note: String,
}

struct Injector<'w> {
    w: &'w mut World,
    rng: ChaCha20Rng,
    order: Vec<u32>,
    cursor: usize,
    touched: Vec<bool>,
    busy: HashSet<(u32, i64)>,
    /// Day of each patient's last honest session.
    last_seen: Vec<i64>,
    /// Dialysis sessions per nurse (built on first use).
    per_nurse: Vec<Vec<u32>>,
    /// Revoked terminals, their replacements and the revocation time.
    replaced: Vec<(u32, u32, i64)>,
    terminal_used: Vec<bool>,
    frauds: Vec<FraudDraft>,
}

/// Injects frauds at `rate` (share of sessions). Returns them in injection order.
pub fn inject(w: &mut World, seed: u64, rate: f64) -> Vec<FraudDraft> {
    let rng = ChaCha20Rng::from_seed(world::derive(seed, "fraud", &[]));
    let n_sessions = w.sessions.len();
    if rate <= 0.0 || n_sessions == 0 {
        return Vec::new();
    }
    let mut busy = HashSet::with_capacity(n_sessions * 2);
    let mut last_seen = vec![i64::MIN; w.patients.len()];
    for s in &w.sessions {
        busy.insert((s.patient, s.day()));
        last_seen[s.patient as usize] = last_seen[s.patient as usize].max(s.day());
    }
    let mut inj = Injector {
        order: (0..n_sessions as u32).collect(),
        cursor: 0,
        touched: vec![false; w.patients.len()],
        busy,
        last_seen,
        per_nurse: Vec::new(),
        replaced: Vec::new(),
        terminal_used: vec![false; w.terminals.len()],
        frauds: Vec::new(),
        rng,
        w,
    };
    for i in (1..inj.order.len()).rev() {
        let j = inj.rng.random_range(0..=i);
        inj.order.swap(i, j);
    }
    let budget = (rate * n_sessions as f64).round().max(1.0);
    let total_weight: f64 = FraudKind::ALL.iter().map(|k| k.weight()).sum();
    let count = |k: FraudKind| ((budget * k.weight() / total_weight).round() as usize).max(1);

    // Scarce, entity-level kinds first, then sessions, then chain tails.
    let n_hosp = inj.w.hospitals.len();
    for _ in 0..count(FraudKind::PeerOutlier).min((n_hosp / 12).max(1)) {
        inj.peer_outlier();
    }
    for _ in 0..count(FraudKind::RevokedKey) {
        inj.revoked_key();
    }
    inj.move_replaced();
    for _ in 0..count(FraudKind::FallbackAbuseNurse) {
        inj.fallback_abuse_nurse();
    }
    let session_kinds = [
        FraudKind::PlanDrug,
        FraudKind::PlanDose,
        FraudKind::FallbackHdf,
        FraudKind::FrequencyWeek,
        FraudKind::SecondDialysisDay,
        FraudKind::OverlapPlaces,
        FraudKind::PlanHospital,
        FraudKind::PlanDepartment,
        FraudKind::PlanDoctor,
        FraudKind::PhantomSession,
        FraudKind::InflatedCount,
        FraudKind::ServiceSwapped,
        FraudKind::AmountAboveCharge,
        FraudKind::ShortDialysis,
        FraudKind::ShortFallback,
        FraudKind::MissingCheckout,
        FraudKind::ChainFork,
        FraudKind::UnknownKey,
    ];
    // Interleave kinds so that a scarce candidate pool is shared fairly.
    let mut remaining: Vec<(FraudKind, usize)> =
        session_kinds.iter().map(|&k| (k, count(k))).collect();
    loop {
        let mut any = false;
        for (k, left) in remaining.iter_mut() {
            if *left > 0 {
                *left -= 1;
                any = true;
                inj.session_fraud(*k);
            }
        }
        if !any {
            break;
        }
    }
    let tails = [
        FraudKind::BadSignature,
        FraudKind::ChainGap,
        FraudKind::ClockSkew,
    ];
    let mut remaining: Vec<(FraudKind, usize)> = tails.iter().map(|&k| (k, count(k))).collect();
    let mut candidates = inj.tail_candidates();
    loop {
        let mut any = false;
        for (k, left) in remaining.iter_mut() {
            if *left > 0 {
                *left -= 1;
                any = true;
                inj.tail_fraud(*k, &mut candidates);
            }
        }
        if !any {
            break;
        }
    }
    inj.frauds
}

fn is_dialysis(k: TreatmentKind) -> bool {
    k.is_centre_dialysis()
}

impl Injector<'_> {
    fn first_day(&self) -> i64 {
        self.w.first_day
    }

    fn last_day(&self) -> i64 {
        self.w.first_day + i64::from(self.w.n_days) - 1
    }

    /// The next untaken session of an untouched patient satisfying `ok`.
    fn pick(&mut self, ok: impl Fn(&World, &Session) -> bool) -> Option<u32> {
        let n = self.order.len();
        for step in 0..n {
            let i = self.order[(self.cursor + step) % n];
            let s = &self.w.sessions[i as usize];
            if s.taken || self.touched[s.patient as usize] || s.flag != Flag::None {
                continue;
            }
            if !self.w.terminals[s.terminal as usize].registered {
                continue;
            }
            if ok(self.w, s) {
                self.cursor = (self.cursor + step + 1) % n;
                return Some(i);
            }
        }
        None
    }

    /// A day in `[from, to]`, Monday to Saturday, with neither session nor
    /// claim for the patient.
    fn free_day(&mut self, patient: u32, from: i64, to: i64) -> Option<i64> {
        if to < from {
            return None;
        }
        for _ in 0..60 {
            let d = self.rng.random_range(from..=to);
            if calendar::weekday(d) < 6 && !self.busy.contains(&(patient, d)) {
                return Some(d);
            }
        }
        None
    }

    fn take(&mut self, s: u32) {
        let p = self.w.sessions[s as usize].patient;
        self.w.sessions[s as usize].taken = true;
        self.touched[p as usize] = true;
    }

    fn record(&mut self, f: FraudDraft) {
        self.frauds.push(f);
    }

    fn add_claim(&mut self, c: ClaimDraft) -> u32 {
        self.busy.insert((c.patient, c.day));
        self.w.claims.push(c);
        (self.w.claims.len() - 1) as u32
    }

    /// Adds an injected session; on a replaced terminal after its
    /// revocation it runs on the replacement, like the honest ones.
    fn add_session(&mut self, mut s: Session, claimed: bool) -> u32 {
        for &(t, sibling, at) in &self.replaced {
            if s.terminal == t && s.check_in >= at {
                s.terminal = sibling;
            }
        }
        self.add_session_as_is(s, claimed)
    }

    fn add_session_as_is(&mut self, s: Session, claimed: bool) -> u32 {
        self.busy.insert((s.patient, s.day()));
        let i = self.w.push_session(s, claimed);
        self.w.sessions[i as usize].taken = true;
        i
    }

    fn supervised(&mut self, hospital: u32, dept: Dept, nurse: u32, reason: FallbackReason) -> Ev {
        Ev::Supervised {
            reason,
            witness: self.w.witness(hospital, dept, nurse),
            attempts: self.rng.random_range(0..=2),
        }
    }

    fn finger(&mut self) -> Ev {
        Ev::Finger {
            alt: false,
            score: self.rng.random_range(70..=220),
            attempts: 1,
        }
    }

    /// A new honest-looking dialysis session (fingerprint at both ends).
    #[allow(clippy::too_many_arguments)]
    fn new_dialysis(
        &mut self,
        patient: u32,
        hospital: u32,
        terminal: u32,
        bed: u16,
        nurse: u32,
        doctor: u32,
        check_in: i64,
        minutes: i64,
    ) -> Session {
        let (items, n_items) = self.w.items_for(hospital, TreatmentKind::HD, None);
        let check_out = check_in + minutes * MINUTE_MS + self.rng.random_range(0..60_000);
        Session {
            patient,
            hospital,
            dept: Dept::Neph,
            terminal,
            bed,
            kind: TreatmentKind::HD,
            nurse,
            doctor,
            drug: None,
            dose_milli: 0,
            dose_unit: "",
            check_in,
            check_out: Some(check_out),
            signed_at: check_out + self.rng.random_range(800..4000),
            ev_in: self.finger(),
            ev_out: self.finger(),
            items,
            n_items,
            skew_ms: 0,
            flag: Flag::None,
            taken: true,
        }
    }

    /// Another hospital with a dialysis centre, preferably in the same city.
    /// (Never a peer outlier: its claims per patient must stay its own.)
    fn other_hospital(&mut self, h: u32) -> Option<u32> {
        let city = self.w.hospitals[h as usize].city_code.clone();
        let outliers: Vec<u32> = self
            .frauds
            .iter()
            .filter(|f| f.kind == FraudKind::PeerOutlier)
            .map(|f| f.hospital)
            .collect();
        let same: Vec<u32> = (0..self.w.hospitals.len() as u32)
            .filter(|&o| {
                o != h && !outliers.contains(&o) && self.w.hospitals[o as usize].city_code == city
            })
            .collect();
        let pool: Vec<u32> = if same.is_empty() {
            (0..self.w.hospitals.len() as u32)
                .filter(|&o| o != h && !outliers.contains(&o))
                .collect()
        } else {
            same
        };
        if pool.is_empty() {
            None
        } else {
            Some(pool[self.rng.random_range(0..pool.len())])
        }
    }

    fn neph_staff(&mut self, h: u32) -> (u32, u32, u32) {
        let hosp = &self.w.hospitals[h as usize];
        let terms = &hosp.terminals[Dept::Neph as usize];
        let nurses = &hosp.nurses[Dept::Neph as usize];
        let doctors = &hosp.doctors[Dept::Neph as usize];
        let t = terms[self.rng.random_range(0..terms.len())];
        let n = nurses[self.rng.random_range(0..nurses.len())];
        let d = doctors[self.rng.random_range(0..doctors.len())];
        (t, n, d)
    }

    // ---- entity-level ----------------------------------------------------------

    fn peer_outlier(&mut self) {
        let w = &*self.w;
        let mut dial_count = vec![0usize; w.hospitals.len()];
        for p in &w.patients {
            if p.care == Care::Dialysis {
                dial_count[p.hospital as usize] += 1;
            }
        }
        let big: Vec<u32> = (0..w.hospitals.len() as u32)
            .filter(|&h| dial_count[h as usize] >= 10)
            .collect();
        if big.len() < 6 {
            return;
        }
        let used: Vec<u32> = self
            .frauds
            .iter()
            .filter(|f| f.kind == FraudKind::PeerOutlier)
            .map(|f| f.hospital)
            .collect();
        let pool: Vec<u32> = big.into_iter().filter(|h| !used.contains(h)).collect();
        if pool.is_empty() {
            return;
        }
        let h = pool[self.rng.random_range(0..pool.len())];
        // The first claimed session of each dialysis patient, as a template.
        let mut template: Vec<Option<u32>> = vec![None; self.w.patients.len()];
        for (ci, c) in self.w.claims.iter().enumerate() {
            if c.hospital == h && is_dialysis(c.kind) && template[c.patient as usize].is_none() {
                template[c.patient as usize] = Some(ci as u32);
            }
        }
        let mut claims = Vec::new();
        let (first, last) = (self.first_day(), self.last_day());
        for p in 0..self.w.patients.len() as u32 {
            let Some(t) = template[p as usize] else {
                continue;
            };
            if self.touched[p as usize] || !self.rng.random_bool(0.85) {
                continue;
            }
            self.touched[p as usize] = true;
            for _ in 0..self.rng.random_range(4..=5) {
                if let Some(day) = self.free_day(p, first, last) {
                    let mut c = self.w.claims[t as usize].clone();
                    c.day = day;
                    claims.push(self.add_claim(c));
                }
            }
        }
        if claims.is_empty() {
            return;
        }
        let n_claims = claims.len();
        self.record(FraudDraft {
            kind: FraudKind::PeerOutlier,
            hospital: h,
            patient: None,
            subject: Subject::Hospital(h),
            claims,
            sessions: Vec::new(),
            note: format!("{n_claims} extra dialysis sessions claimed without attendance"),
        });
    }

    fn revoked_key(&mut self) {
        let (first, last) = (self.first_day(), self.last_day());
        if last - first < 12 {
            return;
        }
        let mut pool: Vec<u32> = Vec::new();
        for h in &self.w.hospitals {
            let terms = &h.terminals[Dept::Neph as usize];
            if terms.len() >= 2 {
                pool.extend(
                    terms
                        .iter()
                        .copied()
                        .filter(|&t| !self.terminal_used[t as usize]),
                );
            }
        }
        if pool.is_empty() {
            return;
        }
        let t = pool[self.rng.random_range(0..pool.len())];
        let h = self.w.terminals[t as usize].hospital;
        let terms = self.w.hospitals[h as usize].terminals[Dept::Neph as usize].clone();
        let pos = terms.iter().position(|&x| x == t).unwrap();
        // The replacement: another terminal of the centre that is not itself
        // revoked or replaced.
        let Some(sibling) = (1..terms.len())
            .map(|k| terms[(pos + k) % terms.len()])
            .find(|&o| !self.terminal_used[o as usize])
        else {
            self.terminal_used[t as usize] = true;
            return;
        };
        let day = first + self.rng.random_range(8..=(last - first - 4));
        let revoked_at = calendar::local_ms(day, 6 * 60) + self.rng.random_range(0..50) * MINUTE_MS;
        // The department replaced the terminal: later sessions run on its
        // sibling (moved in one pass once every revocation is chosen).
        self.replaced.push((t, sibling, revoked_at));
        self.terminal_used[t as usize] = true;
        self.terminal_used[sibling as usize] = true;
        // The revoked key keeps signing fabricated sessions.
        let patients: Vec<u32> = (0..self.w.patients.len() as u32)
            .filter(|&p| {
                let pp = &self.w.patients[p as usize];
                pp.hospital == h && pp.care == Care::Dialysis && !self.touched[p as usize]
            })
            .collect();
        let mut sessions = Vec::new();
        let mut claims = Vec::new();
        let mut patient = None;
        for _ in 0..self.rng.random_range(1..=2) {
            if patients.is_empty() {
                break;
            }
            let p = patients[self.rng.random_range(0..patients.len())];
            let Some(d) = self.free_day(p, day + 1, last) else {
                continue;
            };
            self.touched[p as usize] = true;
            patient = Some(p);
            let (_, nurse, _) = self.neph_staff(h);
            let doctor = self.w.plan_on(p, d).doctors[0];
            let bed = self.w.hospitals[h as usize].beds + 1;
            let check_in =
                calendar::local_ms(d, 19 * 60) + self.rng.random_range(0..40) * MINUTE_MS;
            let minutes = self.rng.random_range(235..=255);
            let s = self.new_dialysis(p, h, t, bed as u16, nurse, doctor, check_in, minutes);
            let si = self.add_session_as_is(s, true);
            sessions.push(si);
            claims.push(self.w.claim_of[si as usize].unwrap());
        }
        self.w.terminals[t as usize].revoked_at_ms = Some(revoked_at);
        if sessions.is_empty() {
            // Nothing signed after the revocation: no fraud to report, but the
            // terminal stays revoked (an honest replacement).
            return;
        }
        let n = sessions.len();
        self.record(FraudDraft {
            kind: FraudKind::RevokedKey,
            hospital: h,
            patient: if n == 1 { patient } else { None },
            subject: Subject::Terminal(t),
            claims,
            sessions,
            note: format!("{n} session(s) signed after the key was revoked"),
        });
    }

    /// Sessions and enrolments of replaced terminals after their
    /// revocation move to the sibling terminal (fabricated ones stay).
    fn move_replaced(&mut self) {
        let mut by_terminal: Vec<Option<(u32, i64)>> = vec![None; self.w.terminals.len()];
        for &(t, sibling, at) in &self.replaced {
            by_terminal[t as usize] = Some((sibling, at));
        }
        for s in self.w.sessions.iter_mut() {
            if let Some((sibling, at)) = by_terminal[s.terminal as usize]
                && !s.taken
                && s.check_in >= at
            {
                s.terminal = sibling;
            }
        }
        for e in self.w.enrolments.iter_mut() {
            if let Some((sibling, at)) = by_terminal[e.terminal as usize]
                && e.signed_at >= at
            {
                e.terminal = sibling;
            }
        }
    }

    fn fallback_abuse_nurse(&mut self) {
        if self.per_nurse.is_empty() {
            self.per_nurse = vec![Vec::new(); self.w.staff.len()];
            for (i, s) in self.w.sessions.iter().enumerate() {
                if s.dept == Dept::Neph && s.flag == Flag::None {
                    self.per_nurse[s.nurse as usize].push(i as u32);
                }
            }
        }
        let used: Vec<u32> = self
            .frauds
            .iter()
            .filter_map(|f| match f.subject {
                Subject::Nurse(n) => Some(n),
                _ => None,
            })
            .collect();
        let pool: Vec<u32> = (0..self.w.staff.len() as u32)
            .filter(|&n| self.per_nurse[n as usize].len() >= 60 && !used.contains(&n))
            .collect();
        if pool.is_empty() {
            return;
        }
        let mut chosen = None;
        for _ in 0..10 {
            let n = pool[self.rng.random_range(0..pool.len())];
            let untaken: Vec<u32> = self.per_nurse[n as usize]
                .iter()
                .copied()
                .filter(|&i| !self.w.sessions[i as usize].taken)
                .collect();
            if untaken.len() >= 45 {
                chosen = Some((n, untaken));
                break;
            }
        }
        let Some((nurse, mine)) = chosen else { return };
        let h = self.w.staff[nurse as usize].hospital;
        let mut sessions = Vec::new();
        for &si in &mine {
            if !self.rng.random_bool(0.8) {
                continue;
            }
            let reason = if self.rng.random_bool(0.8) {
                FallbackReason::FingerprintUnreadable
            } else {
                FallbackReason::Other
            };
            let ev = self.supervised(h, Dept::Neph, nurse, reason);
            let s = &mut self.w.sessions[si as usize];
            s.ev_in = ev;
            s.ev_out = ev;
            s.taken = true;
            sessions.push(si);
        }
        let n = sessions.len();
        let total = mine.len();
        self.record(FraudDraft {
            kind: FraudKind::FallbackAbuseNurse,
            hospital: h,
            patient: None,
            subject: Subject::Nurse(nurse),
            claims: Vec::new(),
            sessions,
            note: format!("{n} of the nurse's {total} sessions attested by supervised fallback"),
        });
    }

    // ---- session-level ---------------------------------------------------------

    fn session_fraud(&mut self, kind: FraudKind) {
        for _ in 0..20 {
            if self.try_session_fraud(kind) {
                return;
            }
        }
    }

    /// One attempt; false when the picked session did not fit (it stays
    /// honest and the next attempt picks another).
    fn try_session_fraud(&mut self, kind: FraudKind) -> bool {
        let (first, last) = (self.first_day(), self.last_day());
        let pick = match kind {
            FraudKind::PlanDrug | FraudKind::PlanDose => {
                self.pick(|_, s| matches!(s.kind, TreatmentKind::CHEMO | TreatmentKind::ANTIREJECT))
            }
            FraudKind::FallbackHdf => self.pick(|_, s| s.kind == TreatmentKind::HDF),
            FraudKind::ServiceSwapped
            | FraudKind::ShortDialysis
            | FraudKind::ShortFallback
            | FraudKind::MissingCheckout
            | FraudKind::ChainFork => self.pick(|_, s| s.kind == TreatmentKind::HD),
            FraudKind::FrequencyWeek => self.pick(|w, s| {
                let ws = calendar::week_start(s.day());
                is_dialysis(s.kind)
                    && ws >= w.first_day
                    && ws + 6 < w.first_day + i64::from(w.n_days)
            }),
            FraudKind::SecondDialysisDay | FraudKind::OverlapPlaces | FraudKind::UnknownKey => {
                self.pick(|_, s| is_dialysis(s.kind))
            }
            FraudKind::PhantomSession | FraudKind::PlanHospital => {
                self.pick(|_, s| is_dialysis(s.kind) || s.kind == TreatmentKind::RADIO)
            }
            _ => self.pick(|_, _| true),
        };
        let Some(si) = pick else { return true };
        let s = self.w.sessions[si as usize].clone();
        let Some(ci) = self.w.claim_of[si as usize] else {
            return false;
        };
        let p = s.patient;
        let h = s.hospital;
        let mut draft = FraudDraft {
            kind,
            hospital: h,
            patient: Some(p),
            subject: Subject::None,
            claims: vec![ci],
            sessions: vec![si],
            note: String::new(),
        };
        match kind {
            FraudKind::PhantomSession => {
                // Some claims continue after the patient's last visit.
                let last_seen = self.last_seen[p as usize];
                let from = if self.rng.random_bool(0.3) {
                    last_seen + 1
                } else {
                    first
                };
                let Some(day) = self
                    .free_day(p, from, last)
                    .or_else(|| self.free_day(p, first, last))
                else {
                    return false;
                };
                let note = if day > last_seen {
                    "claimed after the patient's last attested session"
                } else {
                    "claimed on a day without an attested session"
                };
                let mut c = self.w.claims[ci as usize].clone();
                c.day = day;
                let new = self.add_claim(c);
                draft.claims = vec![new];
                draft.sessions = Vec::new();
                draft.note = note.into();
            }
            FraudKind::InflatedCount => {
                let c = &mut self.w.claims[ci as usize];
                c.quantity = 2;
                c.amount_fen *= 2;
                draft.note = "2 sessions claimed, 1 attested".into();
            }
            FraudKind::ServiceSwapped => {
                let to = match self.rng.random_range(0..10) {
                    0..7 => TreatmentKind::HDF,
                    7..9 => TreatmentKind::HF,
                    _ => TreatmentKind::HP,
                };
                let (items, n) = self.w.items_for(h, to, None);
                let c = &mut self.w.claims[ci as usize];
                c.kind = to;
                c.service_code = catalog::service_code(to);
                c.amount_fen = items[..n as usize].iter().map(|i| i.1).sum();
                draft.note = format!("{} claimed, HD attested", to.code());
            }
            FraudKind::AmountAboveCharge => {
                let c = &mut self.w.claims[ci as usize];
                let pct = self.rng.random_range(110..=140u64);
                c.amount_fen = (c.amount_fen * pct / 100).div_ceil(100) * 100;
                draft.note = format!("claimed {pct}% of the bound charge");
            }
            FraudKind::FallbackHdf => {
                let ev_in =
                    self.supervised(h, s.dept, s.nurse, FallbackReason::FingerprintUnreadable);
                let ev_out =
                    self.supervised(h, s.dept, s.nurse, FallbackReason::FingerprintUnreadable);
                let x = &mut self.w.sessions[si as usize];
                x.ev_in = ev_in;
                x.ev_out = ev_out;
                draft.note = "HDF claimed on a supervised-fallback session".into();
            }
            FraudKind::ShortDialysis | FraudKind::ShortFallback => {
                let minutes = self.rng.random_range(95..=150);
                let out = s.check_in + minutes * MINUTE_MS + self.rng.random_range(0..60_000);
                let signed = out + self.rng.random_range(800..4000);
                let fallback = kind == FraudKind::ShortFallback;
                let ev_out = if fallback {
                    Some(self.supervised(h, s.dept, s.nurse, FallbackReason::FingerprintUnreadable))
                } else {
                    None
                };
                let ev_in = if fallback && self.rng.random_bool(0.5) {
                    Some(self.supervised(h, s.dept, s.nurse, FallbackReason::FingerprintUnreadable))
                } else {
                    None
                };
                let x = &mut self.w.sessions[si as usize];
                x.check_out = Some(out);
                x.signed_at = signed;
                if let Some(e) = ev_out {
                    x.ev_out = e;
                }
                if let Some(e) = ev_in {
                    x.ev_in = e;
                }
                draft.note = if fallback {
                    format!(
                        "{minutes} min dialysis attested by supervised fallback, claimed in full"
                    )
                } else {
                    format!("{minutes} min dialysis claimed in full")
                };
            }
            FraudKind::MissingCheckout => {
                let close = s.check_in + 6 * 60 * MINUTE_MS + self.rng.random_range(0..600_000);
                let x = &mut self.w.sessions[si as usize];
                x.check_out = None;
                x.signed_at = close;
                draft.note = "checked in only, claimed as a full session".into();
            }
            FraudKind::FrequencyWeek => {
                let ws = calendar::week_start(s.day());
                let max = self.w.plan_on(p, s.day()).max_per_week.unwrap_or(3);
                let in_week = (ws..ws + 7)
                    .filter(|d| self.busy.contains(&(p, *d)))
                    .count();
                if in_week < usize::from(max) {
                    return false;
                }
                let Some(day) = self.free_day(p, ws, ws + 5) else {
                    return false;
                };
                let (t, nurse, bed) = (s.terminal, s.nurse, s.bed);
                let check_in = calendar::local_ms(day, 17 * 60 + 30)
                    + self.rng.random_range(0..30) * MINUTE_MS;
                let minutes = self.rng.random_range(235..=255);
                let new = self.new_dialysis(p, h, t, bed, nurse, s.doctor, check_in, minutes);
                let ni = self.add_session(new, true);
                draft.sessions = vec![ni];
                draft.claims = vec![self.w.claim_of[ni as usize].unwrap()];
                draft.note = "an extra session beyond the plan's weekly count".into();
            }
            FraudKind::SecondDialysisDay | FraudKind::OverlapPlaces => {
                let Some(b) = self.other_hospital(h) else {
                    return false;
                };
                let (t, nurse, doctor) = self.neph_staff(b);
                let out = s.check_out.unwrap_or(s.signed_at);
                let in_local = (s.check_in - calendar::local_ms(s.day(), 0)) / MINUTE_MS;
                let check_in = if kind == FraudKind::OverlapPlaces {
                    s.check_in + self.rng.random_range(60..=120) * MINUTE_MS
                } else if in_local < 11 * 60 {
                    out + self.rng.random_range(90..=150) * MINUTE_MS
                } else {
                    calendar::local_ms(s.day(), 6 * 60 + 20)
                };
                if kind == FraudKind::SecondDialysisDay
                    && (11 * 60..11 * 60 + 30).contains(&in_local)
                {
                    return false;
                }
                let bed = self.w.hospitals[b as usize].beds as u16 + 1;
                let minutes = if kind == FraudKind::SecondDialysisDay && in_local >= 11 * 60 {
                    self.rng
                        .random_range(200..=(in_local - 6 * 60 - 40).clamp(201, 240))
                } else {
                    self.rng.random_range(230..=250)
                };
                let new = self.new_dialysis(p, b, t, bed, nurse, doctor, check_in, minutes);
                if calendar::local_day(new.check_in) != s.day() {
                    return false;
                }
                let ni = self.add_session(new, true);
                draft.hospital = b;
                draft.sessions = vec![ni, si];
                draft.claims = vec![self.w.claim_of[ni as usize].unwrap()];
                draft.note = if kind == FraudKind::OverlapPlaces {
                    "attested at two hospitals at overlapping times".into()
                } else {
                    "a second centre dialysis the same day at another hospital".into()
                };
            }
            FraudKind::PlanHospital => {
                let Some(b) = self.other_hospital(h) else {
                    return false;
                };
                let (_, _, doctor) = self.neph_staff(b);
                let c = &mut self.w.claims[ci as usize];
                c.hospital = b;
                c.dept = Dept::Neph.code();
                c.doctor = doctor;
                draft.hospital = b;
                draft.note = "claimed by a hospital other than the plan's".into();
            }
            FraudKind::PlanDepartment => {
                let hosp = &self.w.hospitals[h as usize];
                let other = hosp
                    .depts
                    .iter()
                    .map(|d| d.code())
                    .find(|&d| d != s.dept.code())
                    .unwrap_or(if s.dept == Dept::Neph { "ICU" } else { "NEPH" });
                self.w.claims[ci as usize].dept = other;
                draft.note = format!("claimed under {other}, plan department {}", s.dept.code());
            }
            FraudKind::PlanDoctor => {
                let plan_doctors = self.w.plan_on(p, s.day()).doctors.clone();
                let hosp = &self.w.hospitals[h as usize];
                let others: Vec<u32> = hosp
                    .doctors
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|d| !plan_doctors.contains(d))
                    .collect();
                if others.is_empty() {
                    return false;
                }
                let d = others[self.rng.random_range(0..others.len())];
                self.w.claims[ci as usize].doctor = d;
                draft.note = "claimed under a doctor outside the plan".into();
            }
            FraudKind::PlanDrug => {
                let drug = s.drug.unwrap();
                let hosp = &self.w.hospitals[h as usize];
                let others: Vec<usize> = catalog::drugs_of(s.kind)
                    .into_iter()
                    .filter(|&d| d != drug && hosp.prices.iter().any(|(c, _)| *c == DRUGS[d].code))
                    .collect();
                if others.is_empty() {
                    return false;
                }
                let d = others[self.rng.random_range(0..others.len())];
                let price = hosp.price(DRUGS[d].code) + s.items[0].1;
                let c = &mut self.w.claims[ci as usize];
                c.drug = Some(DRUGS[d].code);
                c.amount_fen = c.amount_fen.max(price);
                draft.note = format!("{} claimed, plan drug {}", DRUGS[d].code, DRUGS[drug].code);
            }
            FraudKind::PlanDose => {
                let plan_max = self.w.plan_on(p, s.day()).max_dose_milli;
                let step = DRUGS[s.drug.unwrap()].dose_step_milli;
                let pct = self.rng.random_range(120..=150u64);
                let dose = (plan_max * pct / 100).div_ceil(step) * step;
                self.w.claims[ci as usize].dose_milli = dose;
                draft.note = format!("dose {pct}% of the plan's maximum claimed");
            }
            FraudKind::ChainFork => {
                let mut fork = s.clone();
                let to = TreatmentKind::HDF;
                let (items, n) = self.w.items_for(h, to, None);
                fork.kind = to;
                fork.items = items;
                fork.n_items = n;
                fork.flag = Flag::ForkOf(si);
                fork.taken = true;
                fork.signed_at += self.rng.random_range(1_000..60_000);
                let fi = self.w.sessions.len() as u32;
                self.w.sessions.push(fork);
                self.w.claim_of.push(None);
                let c = &mut self.w.claims[ci as usize];
                c.kind = to;
                c.service_code = catalog::service_code(to);
                c.amount_fen = items[..n as usize].iter().map(|i| i.1).sum();
                draft.sessions = vec![fi, si];
                draft.subject = Subject::Terminal(s.terminal);
                draft.note =
                    "a second record (HDF) signed at the seq of an HD session; HDF claimed".into();
            }
            FraudKind::UnknownKey => {
                let Some(day) = self.free_day(p, first, last) else {
                    return false;
                };
                let hosp = &mut self.w.hospitals[h as usize];
                let no = hosp.next_terminal_no.max(90);
                if no > 99 {
                    return false;
                }
                hosp.next_terminal_no = no + 1;
                let id = format!("T-{}-{no:02}", hosp.code);
                let t = self.w.terminals.len() as u32;
                self.w.terminals.push(Terminal {
                    signer: wuding_protocol::TerminalSigner::from_seed(&world::derive(
                        self.w.cfg_seed,
                        "rogue-key",
                        id.as_bytes(),
                    )),
                    id,
                    hospital: h,
                    dept: Dept::Neph,
                    approved_at_ms: 0,
                    revoked_at_ms: None,
                    registered: false,
                    outage: None,
                });
                self.terminal_used.push(true);
                let in_local = (s.check_in - calendar::local_ms(s.day(), 0)) / MINUTE_MS;
                let check_in = calendar::local_ms(day, in_local);
                let minutes = self.rng.random_range(235..=255);
                let new = self.new_dialysis(p, h, t, s.bed, s.nurse, s.doctor, check_in, minutes);
                let ni = self.add_session(new, true);
                draft.sessions = vec![ni];
                draft.claims = vec![self.w.claim_of[ni as usize].unwrap()];
                draft.subject = Subject::Terminal(t);
                draft.note = "a session signed by a key that was never registered".into();
            }
            _ => unreachable!("not a session fraud: {kind:?}"),
        }
        self.take(si);
        self.record(draft);
        true
    }

    // ---- chain tails -------------------------------------------------------------

    /// Terminals whose last two records are untouched honest sessions:
    /// (terminal, second-to-last, last).
    fn tail_candidates(&mut self) -> Vec<(u32, u32, u32)> {
        let n = self.w.terminals.len();
        let mut top: Vec<[Option<(i64, u32)>; 2]> = vec![[None, None]; n];
        for (i, s) in self.w.sessions.iter().enumerate() {
            if matches!(s.flag, Flag::ForkOf(_)) {
                continue;
            }
            let key = (s.signed_at, i as u32);
            let t = &mut top[s.terminal as usize];
            if t[1].is_none_or(|x| key > x) {
                t[0] = t[1];
                t[1] = Some(key);
            } else if t[0].is_none_or(|x| key > x) {
                t[0] = Some(key);
            }
        }
        let mut last_enrolment = vec![i64::MIN; n];
        for e in &self.w.enrolments {
            last_enrolment[e.terminal as usize] =
                last_enrolment[e.terminal as usize].max(e.signed_at);
        }
        let mut out = Vec::new();
        for t in 0..n {
            let term = &self.w.terminals[t];
            if !term.registered || term.revoked_at_ms.is_some() || self.terminal_used[t] {
                continue;
            }
            let [Some(a), Some(b)] = top[t] else { continue };
            let (sa, sb) = (
                &self.w.sessions[a.1 as usize],
                &self.w.sessions[b.1 as usize],
            );
            if sa.taken || sb.taken || sa.flag != Flag::None || sb.flag != Flag::None {
                continue;
            }
            if last_enrolment[t] >= a.0 {
                continue;
            }
            out.push((t as u32, a.1, b.1));
        }
        for i in (1..out.len()).rev() {
            let j = self.rng.random_range(0..=i);
            out.swap(i, j);
        }
        out
    }

    fn tail_fraud(&mut self, kind: FraudKind, candidates: &mut Vec<(u32, u32, u32)>) {
        while let Some((t, before, last)) = candidates.pop() {
            if self.try_tail_fraud(kind, t, before, last) {
                return;
            }
        }
    }

    fn try_tail_fraud(&mut self, kind: FraudKind, t: u32, before: u32, last: u32) -> bool {
        self.terminal_used[t as usize] = true;
        let s = self.w.sessions[last as usize].clone();
        let mut draft = FraudDraft {
            kind,
            hospital: s.hospital,
            patient: Some(s.patient),
            subject: Subject::Terminal(t),
            claims: self.w.claim_of[last as usize].into_iter().collect(),
            sessions: vec![last],
            note: String::new(),
        };
        match kind {
            FraudKind::BadSignature => {
                self.w.sessions[last as usize].flag = Flag::Tampered;
                draft.note = "payload altered after signing (check-in moved earlier)".into();
            }
            FraudKind::ClockSkew => {
                let hours = self.rng.random_range(2..=4i64);
                let skew = hours * 3_600_000 + self.rng.random_range(0..3_600_000);
                let x = &mut self.w.sessions[last as usize];
                if calendar::local_day(x.check_in + skew) != x.day() {
                    self.terminal_used[t as usize] = false;
                    return false;
                }
                x.skew_ms = skew;
                x.check_in += skew;
                x.check_out = x.check_out.map(|o| o + skew);
                x.signed_at += skew;
                draft.note = format!("terminal clock {hours} h ahead");
            }
            FraudKind::ChainGap => {
                self.w.sessions[before as usize].flag = Flag::Deleted;
                let b = self.w.sessions[before as usize].clone();
                draft.patient = Some(b.patient);
                draft.hospital = b.hospital;
                draft.claims = self.w.claim_of[before as usize].into_iter().collect();
                draft.claims.extend(self.w.claim_of[last as usize]);
                draft.note =
                    "the previous record was deleted from the upload; this one is held".into();
                self.w.sessions[before as usize].taken = true;
                self.touched[b.patient as usize] = true;
            }
            _ => unreachable!(),
        }
        self.w.sessions[last as usize].taken = true;
        self.touched[s.patient as usize] = true;
        self.record(draft);
        true
    }
}
