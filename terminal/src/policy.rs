//! The bedside checks, from the shared rule engine (`wuding-rules`): the
//! same rule definitions the server's reconciliation grades with.

use wuding_protocol::TreatmentKind;
use wuding_rules::{Ruleset, check_session_start};

use crate::flow::{BedsidePolicy, PatientContext, ProposedSession, Verdict};
use crate::messages::Text;

pub struct RulesPolicy(pub Ruleset);

impl BedsidePolicy for RulesPolicy {
    fn check(
        &self,
        patient: &PatientContext,
        p: &ProposedSession,
        today: &[TreatmentKind],
    ) -> Vec<Verdict> {
        let proposed = wuding_rules::ProposedSession {
            hospital_code: p.hospital_code.clone(),
            department_code: p.department_code.clone(),
            doctor_id: p.doctor_id.clone(),
            kind: p.kind,
            drug_code: p.drug_code.clone(),
            dose: p.dose.clone(),
            date: p.date,
        };
        check_session_start(&self.0, patient.plan.as_ref(), &proposed, today)
            .into_iter()
            .map(|v| Verdict {
                refuse: v.refuse,
                rule_id: v.rule_id.to_owned(),
                reason: Text::new(v.zh, v.en),
            })
            .collect()
    }
}
