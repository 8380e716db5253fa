//! R30x/ZFM/AS608/R503 fingerprint module: frame codec (host and device roles) and driver. (Being built: issue 3.)
