//! Emulated fingerprint module on a pseudo-terminal. (Being built: issue 3.)
