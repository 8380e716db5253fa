//! GPIO indicators (LED, buzzer) through embedded-hal 1.0. (Being built: issue 3.)
