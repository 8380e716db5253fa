//! MFRC522 card reader over SPI (embedded-hal 1.0 `SpiDevice`), as a
//! [`CardReader`].
//!
//! The chip work (reset, timer set-up, REQA, anticollision and select over
//! every cascade level, MIFARE authentication and read) is done by the
//! `mfrc522` crate, which is well kept and written against embedded-hal
//! 1.0. This adapter adds what the crate leaves out and the terminal needs:
//!
//! - **A presence check before `init`.** The crate's reset and transceive
//!   loops wait on chip registers with no host-side limit, so a reader that
//!   is not wired (MISO reads all 0x00 or all 0xFF) would hang the terminal.
//!   We read `VersionReg` first and refuse anything that is not an MFRC522
//!   (0x91 v1.0, 0x92 v2.0, 0x88 and 0x12 for the common clones).
//! - **Errors with words.** The crate's error type prints nothing
//!   (`Display` writes an empty string); [`Mfrc522Error`] says what
//!   happened.
//! - **Poll with a deadline**, returning `Ok(None)` when no card came.
//!
//! Limits of the crate, decided and documented rather than worked around:
//! it authenticates with key A only, and with the *first* four UID bytes,
//! whereas libnfc and our PN532 driver use the last four for 7-byte UIDs.
//! A patient block configured with key B is therefore refused at start
//! ([`Mfrc522Error::KeyBUnsupported`]); 7-byte-UID cards are read by UID,
//! and their patient block is read through the PN532. Our own register-level
//! driver would lift both limits; the PN532 is the recommended reader
//! (docs/hardware.md).

use std::time::{Duration, Instant};

use embedded_hal::spi::{Operation, SpiDevice};
use mfrc522::comm::blocking::spi::{DummyDelay, SpiInterface};
use mfrc522::{Initialized, Mfrc522, Uid};

use crate::pn532::command::KeyKind;
use crate::reader::{CardRead, CardReader, CardUid, PatientBlock, PatientNumber};

/// `VersionReg` (0x37): the address byte of a read is `0x80 | reg << 1`.
const VERSION_READ: u8 = 0x80 | (0x37 << 1);
/// Versions the chip (and its well-known clones) report.
pub const KNOWN_VERSIONS: [u8; 4] = [0x91, 0x92, 0x88, 0x12];

/// Errors of the MFRC522 reader.
#[derive(Debug, thiserror::Error)]
pub enum Mfrc522Error<E: std::fmt::Debug> {
    #[error("SPI transfer failed: {0:?}")]
    Spi(E),
    #[error(
        "no MFRC522 answers on this SPI device (VersionReg read {0:#04X}); check the wiring and the chip-select"
    )]
    NotPresent(u8),
    #[error(
        "the MFRC522 driver can only authenticate with key A; configure key A for the patient block"
    )]
    KeyBUnsupported,
    #[error("card exchange failed: {0}")]
    Card(&'static str),
    #[error("patient number on the card: {0}")]
    PatientNumber(#[from] crate::reader::PatientNumberError),
    #[error(transparent)]
    Uid(#[from] crate::reader::UidError),
}

fn describe<E>(e: &mfrc522::Error<E>) -> &'static str {
    use mfrc522::Error as M;
    match e {
        M::Bcc => "wrong block check character",
        M::BufferOverflow => "FIFO overflow",
        M::Collision => "two cards in the field",
        M::Crc => "CRC error",
        M::IncompleteFrame => "incomplete frame",
        M::Overheating => "reader overheated",
        M::Parity => "parity error",
        M::Protocol => "authentication failed (wrong key?)",
        M::Timeout => "the card did not answer",
        M::Wr => "FIFO written at the wrong time",
        M::Nak => "the card refused (NAK)",
        M::NoRoom => "buffer too small",
        M::Proprietary => "proprietary frame",
        M::Comm(_) => "SPI transfer failed",
    }
}

/// An MFRC522 on an SPI device.
pub struct Mfrc522Reader<SPI: SpiDevice> {
    chip: Mfrc522<SpiInterface<SPI, DummyDelay>, Initialized>,
    patient_block: Option<PatientBlock>,
    /// Time between REQA attempts while polling.
    pub interval: Duration,
}

impl<SPI: SpiDevice> Mfrc522Reader<SPI>
where
    SPI::Error: std::fmt::Debug,
{
    /// Checks that an MFRC522 answers, then initialises it.
    pub fn open(
        mut spi: SPI,
        patient_block: Option<PatientBlock>,
    ) -> Result<Mfrc522Reader<SPI>, Mfrc522Error<SPI::Error>> {
        if patient_block.is_some_and(|b| b.key_kind == KeyKind::B) {
            return Err(Mfrc522Error::KeyBUnsupported);
        }
        let mut buf = [VERSION_READ, 0x00];
        spi.transaction(&mut [Operation::TransferInPlace(&mut buf)])
            .map_err(Mfrc522Error::Spi)?;
        if !KNOWN_VERSIONS.contains(&buf[1]) {
            return Err(Mfrc522Error::NotPresent(buf[1]));
        }
        let chip = Mfrc522::new(SpiInterface::new(spi))
            .init()
            .map_err(|e| Mfrc522Error::Card(describe(&e)))?;
        Ok(Mfrc522Reader {
            chip,
            patient_block,
            interval: Duration::from_millis(50),
        })
    }

    fn read_card(&mut self, uid: &Uid) -> Result<CardRead, Mfrc522Error<SPI::Error>> {
        let card_uid = CardUid::new(uid.as_bytes())?;
        let patient_number = match (self.patient_block, uid) {
            (Some(pb), Uid::Single(_)) => {
                let key = pb.key.0;
                let result = self
                    .chip
                    .mf_authenticate(uid, pb.block(), &key)
                    .and_then(|()| self.chip.mf_read(pb.block()));
                let _ = self.chip.hlta();
                let _ = self.chip.stop_crypto1();
                let block = result.map_err(|e| Mfrc522Error::Card(describe(&e)))?;
                PatientNumber::from_block(&block)?
            }
            _ => {
                let _ = self.chip.hlta();
                None
            }
        };
        Ok(CardRead {
            uid: card_uid,
            patient_number,
        })
    }
}

impl<SPI: SpiDevice> CardReader for Mfrc522Reader<SPI>
where
    SPI::Error: std::fmt::Debug + Send + Sync + 'static,
{
    type Error = Mfrc522Error<SPI::Error>;

    fn poll(&mut self, timeout: Duration) -> Result<Option<CardRead>, Self::Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.chip.new_card_present() {
                Ok(atqa) => {
                    let uid = self
                        .chip
                        .select(&atqa)
                        .map_err(|e| Mfrc522Error::Card(describe(&e)))?;
                    return self.read_card(&uid).map(Some);
                }
                // No card answered REQA: keep polling.
                Err(mfrc522::Error::Timeout) => {}
                Err(mfrc522::Error::Comm(e)) => return Err(Mfrc522Error::Spi(e)),
                Err(e) => return Err(Mfrc522Error::Card(describe(&e))),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(self.interval.min(deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    //! A register-level fake of a chip with no card in the field (unit
    //! tests of this adapter only; the crate has its own tests).
    use super::*;
    use crate::pn532::command::MifareKey;

    #[derive(Debug)]
    struct FakeChip {
        version: u8,
        reads: usize,
    }

    impl embedded_hal::spi::ErrorType for FakeChip {
        type Error = std::convert::Infallible;
    }

    impl SpiDevice for FakeChip {
        fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
            for op in ops {
                let answer = |buf: &mut [u8], version: u8| {
                    let reg = (buf[0] >> 1) & 0x3F;
                    let is_read = buf[0] & 0x80 != 0;
                    for b in buf.iter_mut().skip(1) {
                        *b = match (is_read, reg) {
                            (true, 0x37) => version,
                            // ComIrqReg: the timer ran out (no card answered).
                            (true, 0x04) => 0x01,
                            _ => 0x00,
                        };
                    }
                };
                match op {
                    Operation::TransferInPlace(buf) => {
                        self.reads += 1;
                        answer(buf, self.version);
                    }
                    Operation::Transfer(read, write) => {
                        let mut buf = write.to_vec();
                        buf.resize(read.len().max(write.len()), 0);
                        answer(&mut buf, self.version);
                        read.copy_from_slice(&buf[..read.len()]);
                    }
                    Operation::Read(buf) => buf.fill(0),
                    Operation::Write(_) | Operation::DelayNs(_) => {}
                }
            }
            Ok(())
        }
    }

    #[test]
    fn an_absent_chip_is_refused_instead_of_hanging() {
        let e = Mfrc522Reader::open(
            FakeChip {
                version: 0x00,
                reads: 0,
            },
            None,
        )
        .err()
        .expect("refused");
        assert!(matches!(e, Mfrc522Error::NotPresent(0x00)), "{e}");
        assert!(e.to_string().contains("check the wiring"));
    }

    #[test]
    fn no_card_polls_quietly_until_the_deadline() {
        let mut r = Mfrc522Reader::open(
            FakeChip {
                version: 0x92,
                reads: 0,
            },
            None,
        )
        .unwrap();
        r.interval = Duration::from_millis(5);
        assert_eq!(r.poll(Duration::from_millis(30)).unwrap(), None);
    }

    #[test]
    fn key_b_is_refused_with_a_reason() {
        let pb = PatientBlock::new(4, KeyKind::B, MifareKey::FACTORY_DEFAULT).unwrap();
        let e = Mfrc522Reader::open(
            FakeChip {
                version: 0x92,
                reads: 0,
            },
            Some(pb),
        )
        .err()
        .unwrap();
        assert!(matches!(e, Mfrc522Error::KeyBUnsupported));
    }
}
