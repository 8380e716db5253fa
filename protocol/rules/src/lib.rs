//! The rule engine: 五定 plan checks shared by the terminal's bedside checks
//! and the server's reconciliation, and the reconciliation rules that grade
//! claims against attested sessions red / yellow / green. (Being built:
//! issue 8.)
//!
//! **Architecture Invariant:** pure: no IO, no clock, no database. Inputs
//! in, findings out.
