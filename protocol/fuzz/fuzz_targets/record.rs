#![no_main]
//! Record payloads: decoding never panics; whatever decodes re-encodes to
//! bytes that decode to the same record, and re-encoding is a fixed point.

use libfuzzer_sys::fuzz_target;
use wuding_protocol::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let bytes = record.encode().expect("a decoded record is valid");
        let again = Record::decode(&bytes).expect("re-encoded record decodes");
        assert_eq!(again, record);
        assert_eq!(again.encode().unwrap(), bytes);
    }
});
