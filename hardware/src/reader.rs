//! What the terminal needs from a card reader, whichever is fitted.
//!
//! **API Boundary:** the terminal's session flow depends on [`CardReader`]
//! only. Implemented by the PN532 over UART
//! ([`Pn532`](crate::pn532::Pn532)) and the MFRC522 over SPI
//! ([`Mfrc522`](crate::mfrc522::Mfrc522)).
//!
//! Other identity sources fit the same trait: a serial or USB-keyboard QR
//! scanner for the national medical-insurance e-voucher (医保电子凭证) would
//! return the voucher's card identifier as the [`CardUid`]-like identity and
//! the insured person's number as the [`PatientNumber`]; contact CPU
//! social-security cards (PC/SC) likewise. When such a reader is added, the
//! identity type grows a variant for the source; `poll` stays as it is.
//!
//! Card layout for the optional patient number: one MIFARE Classic block
//! (by default block 4, the first data block of sector 1) holds the number
//! as ASCII, left-aligned, padded with 0x00 bytes. A block of zeros means
//! "no number written".

use std::fmt;
use std::time::Duration;

use crate::pn532::command::{BLOCK_LEN, KeyKind, MifareKey};

/// A card's UID (NFCID1): 4, 7 or 10 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardUid {
    len: u8,
    bytes: [u8; 10],
}

/// A UID that cannot be a card's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("a UID has 4, 7 or 10 bytes, not {0}")]
    BadLength(usize),
    #[error("a UID is written as upper- or lower-case hex digits")]
    NotHex,
}

impl CardUid {
    pub fn new(bytes: &[u8]) -> Result<CardUid, UidError> {
        if !matches!(bytes.len(), 4 | 7 | 10) {
            return Err(UidError::BadLength(bytes.len()));
        }
        let mut out = [0u8; 10];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok(CardUid {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// Parses hex (as in `04A1B2C3`).
    pub fn from_hex(hex: &str) -> Result<CardUid, UidError> {
        let hex = hex.trim();
        if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(UidError::NotHex);
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| UidError::NotHex))
            .collect::<Result<_, _>>()?;
        CardUid::new(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Upper-case hex, the form records and rosters use.
    pub fn to_hex(&self) -> String {
        self.as_bytes().iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// A card UID links to a patient: `Debug` shows its length and last byte
/// only.
impl fmt::Debug for CardUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CardUid({} bytes, ..{:02X})",
            self.len,
            self.as_bytes().last().copied().unwrap_or(0)
        )
    }
}

/// The patient number read from a card (ASCII letters, digits, `-`; 1 to
/// 16 characters). Personal data: `Debug` masks it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PatientNumber(String);

/// A patient number that cannot be stored in, or was not found in, a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatientNumberError {
    #[error("a patient number has 1 to {BLOCK_LEN} characters, not {0}")]
    BadLength(usize),
    #[error("byte {position} of the patient number is not an ASCII letter, digit or '-'")]
    BadCharacter { position: usize },
    #[error("non-zero byte at {position} after the patient number's padding")]
    BadPadding { position: usize },
}

impl PatientNumber {
    pub fn new(number: &str) -> Result<PatientNumber, PatientNumberError> {
        if number.is_empty() || number.len() > BLOCK_LEN {
            return Err(PatientNumberError::BadLength(number.len()));
        }
        if let Some(position) = number
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(PatientNumberError::BadCharacter { position });
        }
        Ok(PatientNumber(number.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The block contents: ASCII, left-aligned, zero padded.
    pub fn to_block(&self) -> [u8; BLOCK_LEN] {
        let mut block = [0u8; BLOCK_LEN];
        block[..self.0.len()].copy_from_slice(self.0.as_bytes());
        block
    }

    /// Reads a block written by [`PatientNumber::to_block`]. `Ok(None)`
    /// for an all-zero (blank) block.
    pub fn from_block(
        block: &[u8; BLOCK_LEN],
    ) -> Result<Option<PatientNumber>, PatientNumberError> {
        let end = block.iter().position(|&b| b == 0).unwrap_or(BLOCK_LEN);
        if let Some(off) = block[end..].iter().position(|&b| b != 0) {
            return Err(PatientNumberError::BadPadding {
                position: end + off,
            });
        }
        if end == 0 {
            return Ok(None);
        }
        let text = &block[..end];
        if let Some(position) = text
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(PatientNumberError::BadCharacter { position });
        }
        // Checked above: ASCII only.
        let text = String::from_utf8_lossy(text).into_owned();
        Ok(Some(PatientNumber(text)))
    }
}

impl fmt::Debug for PatientNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PatientNumber(<{} chars>)", self.0.len())
    }
}

/// Where on a MIFARE Classic 1K card the patient number is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatientBlock {
    block: u8,
    pub key_kind: KeyKind,
    pub key: MifareKey,
}

/// A block that cannot hold a patient number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block {0} is outside a MIFARE Classic 1K (0..=63)")]
    OutOfRange(u8),
    #[error("block 0 holds the manufacturer data")]
    ManufacturerBlock,
    #[error("block {0} is a sector trailer (keys and access bits)")]
    SectorTrailer(u8),
}

impl PatientBlock {
    pub fn new(block: u8, key_kind: KeyKind, key: MifareKey) -> Result<PatientBlock, BlockError> {
        check_data_block(block)?;
        Ok(PatientBlock {
            block,
            key_kind,
            key,
        })
    }

    pub fn block(&self) -> u8 {
        self.block
    }
}

/// Checks that `block` is a data block of a MIFARE Classic 1K.
pub fn check_data_block(block: u8) -> Result<(), BlockError> {
    if block > 63 {
        return Err(BlockError::OutOfRange(block));
    }
    if block == 0 {
        return Err(BlockError::ManufacturerBlock);
    }
    if block % 4 == 3 {
        return Err(BlockError::SectorTrailer(block));
    }
    Ok(())
}

/// One card seen by a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardRead {
    pub uid: CardUid,
    /// Read from the configured block; `None` when no block is configured,
    /// the card is not a MIFARE Classic, or the block is blank.
    pub patient_number: Option<PatientNumber>,
}

/// A source of patient identities at the bedside.
pub trait CardReader {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Waits up to `timeout` for a card. `Ok(None)` when none came: that is
    /// the normal idle case, not an error, and the reader is ready for the
    /// next poll. With a [`PatientBlock`] configured, the number in it is
    /// read too; a card whose block cannot be opened with the key is an
    /// error (it is not one of ours, or it was tampered with).
    fn poll(&mut self, timeout: Duration) -> Result<Option<CardRead>, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_lengths_and_hex() {
        assert_eq!(CardUid::new(&[1, 2, 3]), Err(UidError::BadLength(3)));
        let uid = CardUid::from_hex("04a1b2c3").unwrap();
        assert_eq!(uid.as_bytes(), [0x04, 0xA1, 0xB2, 0xC3]);
        assert_eq!(uid.to_hex(), "04A1B2C3");
        assert_eq!(
            CardUid::from_hex("04112233445566")
                .unwrap()
                .as_bytes()
                .len(),
            7
        );
        assert_eq!(CardUid::from_hex("04A1B2C"), Err(UidError::NotHex));
        assert_eq!(CardUid::from_hex("04A1B2CG"), Err(UidError::NotHex));
        assert_eq!(format!("{uid:?}"), "CardUid(4 bytes, ..C3)");
    }

    #[test]
    fn patient_number_block_round_trip() {
        let n = PatientNumber::new("P330100-12345").unwrap();
        let block = n.to_block();
        assert_eq!(&block[..13], b"P330100-12345");
        assert_eq!(&block[13..], &[0, 0, 0]);
        assert_eq!(PatientNumber::from_block(&block), Ok(Some(n.clone())));
        assert_eq!(PatientNumber::from_block(&[0; 16]), Ok(None));
        assert_eq!(format!("{n:?}"), "PatientNumber(<13 chars>)");
    }

    #[test]
    fn bad_patient_numbers() {
        assert_eq!(
            PatientNumber::new(""),
            Err(PatientNumberError::BadLength(0))
        );
        assert_eq!(
            PatientNumber::new("12345678901234567"),
            Err(PatientNumberError::BadLength(17))
        );
        assert_eq!(
            PatientNumber::new("12 3"),
            Err(PatientNumberError::BadCharacter { position: 2 })
        );
        let mut block = PatientNumber::new("123").unwrap().to_block();
        block[10] = 7;
        assert_eq!(
            PatientNumber::from_block(&block),
            Err(PatientNumberError::BadPadding { position: 10 })
        );
        let mut block = [0u8; 16];
        block[0] = 0xFF;
        assert_eq!(
            PatientNumber::from_block(&block),
            Err(PatientNumberError::BadCharacter { position: 0 })
        );
    }

    #[test]
    fn only_data_blocks_hold_patient_numbers() {
        let key = MifareKey::FACTORY_DEFAULT;
        assert!(PatientBlock::new(4, KeyKind::A, key).is_ok());
        assert_eq!(
            PatientBlock::new(0, KeyKind::A, key),
            Err(BlockError::ManufacturerBlock)
        );
        assert_eq!(
            PatientBlock::new(7, KeyKind::B, key),
            Err(BlockError::SectorTrailer(7))
        );
        assert_eq!(
            PatientBlock::new(64, KeyKind::A, key),
            Err(BlockError::OutOfRange(64))
        );
    }
}
