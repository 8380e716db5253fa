//! Raspberry Pi backends (feature `rpi`): GPIO pins for the LED and buzzer
//! and the SPI bus for an MFRC522, through `rppal`'s embedded-hal 1.0
//! implementations. Pin numbers are BCM GPIO numbers (docs/hardware.md).

use rppal::gpio::{Gpio, OutputPin};
use rppal::spi::{Bus, Mode, SimpleHalSpiDevice, SlaveSelect, Spi};

use crate::indicator::Indicators;
use crate::mfrc522::Mfrc522Reader;
use crate::reader::PatientBlock;

/// Errors opening the Pi's devices.
#[derive(Debug, thiserror::Error)]
pub enum PiOpenError {
    #[error("GPIO: {0}")]
    Gpio(#[from] rppal::gpio::Error),
    #[error("SPI: {0}")]
    Spi(#[from] rppal::spi::Error),
    #[error("MFRC522: {0}")]
    Reader(String),
}

/// Opens the green LED, red LED and buzzer outputs (all start low).
pub fn open_indicators(
    green_gpio: u8,
    red_gpio: u8,
    buzzer_gpio: u8,
) -> Result<Indicators<OutputPin, OutputPin, OutputPin>, PiOpenError> {
    let gpio = Gpio::new()?;
    let green = gpio.get(green_gpio)?.into_output_low();
    let red = gpio.get(red_gpio)?.into_output_low();
    let buzzer = gpio.get(buzzer_gpio)?.into_output_low();
    Ok(Indicators::new(green, red, buzzer))
}

/// Opens an MFRC522 on SPI0 with chip-select CE0 (or CE1), mode 0, 1 MHz.
pub fn open_mfrc522(
    ce1: bool,
    patient_block: Option<PatientBlock>,
) -> Result<Mfrc522Reader<SimpleHalSpiDevice>, PiOpenError> {
    let ss = if ce1 {
        SlaveSelect::Ss1
    } else {
        SlaveSelect::Ss0
    };
    let spi = Spi::new(Bus::Spi0, ss, 1_000_000, Mode::Mode0)?;
    Mfrc522Reader::open(SimpleHalSpiDevice::new(spi), patient_block)
        .map_err(|e| PiOpenError::Reader(e.to_string()))
}
