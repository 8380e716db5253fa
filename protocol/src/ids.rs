//! Fixed-size identifiers: record ids and key ids, serialised as lowercase hex.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Implements serde for a `[u8; N]` newtype as lowercase hex of exactly N bytes.
#[macro_export]
#[doc(hidden)]
macro_rules! hex32_serde {
    ($ty:ident, $what:literal) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&::hex::encode(self.0))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                $crate::ids::parse_lower_hex(&text).map($ty).ok_or_else(|| {
                    ::serde::de::Error::custom(concat!(
                        $what,
                        " must be lowercase hex of the right length"
                    ))
                })
            }
        }
    };
}

/// Parses exactly `N` bytes of lowercase hex (upper case is refused so that
/// every id has one spelling).
pub fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The identity of a record: SHA-256 of its exact payload bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RecordId(pub [u8; 32]);

impl RecordId {
    /// The `prev` of the first record in a chain.
    pub const GENESIS: RecordId = RecordId([0u8; 32]);

    /// Record id of the given payload bytes.
    pub fn of_payload(payload: &[u8]) -> RecordId {
        RecordId(Sha256::digest(payload).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for logs and screens.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", self.short())
    }
}

impl FromStr for RecordId {
    type Err = crate::error::FieldError;
    fn from_str(s: &str) -> Result<RecordId, Self::Err> {
        parse_lower_hex(s)
            .map(RecordId)
            .ok_or(crate::error::FieldError::new(
                "record_id",
                "must be 64 lowercase hex digits",
            ))
    }
}

hex32_serde!(RecordId, "record id");

/// Names a terminal's public key: the first 16 bytes of SHA-256 of the
/// 32-byte public key, as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    pub fn of_public_key(public_key: &[u8; 32]) -> KeyId {
        let digest: [u8; 32] = Sha256::digest(public_key).into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        KeyId(id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl FromStr for KeyId {
    type Err = crate::error::FieldError;
    fn from_str(s: &str) -> Result<KeyId, Self::Err> {
        parse_lower_hex(s)
            .map(KeyId)
            .ok_or(crate::error::FieldError::new(
                "key_id",
                "must be 32 lowercase hex digits",
            ))
    }
}

hex32_serde!(KeyId, "key id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_id_is_sha256_of_payload() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            RecordId::of_payload(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_ids_have_one_spelling() {
        let lower = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(lower.parse::<RecordId>().is_ok());
        assert!(lower.to_uppercase().parse::<RecordId>().is_err());
        assert!(lower[..62].parse::<RecordId>().is_err());
    }
}
