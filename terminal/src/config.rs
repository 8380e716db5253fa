//! The terminal's configuration: one TOML file (see
//! `terminal/wuding-terminal.example.toml` for every setting, documented).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::flow::FlowConfig;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{field}` {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub terminal: TerminalSection,
    pub server: ServerSection,
    pub devices: DevicesSection,
    #[serde(default)]
    pub ui: UiSection,
    #[serde(default)]
    pub session: SessionSection,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TerminalSection {
    /// This terminal's id, e.g. "T-330102-0007".
    pub id: String,
    pub hospital_code: String,
    pub department_code: String,
    /// Beds or chairs this terminal serves.
    pub beds: Vec<String>,
    /// The doctor responsible for sessions whose 五定 plan names none.
    pub duty_doctor_id: String,
    /// Where the key, the database and logs live.
    pub data_dir: PathBuf,
    /// Local offset from UTC in minutes (480 in China).
    #[serde(default = "default_offset")]
    pub utc_offset_min: i16,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Base URL of wuding-server, e.g. "https://wuding.example.org".
    pub url: String,
    /// Seconds between sync attempts when all is well.
    #[serde(default = "default_sync_interval")]
    pub sync_interval_s: u64,
    /// Largest number of records per upload.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DevicesSection {
    /// Serial device of the fingerprint module (e.g. "/dev/serial0", or an
    /// emulator's link such as "/tmp/wuding-devices/fingerprint").
    pub fingerprint: String,
    #[serde(default = "default_fp_baud")]
    pub fingerprint_baud: u32,
    /// The module's password (VfyPwd), 0 by default.
    #[serde(default)]
    pub fingerprint_password: u32,
    pub card_reader: CardReaderConfig,
    /// GPIO pins (BCM numbers) of the indicators; absent on a PC.
    #[serde(default)]
    pub indicators: Option<IndicatorPins>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CardReaderConfig {
    /// PN532 over UART (HSU).
    Pn532 {
        path: String,
        #[serde(default = "default_pn532_baud")]
        baud: u32,
    },
    /// MFRC522 over SPI (Raspberry Pi only).
    Mfrc522 {
        #[serde(default)]
        spi_bus: u8,
        #[serde(default)]
        chip_select: u8,
    },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IndicatorPins {
    pub green_led: u8,
    pub red_led: u8,
    pub buzzer: u8,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UiSection {
    /// Where the nurse screen is served (the kiosk browser opens it).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// "zh" or "en".
    #[serde(default = "default_lang")]
    pub language: String,
}

impl Default for UiSection {
    fn default() -> UiSection {
        UiSection {
            listen: default_listen(),
            language: default_lang(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    #[serde(default = "default_captures_per_finger")]
    pub captures_per_finger: u8,
    #[serde(default = "default_enrol_captures")]
    pub enrol_captures: u8,
    #[serde(default = "default_prompt_timeout")]
    pub prompt_timeout_s: u64,
    #[serde(default = "default_missing_checkout")]
    pub missing_checkout_after_h: u64,
    #[serde(default = "default_idle_logout")]
    pub nurse_idle_logout_min: u64,
}

impl Default for SessionSection {
    fn default() -> SessionSection {
        SessionSection {
            captures_per_finger: default_captures_per_finger(),
            enrol_captures: default_enrol_captures(),
            prompt_timeout_s: default_prompt_timeout(),
            missing_checkout_after_h: default_missing_checkout(),
            nurse_idle_logout_min: default_idle_logout(),
        }
    }
}

fn default_offset() -> i16 {
    480
}
fn default_sync_interval() -> u64 {
    15
}
fn default_batch() -> usize {
    200
}
fn default_fp_baud() -> u32 {
    57_600
}
fn default_pn532_baud() -> u32 {
    115_200
}
fn default_listen() -> String {
    "127.0.0.1:8090".into()
}
fn default_lang() -> String {
    "zh".into()
}
fn default_captures_per_finger() -> u8 {
    3
}
fn default_enrol_captures() -> u8 {
    3
}
fn default_prompt_timeout() -> u64 {
    60
}
fn default_missing_checkout() -> u64 {
    10
}
fn default_idle_logout() -> u64 {
    30
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: &str| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        let code = |field: &'static str, v: &str, max: usize| {
            if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_graphic()) {
                Err(invalid(
                    field,
                    &format!("must be 1 to {max} printable ASCII characters without spaces"),
                ))
            } else {
                Ok(())
            }
        };
        code("terminal.id", &self.terminal.id, 64)?;
        code("terminal.hospital_code", &self.terminal.hospital_code, 32)?;
        code(
            "terminal.department_code",
            &self.terminal.department_code,
            32,
        )?;
        if self.terminal.beds.is_empty() {
            return Err(invalid("terminal.beds", "must list at least one bed"));
        }
        for bed in &self.terminal.beds {
            code("terminal.beds", bed, 16)?;
        }
        if !(-720..=840).contains(&self.terminal.utc_offset_min) {
            return Err(invalid(
                "terminal.utc_offset_min",
                "must be between -720 and 840",
            ));
        }
        if !(self.server.url.starts_with("http://") || self.server.url.starts_with("https://")) {
            return Err(invalid("server.url", "must start with http:// or https://"));
        }
        if self.server.batch_size == 0 || self.server.batch_size > 1000 {
            return Err(invalid("server.batch_size", "must be between 1 and 1000"));
        }
        if !(2..=3).contains(&self.session.enrol_captures) {
            return Err(invalid("session.enrol_captures", "must be 2 or 3"));
        }
        if self.session.captures_per_finger == 0 {
            return Err(invalid("session.captures_per_finger", "must be at least 1"));
        }
        if !matches!(self.ui.language.as_str(), "zh" | "en") {
            return Err(invalid("ui.language", "must be \"zh\" or \"en\""));
        }
        Ok(())
    }

    /// The settings the session flow uses.
    pub fn flow(&self) -> FlowConfig {
        FlowConfig {
            terminal_id: self.terminal.id.clone(),
            hospital_code: self.terminal.hospital_code.clone(),
            department_code: self.terminal.department_code.clone(),
            utc_offset_min: self.terminal.utc_offset_min,
            beds: self.terminal.beds.clone(),
            duty_doctor_id: self.terminal.duty_doctor_id.clone(),
            captures_per_finger: self.session.captures_per_finger,
            enrol_captures: self.session.enrol_captures,
            prompt_timeout_ms: self.session.prompt_timeout_s as i64 * 1000,
            missing_checkout_after_ms: self.session.missing_checkout_after_h as i64 * 3_600_000,
            nurse_idle_logout_ms: self.session.nurse_idle_logout_min as i64 * 60_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../wuding-terminal.example.toml");

    #[test]
    fn the_documented_example_is_valid() {
        let c = Config::parse(EXAMPLE, Path::new("example.toml")).unwrap();
        assert_eq!(c.terminal.beds.len(), 4);
        assert!(matches!(
            c.devices.card_reader,
            CardReaderConfig::Pn532 { baud: 115_200, .. }
        ));
        assert_eq!(c.flow().prompt_timeout_ms, 60_000);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let bad = EXAMPLE.replace("beds = [\"B01\", \"B02\", \"B03\", \"B04\"]", "beds = []");
        let err = Config::parse(&bad, Path::new("/etc/wuding/terminal.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/wuding/terminal.toml: `terminal.beds` must list at least one bed"
        );
        let typo = EXAMPLE.replace("batch_size", "batch_sise");
        let err = Config::parse(&typo, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_sise"), "{err}");
        let url = EXAMPLE.replace("http://127.0.0.1:8080", "ftp://x");
        assert!(
            Config::parse(&url, Path::new("t.toml"))
                .unwrap_err()
                .to_string()
                .contains("server.url")
        );
    }
}
