//! MFRC522 over SPI through embedded-hal 1.0. (Being built: issue 3.)
