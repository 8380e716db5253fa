//! The generated region's catalogue: service codes, consumables, drugs and
//! the price bands hospitals draw their prices from.

use wuding_protocol::TreatmentKind;

/// Departments that treat special diseases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dept {
    /// Nephrology: the dialysis centre (HD, HDF, HF, HP, PD visits).
    Neph,
    /// Oncology day ward (chemotherapy).
    Onc,
    /// Radiotherapy.
    Rad,
    /// Transplant clinic (anti-rejection dispensing).
    Tx,
}

impl Dept {
    pub fn code(self) -> &'static str {
        match self {
            Dept::Neph => "NEPH",
            Dept::Onc => "ONC",
            Dept::Rad => "RAD",
            Dept::Tx => "TX",
        }
    }
}

/// The service code billed for one session of a kind (national service
/// catalogue style, 15 digits).
pub fn service_code(kind: TreatmentKind) -> &'static str {
    match kind {
        TreatmentKind::HD => "003105010010000",
        TreatmentKind::HF => "003105010020000",
        TreatmentKind::HDF => "003105010030000",
        TreatmentKind::HP => "003105010060000",
        TreatmentKind::PD => "003105010070000",
        TreatmentKind::CHEMO => "003110000030000",
        TreatmentKind::RADIO => "003302000140000",
        TreatmentKind::ANTIREJECT => "003109000010000",
    }
}

/// The consumable charged with a session of a kind, if any.
pub fn consumable_code(kind: TreatmentKind) -> Option<&'static str> {
    match kind {
        TreatmentKind::HD => Some("C-DIALYSER-LF"),
        TreatmentKind::HDF | TreatmentKind::HF => Some("C-DIALYSER-HF"),
        TreatmentKind::HP => Some("C-HP-CARTRIDGE"),
        _ => None,
    }
}

/// A priced code and its band in fen (inclusive), rounded to whole yuan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceBand {
    pub code: &'static str,
    pub min_fen: u64,
    pub max_fen: u64,
}

/// A 五定 drug: ATC code, how a plan doses it, and its price per dispensing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drug {
    pub code: &'static str,
    pub kind: TreatmentKind,
    /// Typical plan dose range, in thousandths of `unit`.
    pub dose_milli: (u64, u64),
    /// Plan doses are multiples of this (thousandths of `unit`).
    pub dose_step_milli: u64,
    pub unit: &'static str,
    /// Days between administrations or dispensings (a chemotherapy cycle).
    pub cycle_days: u32,
    /// Second administration in the cycle (day 8 regimens), if any.
    pub day8: bool,
    /// Infusion or visit length in minutes (min, max).
    pub minutes: (i64, i64),
    /// Price per dispensing, fen.
    pub price_fen: (u64, u64),
}

const MG: u64 = 1000;

pub const DRUGS: [Drug; 11] = [
    Drug {
        code: "L01XA03",
        kind: TreatmentKind::CHEMO,
        dose_milli: (150 * MG, 260 * MG),
        dose_step_milli: 10 * MG,
        unit: "mg",
        cycle_days: 14,
        day8: false,
        minutes: (150, 200),
        price_fen: (60_000, 120_000),
    },
    Drug {
        code: "L01XA01",
        kind: TreatmentKind::CHEMO,
        dose_milli: (100 * MG, 150 * MG),
        dose_step_milli: 5 * MG,
        unit: "mg",
        cycle_days: 21,
        day8: false,
        minutes: (180, 300),
        price_fen: (8_000, 20_000),
    },
    Drug {
        code: "L01CD01",
        kind: TreatmentKind::CHEMO,
        dose_milli: (240 * MG, 330 * MG),
        dose_step_milli: 10 * MG,
        unit: "mg",
        cycle_days: 21,
        day8: false,
        minutes: (200, 260),
        price_fen: (90_000, 180_000),
    },
    Drug {
        code: "L01DB01",
        kind: TreatmentKind::CHEMO,
        dose_milli: (80 * MG, 120 * MG),
        dose_step_milli: 5 * MG,
        unit: "mg",
        cycle_days: 21,
        day8: false,
        minutes: (60, 120),
        price_fen: (20_000, 45_000),
    },
    Drug {
        code: "L01BC05",
        kind: TreatmentKind::CHEMO,
        dose_milli: (1400 * MG, 1900 * MG),
        dose_step_milli: 50 * MG,
        unit: "mg",
        cycle_days: 21,
        day8: true,
        minutes: (60, 90),
        price_fen: (30_000, 70_000),
    },
    Drug {
        code: "L01BA04",
        kind: TreatmentKind::CHEMO,
        dose_milli: (700 * MG, 950 * MG),
        dose_step_milli: 50 * MG,
        unit: "mg",
        cycle_days: 21,
        day8: false,
        minutes: (60, 90),
        price_fen: (150_000, 260_000),
    },
    Drug {
        code: "L01XC03",
        kind: TreatmentKind::CHEMO,
        dose_milli: (300 * MG, 480 * MG),
        dose_step_milli: 10 * MG,
        unit: "mg",
        cycle_days: 21,
        day8: false,
        minutes: (90, 150),
        price_fen: (300_000, 560_000),
    },
    Drug {
        code: "L01XC07",
        kind: TreatmentKind::CHEMO,
        dose_milli: (300 * MG, 500 * MG),
        dose_step_milli: 50 * MG,
        unit: "mg",
        cycle_days: 14,
        day8: false,
        minutes: (90, 120),
        price_fen: (200_000, 380_000),
    },
    Drug {
        code: "L04AD02",
        kind: TreatmentKind::ANTIREJECT,
        dose_milli: (28 * MG, 112 * MG),
        dose_step_milli: 14 * MG,
        unit: "mg",
        cycle_days: 28,
        day8: false,
        minutes: (6, 20),
        price_fen: (40_000, 120_000),
    },
    Drug {
        code: "L04AA06",
        kind: TreatmentKind::ANTIREJECT,
        dose_milli: (28_000 * MG, 56_000 * MG),
        dose_step_milli: 14_000 * MG,
        unit: "mg",
        cycle_days: 28,
        day8: false,
        minutes: (6, 20),
        price_fen: (50_000, 110_000),
    },
    Drug {
        code: "L04AD01",
        kind: TreatmentKind::ANTIREJECT,
        dose_milli: (4_200 * MG, 8_400 * MG),
        dose_step_milli: 1_400 * MG,
        unit: "mg",
        cycle_days: 14,
        day8: false,
        minutes: (6, 20),
        price_fen: (60_000, 140_000),
    },
];

/// The drugs of a kind.
pub fn drugs_of(kind: TreatmentKind) -> Vec<usize> {
    (0..DRUGS.len())
        .filter(|&i| DRUGS[i].kind == kind)
        .collect()
}

/// Price bands for every priced code (fen, inclusive). Dialysis sessions
/// follow `ScenarioConfig`'s bands; the rest are fixed here.
pub fn default_bands() -> Vec<PriceBand> {
    let band = |code, min_yuan: u64, max_yuan: u64| PriceBand {
        code,
        min_fen: min_yuan * 100,
        max_fen: max_yuan * 100,
    };
    vec![
        band(service_code(TreatmentKind::HD), 400, 500),
        band(service_code(TreatmentKind::HDF), 600, 800),
        band(service_code(TreatmentKind::HF), 550, 700),
        band(service_code(TreatmentKind::HP), 300, 420),
        band(service_code(TreatmentKind::PD), 40, 80),
        band(service_code(TreatmentKind::CHEMO), 30, 60),
        band(service_code(TreatmentKind::RADIO), 600, 1200),
        band(service_code(TreatmentKind::ANTIREJECT), 10, 25),
        band("C-DIALYSER-LF", 80, 150),
        band("C-DIALYSER-HF", 180, 280),
        band("C-HP-CARTRIDGE", 700, 1100),
    ]
}
