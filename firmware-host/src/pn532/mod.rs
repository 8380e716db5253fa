//! Emulated PN532 reader on a pseudo-terminal. (Being built: issue 3.)
