//! Terminal <-> server API types: uploads, receipts, roster deltas, signed requests. (Being built: issue 5.)
