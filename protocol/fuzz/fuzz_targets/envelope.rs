#![no_main]
//! Envelope JSON: parsing never panics; whatever parses re-encodes to JSON
//! that parses to the same envelope, and decoding its payload never panics.

use libfuzzer_sys::fuzz_target;
use wuding_protocol::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::from_json(data) {
        let again = Envelope::from_json(envelope.to_json().as_bytes()).expect("re-encoded envelope parses");
        assert_eq!(again, envelope);
        let _ = envelope.decode();
    }
});
