//! PN532 NFC reader over UART (HSU): frame codec (host and device roles) and driver. (Being built: issue 3.)
