//! The 五定 plan: per patient, the fixed hospital, department, doctor(s),
//! treatment kinds, drug and dose, and the frequency the plan allows.
//! Administrators keep plans on the server; terminals receive their
//! hospital's plans with the roster; the rule engine (`wuding-rules`) checks
//! sessions and claims against them.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::types::{Dose, TreatmentKind, check_code};

/// A patient's 五定 plan for a period.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatmentPlan {
    pub plan_id: String,
    pub insured_id: String,
    /// 定医院
    pub hospital_code: String,
    /// 定科室
    pub department_code: String,
    /// 定医生: the doctors allowed to run the patient's sessions.
    pub doctor_ids: Vec<String>,
    /// Treatments the plan covers (for example HD with HDF alternating).
    pub kinds: Vec<TreatmentKind>,
    /// 定药品: the drug fixed by the plan, national catalogue code.
    pub drug_code: Option<String>,
    /// 定剂量: the largest dose allowed per session or dispensing.
    pub max_dose: Option<Dose>,
    /// Sessions allowed per ISO week (dialysis: usually 3, some 2).
    pub max_sessions_per_week: Option<u8>,
    pub valid_from: Date,
    /// Last day the plan applies (inclusive).
    pub valid_to: Date,
}

impl TreatmentPlan {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_code("plan_id", &self.plan_id, 64)?;
        check_code("insured_id", &self.insured_id, 32)?;
        check_code("hospital_code", &self.hospital_code, 32)?;
        check_code("department_code", &self.department_code, 32)?;
        if self.doctor_ids.is_empty() || self.doctor_ids.len() > 16 {
            return Err(FieldError::new("doctor_ids", "must name 1 to 16 doctors"));
        }
        for doctor in &self.doctor_ids {
            check_code("doctor_ids", doctor, 32)?;
        }
        if self.kinds.is_empty() {
            return Err(FieldError::new(
                "kinds",
                "must name at least one treatment kind",
            ));
        }
        if let Some(drug) = &self.drug_code {
            check_code("drug_code", drug, 32)?;
        }
        if let Some(dose) = &self.max_dose {
            dose.validate()?;
        }
        if self.kinds.iter().any(|k| k.requires_drug()) && self.drug_code.is_none() {
            return Err(FieldError::new(
                "drug_code",
                "is required for CHEMO and ANTIREJECT plans",
            ));
        }
        if self.valid_to < self.valid_from {
            return Err(FieldError::new("valid_to", "is before valid_from"));
        }
        Ok(())
    }

    /// Whether the plan is in force on `date`.
    pub fn covers(&self, date: Date) -> bool {
        self.valid_from <= date && date <= self.valid_to
    }
}
