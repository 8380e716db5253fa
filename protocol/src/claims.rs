//! Claim lines: what a hospital asked the insurance fund to pay for, as
//! imported from the settlement system. See DESIGN.md "Claims" for the CSV
//! layout; parsing CSV (and column mappings) is the server's job, this is
//! the validated value every importer produces.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::types::Code;
use crate::types::{Dose, MAX_FEN, TreatmentKind, check_code};

/// One claimed service line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimLine {
    /// The settlement system's id of the line; unique per fund.
    pub claim_id: Code,
    /// The insured person's number (`psn_no`).
    pub insured_id: Code,
    pub hospital_code: Code,
    pub department_code: Code,
    pub doctor_id: Code,
    /// Local date of service.
    pub service_date: Date,
    /// Catalogue code of the service or drug billed.
    pub service_code: Code,
    pub service_kind: TreatmentKind,
    /// Units claimed (sessions, or packs of a drug).
    pub quantity: u32,
    /// Amount claimed for the line, in fen.
    pub amount_fen: u64,
    pub drug_code: Option<Code>,
    pub dose: Option<Dose>,
}

impl ClaimLine {
    /// Checks the rules a line must satisfy whatever its source layout.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_code("claim_id", &self.claim_id, 64)?;
        check_code("insured_id", &self.insured_id, 32)?;
        check_code("hospital_code", &self.hospital_code, 32)?;
        check_code("department_code", &self.department_code, 32)?;
        check_code("doctor_id", &self.doctor_id, 32)?;
        check_code("service_code", &self.service_code, 32)?;
        if self.quantity == 0 || self.quantity > 1000 {
            return Err(FieldError::new("quantity", "must be between 1 and 1000"));
        }
        if self.amount_fen > MAX_FEN {
            return Err(FieldError::new("amount_fen", "above the maximum amount"));
        }
        if let Some(drug) = &self.drug_code {
            check_code("drug_code", drug, 32)?;
        }
        if let Some(dose) = &self.dose {
            dose.validate()?;
        }
        Ok(())
    }
}

impl Dose {
    /// Parses a dose as written in a claim or plan cell: a decimal amount
    /// with at most three fractional digits, then the unit, with or without
    /// a space (`"75mg"`, `"1.5 mg"`, `"2 Gy"`).
    pub fn parse_text(text: &str) -> Result<Dose, FieldError> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(FieldError::new("dose", "has no unit (write e.g. \"75mg\")"))?;
        let (amount, unit) = text.split_at(split);
        Dose::parse_decimal(amount, unit.trim_start())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dose_text_forms() {
        let d = Dose::parse_text("75mg").unwrap();
        assert_eq!((d.amount_milli, d.unit.as_str()), (75_000, "mg"));
        let d = Dose::parse_text("1.5 mg").unwrap();
        assert_eq!(d.amount_milli, 1_500);
        assert!(Dose::parse_text("75").is_err());
        assert!(Dose::parse_text("mg").is_err());
        assert!(Dose::parse_text("1.2345mg").is_err());
    }
}
