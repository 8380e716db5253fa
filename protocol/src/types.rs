//! Domain vocabulary shared by every record type: treatments, money, doses,
//! fingers, identity evidence.
//!
//! These types are part of the signed wire format (see `docs/protocol.md`):
//! renaming a variant or a field changes the bytes that terminals sign.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A short identifier or catalogue code (insured id, hospital, department,
/// doctor, nurse, terminal, claim id, service or drug code): kept inline,
/// without a heap allocation, up to 24 bytes, which the codes of a fund fit
/// in practice (longer ones are kept on the heap). A national month holds
/// tens of millions of them (`docs/rules.md`, "Inline codes"). Compares,
/// hashes and serialises as the text it holds.
pub type Code = compact_str::CompactString;

/// Largest money amount a record may carry, in fen (10 billion yuan).
/// Kept below 2^53 so that every JSON implementation reads it exactly.
pub const MAX_FEN: u64 = 1_000_000_000_000;

/// Largest integer the format allows anywhere (2^53 - 1), so JavaScript and
/// other double-based JSON readers see exact values.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The kind of treatment a session delivers. The claim CSV's `service_kind`
/// uses the same codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TreatmentKind {
    /// Haemodialysis.
    HD,
    /// Haemodiafiltration.
    HDF,
    /// Haemofiltration.
    HF,
    /// Haemoperfusion.
    HP,
    /// Peritoneal dialysis (clinic visit or supply pick-up).
    PD,
    /// Chemotherapy administration.
    CHEMO,
    /// Radiotherapy fraction.
    RADIO,
    /// Post-transplant anti-rejection drug dispensing.
    ANTIREJECT,
}

impl TreatmentKind {
    /// Every kind, in wire order.
    pub const ALL: [TreatmentKind; 8] = [
        TreatmentKind::HD,
        TreatmentKind::HDF,
        TreatmentKind::HF,
        TreatmentKind::HP,
        TreatmentKind::PD,
        TreatmentKind::CHEMO,
        TreatmentKind::RADIO,
        TreatmentKind::ANTIREJECT,
    ];

    /// The code as it appears on the wire and in claims.
    pub fn code(self) -> &'static str {
        match self {
            TreatmentKind::HD => "HD",
            TreatmentKind::HDF => "HDF",
            TreatmentKind::HF => "HF",
            TreatmentKind::HP => "HP",
            TreatmentKind::PD => "PD",
            TreatmentKind::CHEMO => "CHEMO",
            TreatmentKind::RADIO => "RADIO",
            TreatmentKind::ANTIREJECT => "ANTIREJECT",
        }
    }

    /// Parses a wire/claims code (exact, upper case).
    pub fn from_code(code: &str) -> Option<TreatmentKind> {
        TreatmentKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Extracorporeal dialysis done in the centre (at most one a day).
    pub fn is_centre_dialysis(self) -> bool {
        matches!(
            self,
            TreatmentKind::HD | TreatmentKind::HDF | TreatmentKind::HF | TreatmentKind::HP
        )
    }

    /// Kinds whose 五定 plan fixes a drug and dose, so a record must name both.
    pub fn requires_drug(self) -> bool {
        matches!(self, TreatmentKind::CHEMO | TreatmentKind::ANTIREJECT)
    }
}

impl fmt::Display for TreatmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A dose in thousandths of `unit` (75 mg is `{amount_milli: 75000, unit: "mg"}`).
/// Integers only, so that comparisons against a plan are exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dose {
    pub amount_milli: u64,
    pub unit: String,
}

impl Dose {
    /// Parses a decimal amount with at most three fractional digits, exactly
    /// (no floating point): `"75"`, `"1.5"`, `"0.125"`.
    pub fn parse_decimal(amount: &str, unit: &str) -> Result<Dose, FieldError> {
        let amount_milli = parse_fixed_point(amount, 3).ok_or(FieldError {
            field: "dose",
            reason: "not a decimal number with at most three fractional digits",
        })?;
        let dose = Dose {
            amount_milli,
            unit: unit.to_owned(),
        };
        dose.validate()?;
        Ok(dose)
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        if self.amount_milli == 0 || self.amount_milli > MAX_SAFE_INTEGER {
            return Err(FieldError::new(
                "dose.amount_milli",
                "must be between 1 and 2^53-1",
            ));
        }
        check_code("dose.unit", &self.unit, 16)
    }
}

impl fmt::Display for Dose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.amount_milli / 1000;
        let frac = self.amount_milli % 1000;
        if frac == 0 {
            write!(f, "{whole} {}", self.unit)
        } else {
            let s = format!("{frac:03}");
            write!(f, "{whole}.{} {}", s.trim_end_matches('0'), self.unit)
        }
    }
}

/// Parses a non-negative decimal string into an integer scaled by
/// 10^`scale`, exactly. Rejects signs, exponents, spaces and more fractional
/// digits than `scale`. Used for yuan -> fen and dose conversions.
pub fn parse_fixed_point(text: &str, scale: u32) -> Option<u64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || whole.len() > 15 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > scale as usize || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.contains('.') && frac.is_empty() {
        return None;
    }
    let mut value: u64 = whole.parse().ok()?;
    value = value.checked_mul(10u64.pow(scale))?;
    let mut frac_value: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    frac_value *= 10u64.pow(scale - frac.len() as u32);
    value.checked_add(frac_value)
}

/// Formats fen as yuan with two decimals (`12345` -> `"123.45"`).
pub fn format_yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// One line of the charge bound into a session record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeItem {
    /// Service or drug code from the hospital's price list (national
    /// catalogue code where one exists).
    pub code: String,
    pub quantity: u32,
    pub unit_price_fen: u64,
    /// `quantity * unit_price_fen`, checked on decode.
    pub amount_fen: u64,
}

impl ChargeItem {
    pub fn new(code: impl Into<String>, quantity: u32, unit_price_fen: u64) -> ChargeItem {
        ChargeItem {
            code: code.into(),
            quantity,
            unit_price_fen,
            amount_fen: unit_price_fen.saturating_mul(u64::from(quantity)),
        }
    }
}

/// The charge computed at the bedside from the price list and what was
/// dispensed. All amounts are integer fen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    pub items: Vec<ChargeItem>,
    /// Sum of the items' amounts, checked on decode.
    pub total_fen: u64,
}

impl Charge {
    /// Builds a charge whose total is the sum of its items.
    pub fn from_items(items: Vec<ChargeItem>) -> Charge {
        let total_fen = items
            .iter()
            .map(|i| i.amount_fen)
            .fold(0u64, u64::saturating_add);
        Charge { items, total_fen }
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        if self.items.len() > 64 {
            return Err(FieldError::new("charge.items", "more than 64 items"));
        }
        let mut sum: u64 = 0;
        for item in &self.items {
            check_code("charge.items.code", &item.code, 32)?;
            if item.quantity == 0 {
                return Err(FieldError::new(
                    "charge.items.quantity",
                    "must be at least 1",
                ));
            }
            if item.unit_price_fen > MAX_FEN {
                return Err(FieldError::new(
                    "charge.items.unit_price_fen",
                    "above the maximum amount",
                ));
            }
            let expected = item
                .unit_price_fen
                .checked_mul(u64::from(item.quantity))
                .filter(|a| *a <= MAX_FEN)
                .ok_or(FieldError::new(
                    "charge.items.amount_fen",
                    "above the maximum amount",
                ))?;
            if expected != item.amount_fen {
                return Err(FieldError::new(
                    "charge.items.amount_fen",
                    "is not quantity times unit_price_fen",
                ));
            }
            sum = sum
                .checked_add(item.amount_fen)
                .filter(|s| *s <= MAX_FEN)
                .ok_or(FieldError::new(
                    "charge.total_fen",
                    "above the maximum amount",
                ))?;
        }
        if sum != self.total_fen {
            return Err(FieldError::new(
                "charge.total_fen",
                "is not the sum of the items",
            ));
        }
        Ok(())
    }
}

/// A finger, named as the nurse asks for it ("right index").
/// Dialysis patients are enrolled on the hand without the fistula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finger {
    LeftThumb,
    LeftIndex,
    LeftMiddle,
    LeftRing,
    LeftLittle,
    RightThumb,
    RightIndex,
    RightMiddle,
    RightRing,
    RightLittle,
}

impl Finger {
    pub const ALL: [Finger; 10] = [
        Finger::LeftThumb,
        Finger::LeftIndex,
        Finger::LeftMiddle,
        Finger::LeftRing,
        Finger::LeftLittle,
        Finger::RightThumb,
        Finger::RightIndex,
        Finger::RightMiddle,
        Finger::RightRing,
        Finger::RightLittle,
    ];

    /// The wire name (`"left_index"`).
    pub fn code(self) -> &'static str {
        match self {
            Finger::LeftThumb => "left_thumb",
            Finger::LeftIndex => "left_index",
            Finger::LeftMiddle => "left_middle",
            Finger::LeftRing => "left_ring",
            Finger::LeftLittle => "left_little",
            Finger::RightThumb => "right_thumb",
            Finger::RightIndex => "right_index",
            Finger::RightMiddle => "right_middle",
            Finger::RightRing => "right_ring",
            Finger::RightLittle => "right_little",
        }
    }

    pub fn from_code(code: &str) -> Option<Finger> {
        Finger::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The finger's name as a nurse says it, in Chinese.
    pub fn name_zh(self) -> &'static str {
        match self {
            Finger::LeftThumb => "左手拇指",
            Finger::LeftIndex => "左手食指",
            Finger::LeftMiddle => "左手中指",
            Finger::LeftRing => "左手无名指",
            Finger::LeftLittle => "左手小指",
            Finger::RightThumb => "右手拇指",
            Finger::RightIndex => "右手食指",
            Finger::RightMiddle => "右手中指",
            Finger::RightRing => "右手无名指",
            Finger::RightLittle => "右手小指",
        }
    }

    /// The finger's name in English ("left index finger").
    pub fn name_en(self) -> String {
        let c = self.code().replace('_', " ");
        if c.ends_with("thumb") {
            c
        } else {
            format!("{c} finger")
        }
    }
}

/// Why a session was attested by a supervised fallback instead of a
/// fingerprint match. Rates of each are watched per terminal, nurse and
/// patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FallbackReason {
    /// Dry, worn or damaged fingertips that the module cannot read.
    FingerprintUnreadable,
    /// Bandaged or injured finger(s); no enrolled finger available.
    FingerInjured,
    /// The fingerprint module or card reader is out of order.
    DeviceFault,
    /// The patient's template is not on this terminal yet (roster not synced).
    TemplateUnavailable,
    /// Anything else; the nurse's note stays in the local audit log.
    Other,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 5] = [
        FallbackReason::FingerprintUnreadable,
        FallbackReason::FingerInjured,
        FallbackReason::DeviceFault,
        FallbackReason::TemplateUnavailable,
        FallbackReason::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            FallbackReason::FingerprintUnreadable => "FINGERPRINT_UNREADABLE",
            FallbackReason::FingerInjured => "FINGER_INJURED",
            FallbackReason::DeviceFault => "DEVICE_FAULT",
            FallbackReason::TemplateUnavailable => "TEMPLATE_UNAVAILABLE",
            FallbackReason::Other => "OTHER",
        }
    }

    /// The reason of a code written by [`FallbackReason::code`].
    pub fn from_code(code: &str) -> Option<FallbackReason> {
        FallbackReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// How the patient's presence was established at one moment of a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum IdentityEvidence {
    /// 1:1 match on the module against the patient's enrolled template.
    Fingerprint {
        finger: Finger,
        /// The module's match score (R30x family: 0..=65535, typically
        /// 50..300 for a genuine finger).
        score: u16,
        /// Keyed reference to the template matched against; never the
        /// template itself.
        template_ref: TemplateRef,
        /// Captures taken, the successful one included (1 = first try).
        attempts: u8,
    },
    /// Fingerprint failed or was impossible; a second staff member confirmed
    /// the patient's identity in person.
    Supervised {
        reason: FallbackReason,
        /// The nurse who ran the session.
        nurse_id: String,
        /// The second staff member who confirmed the patient in person.
        witness_id: String,
        /// Fingerprint captures tried before falling back (0 if none).
        attempts: u8,
    },
}

impl IdentityEvidence {
    pub fn is_fingerprint(&self) -> bool {
        matches!(self, IdentityEvidence::Fingerprint { .. })
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        match self {
            IdentityEvidence::Fingerprint { attempts, .. } => {
                if *attempts == 0 {
                    return Err(FieldError::new(
                        "identity.attempts",
                        "a match needs at least one capture",
                    ));
                }
                Ok(())
            }
            IdentityEvidence::Supervised {
                nurse_id,
                witness_id,
                ..
            } => {
                check_code("identity.nurse_id", nurse_id, 32)?;
                check_code("identity.witness_id", witness_id, 32)?;
                if nurse_id == witness_id {
                    return Err(FieldError::new(
                        "identity.witness_id",
                        "the witness must be a second staff member",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// HMAC-SHA-256 of a fingerprint template under the roster's template key,
/// domain-separated (see [`crate::template_ref`]). Lets the server tell which
/// template was used without ever holding it in a record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateRef(pub [u8; 32]);

impl fmt::Debug for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateRef({})", hex::encode(&self.0[..4]))
    }
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

crate::hex32_serde!(TemplateRef, "template_ref");

/// Checks an identifier or code: 1..=max bytes of printable ASCII without
/// spaces. Identifiers in records are codes, never names.
pub(crate) fn check_code(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(FieldError::new(field, "too long"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::new(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_parses_exactly() {
        assert_eq!(parse_fixed_point("123.45", 2), Some(12345));
        assert_eq!(parse_fixed_point("0.1", 2), Some(10));
        assert_eq!(parse_fixed_point("7", 2), Some(700));
        assert_eq!(parse_fixed_point("0.125", 3), Some(125));
        for bad in [
            "", ".5", "5.", "-1", "+1", "1e3", "1.234", " 1", "1,0", "１",
        ] {
            assert_eq!(parse_fixed_point(bad, 2), None, "{bad:?}");
        }
    }

    #[test]
    fn yuan_round_trips() {
        for fen in [0, 1, 99, 100, 12345, MAX_FEN] {
            assert_eq!(parse_fixed_point(&format_yuan(fen), 2), Some(fen));
        }
    }

    #[test]
    fn dose_displays_like_a_nurse_writes_it() {
        assert_eq!(
            Dose::parse_decimal("75", "mg").unwrap().to_string(),
            "75 mg"
        );
        assert_eq!(
            Dose::parse_decimal("1.5", "mg").unwrap().to_string(),
            "1.5 mg"
        );
        assert!(Dose::parse_decimal("0", "mg").is_err());
    }

    #[test]
    fn finger_names() {
        assert_eq!(Finger::LeftIndex.name_en(), "left index finger");
        assert_eq!(Finger::RightThumb.name_en(), "right thumb");
        assert_eq!(Finger::from_code("right_ring"), Some(Finger::RightRing));
    }
}
