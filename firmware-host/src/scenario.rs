//! Scenario generator: a realistic month of records and claims. (Being built: issue 8.)
