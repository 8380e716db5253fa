//! The `CardReader` and `FingerprintSensor` abstractions the terminal uses. (Being built: issue 3.)
