//! Confirmation codes (byte 0 of every acknowledgement) and the driver's
//! error type. Every code the family documents maps to a [`ModuleError`]
//! variant with a short hint a nurse can act on, in Chinese and English.

use std::io;

use super::codec::{EncodeError, FrameError, PacketKind};

/// Confirmation code of a successful command.
pub const CONFIRM_OK: u8 = 0x00;

/// A short instruction for the person at the bedside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NurseHint {
    pub zh: &'static str,
    pub en: &'static str,
}

const fn hint(zh: &'static str, en: &'static str) -> NurseHint {
    NurseHint { zh, en }
}

const HINT_PRESS_AGAIN: NurseHint = hint("请重新按压手指", "Press the finger again");
const HINT_CALL_SUPPORT: NurseHint = hint(
    "指纹模块故障，请联系设备维护人员",
    "Fingerprint module fault: call maintenance",
);

macro_rules! module_errors {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $msg:literal, $zh:expr, $en:expr; )*) => {
        /// A non-zero confirmation code from the module.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
        pub enum ModuleError {
            $( $(#[$doc])* #[error($msg)] $variant, )*
            /// A code this driver does not know (vendor extensions).
            #[error("unknown confirmation code {0:#04X}")]
            Other(u8),
        }

        impl ModuleError {
            /// Maps a confirmation code; `None` for 0x00 (success).
            pub const fn from_code(code: u8) -> Option<ModuleError> {
                match code {
                    CONFIRM_OK => None,
                    $( $code => Some(ModuleError::$variant), )*
                    other => Some(ModuleError::Other(other)),
                }
            }

            /// The wire value.
            pub const fn code(self) -> u8 {
                match self {
                    $( ModuleError::$variant => $code, )*
                    ModuleError::Other(code) => code,
                }
            }

            /// What to tell the nurse (and through the nurse, the patient).
            pub const fn hint(self) -> NurseHint {
                match self {
                    $( ModuleError::$variant => hint($zh, $en), )*
                    ModuleError::Other(_) => HINT_CALL_SUPPORT,
                }
            }

            /// Every known variant (tests, documentation tables).
            pub const ALL: &'static [ModuleError] = &[ $( ModuleError::$variant, )* ];
        }
    };
}

module_errors! {
    /// 0x01: the module did not receive the packet correctly.
    PacketReceive = 0x01, "module reported a packet receive error",
        "通讯错误，请重试", "Communication error: try again";
    /// 0x02: GenImg found no finger on the sensor.
    NoFinger = 0x02, "no finger on the sensor",
        "请把手指平放在传感器上", "Place the finger flat on the sensor";
    /// 0x03: the image could not be taken.
    ImageFailed = 0x03, "failed to take the finger image",
        "请把手指平放并按稳", "Place the finger flat and hold it still";
    /// 0x06: image too disorderly (wet, smeared, moved).
    ImageMessy = 0x06, "image too messy to extract features",
        "请把手指擦干后重新按压", "Wipe the finger dry and press again";
    /// 0x07: too few feature points (dry, worn, too small an area).
    TooFewFeatures = 0x07, "too few feature points in the image",
        "手指过干或按压面积太小，请稍湿润手指后用指腹按压", "Finger too dry or too little contact: moisten it slightly and press with the pad";
    /// 0x08: Match: the two character files do not match.
    NoMatch = 0x08, "fingerprints do not match",
        "指纹不匹配，请确认手指后重试", "No match: check it is the enrolled finger and try again";
    /// 0x09: Search found no template.
    NotFound = 0x09, "no matching fingerprint in the library",
        "未找到匹配的指纹，请重试或换另一手指", "No matching fingerprint: try again or use another finger";
    /// 0x0A: RegModel could not combine the character files.
    CombineFailed = 0x0A, "failed to combine the captures into a template",
        "两次按压不是同一手指，请重新录入", "The captures differ: enrol again with the same finger";
    /// 0x0B: page id beyond the library.
    BadPageId = 0x0B, "page id outside the template library",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x0C: reading a template failed, or the template is invalid.
    TemplateInvalid = 0x0C, "template read error or invalid template",
        "指纹模板无效，请重新录入", "The stored template is invalid: enrol again";
    /// 0x0D: UpChar failed.
    UploadFailed = 0x0D, "template upload failed",
        "通讯错误，请重试", "Communication error: try again";
    /// 0x0E: the module cannot receive the following data packets.
    DownloadFailed = 0x0E, "module cannot receive the data packets",
        "通讯错误，请重试", "Communication error: try again";
    /// 0x0F: UpImage failed.
    ImageUploadFailed = 0x0F, "image upload failed",
        "通讯错误，请重试", "Communication error: try again";
    /// 0x10: DeleteChar failed.
    DeleteFailed = 0x10, "failed to delete templates",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x11: Empty failed.
    EmptyFailed = 0x11, "failed to empty the library",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x12: could not enter low-power state.
    LowPowerFailed = 0x12, "failed to enter the low-power state",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x13: VfyPwd: wrong password.
    WrongPassword = 0x13, "wrong module password",
        "指纹模块密码不符，请联系设备维护人员", "Fingerprint module password mismatch: call maintenance";
    /// 0x14: system reset failed.
    ResetFailed = 0x14, "module reset failed",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x15: no valid image in the image buffer.
    NoValidImage = 0x15, "no valid image in the image buffer",
        HINT_ZH_PRESS, HINT_EN_PRESS;
    /// 0x16: online upgrade failed.
    UpgradeFailed = 0x16, "online upgrade failed",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x17: residual fingerprint or the finger moved between captures.
    FingerMoved = 0x17, "residual fingerprint or finger moved between captures",
        "请抬起手指，擦净传感器后重新按压", "Lift the finger, wipe the sensor and press again";
    /// 0x18: flash write or read error.
    FlashError = 0x18, "flash read or write error",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x19: undefined error / random number generation failed.
    Undefined = 0x19, "undefined module error",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x1A: invalid register number.
    InvalidRegister = 0x1A, "invalid register number",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x1B: incorrect register configuration.
    BadRegisterValue = 0x1B, "incorrect register configuration",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x1C: wrong notepad page number.
    BadNotepadPage = 0x1C, "wrong notepad page number",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x1D: communication port operation failed.
    PortFailed = 0x1D, "communication port operation failed",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x1E: automatic enrolment failed.
    AutoEnrollFailed = 0x1E, "automatic enrolment failed",
        "录入失败，请重新录入", "Enrolment failed: start again";
    /// 0x1F: the template library is full.
    LibraryFull = 0x1F, "template library is full",
        "本机指纹库已满，请联系管理员清理", "This terminal's fingerprint library is full: ask the administrator";
    /// 0x20: wrong device address.
    WrongAddress = 0x20, "wrong module address",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x21: the password must be verified first.
    PasswordRequired = 0x21, "password must be verified first",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x22: the template slot is not empty.
    SlotOccupied = 0x22, "template slot is not empty",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0x23: the template slot is empty.
    SlotEmpty = 0x23, "template slot is empty",
        "本机没有该患者的指纹，请先录入", "No fingerprint for this patient here: enrol first";
    /// 0x24: the library is empty.
    LibraryEmpty = 0x24, "template library is empty",
        "本机没有该患者的指纹，请先录入", "No fingerprint for this patient here: enrol first";
    /// 0x26: the module timed out waiting for a finger.
    ModuleTimeout = 0x26, "module timed out",
        HINT_ZH_PRESS, HINT_EN_PRESS;
    /// 0x27: the fingerprint already exists in the library.
    AlreadyEnrolled = 0x27, "fingerprint already enrolled",
        "该指纹已录入，请核对患者身份", "This fingerprint is already enrolled: check the patient's identity";
    /// 0x29: sensor hardware error.
    SensorFault = 0x29, "sensor hardware error",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0xFC: command not supported by this module.
    Unsupported = 0xFC, "command not supported by this module",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0xFD: hardware error.
    HardwareError = 0xFD, "module hardware error",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
    /// 0xFE: command execution failure.
    ExecutionFailed = 0xFE, "command execution failed",
        HINT_ZH_SUPPORT, HINT_EN_SUPPORT;
}

const HINT_ZH_SUPPORT: &str = HINT_CALL_SUPPORT.zh;
const HINT_EN_SUPPORT: &str = HINT_CALL_SUPPORT.en;
const HINT_ZH_PRESS: &str = HINT_PRESS_AGAIN.zh;
const HINT_EN_PRESS: &str = HINT_PRESS_AGAIN.en;

impl ModuleError {
    /// Worth asking the patient to try again (as opposed to a fault).
    pub const fn is_patient_retryable(self) -> bool {
        matches!(
            self,
            ModuleError::NoFinger
                | ModuleError::ImageFailed
                | ModuleError::ImageMessy
                | ModuleError::TooFewFeatures
                | ModuleError::NoMatch
                | ModuleError::NotFound
                | ModuleError::CombineFailed
                | ModuleError::NoValidImage
                | ModuleError::FingerMoved
                | ModuleError::ModuleTimeout
        )
    }
}

/// Everything the driver can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("serial transport: {0}")]
    Io(#[from] io::Error),
    #[error("no answer to instruction {instruction:#04X} within the timeout ({attempts} attempts)")]
    Timeout { instruction: u8, attempts: u32 },
    #[error("corrupt frame from the module: {0}")]
    Frame(#[from] FrameError),
    #[error("could not encode a frame: {0}")]
    Encode(#[from] EncodeError),
    #[error("answer came from address {found:08X}, expected {expected:08X}")]
    WrongAddress { expected: u32, found: u32 },
    #[error("expected {expected:?} packet, got {found:?}")]
    UnexpectedPacket {
        expected: PacketKind,
        found: PacketKind,
    },
    #[error(
        "answer to instruction {instruction:#04X} has {found} bytes, expected at least {expected}"
    )]
    ShortReply {
        instruction: u8,
        expected: usize,
        found: usize,
    },
    #[error("instruction {instruction:#04X}: {error}")]
    Module { instruction: u8, error: ModuleError },
    #[error("template of {0} bytes does not fit the caller's buffer")]
    TemplateTooLarge(usize),
    #[error("template of {0} bytes is empty or too large to send")]
    BadTemplateLength(usize),
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl FingerprintError {
    /// The module's confirmation code, if that is what failed.
    pub fn module_error(&self) -> Option<ModuleError> {
        match self {
            FingerprintError::Module { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// A hint for the nurse whatever went wrong.
    pub fn hint(&self) -> NurseHint {
        match self {
            FingerprintError::Module { error, .. } => error.hint(),
            FingerprintError::Io(_)
            | FingerprintError::Timeout { .. }
            | FingerprintError::Frame(_)
            | FingerprintError::WrongAddress { .. } => hint(
                "指纹模块无响应，请检查连接或联系设备维护人员",
                "Fingerprint module not answering: check the cable or call maintenance",
            ),
            _ => HINT_CALL_SUPPORT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_both_hints() {
        for &e in ModuleError::ALL {
            assert_eq!(ModuleError::from_code(e.code()), Some(e));
            let h = e.hint();
            assert!(!h.zh.is_empty() && !h.en.is_empty(), "{e:?}");
            assert!(
                h.zh.chars().any(|c| c > '\u{2E80}'),
                "{e:?} zh hint is not Chinese"
            );
        }
        assert_eq!(ModuleError::from_code(0), None);
        assert_eq!(ModuleError::from_code(0x77), Some(ModuleError::Other(0x77)));
        assert_eq!(ModuleError::Other(0x77).code(), 0x77);
    }

    #[test]
    fn the_codes_the_nurse_meets_most_have_specific_hints() {
        assert_eq!(ModuleError::from_code(0x02), Some(ModuleError::NoFinger));
        assert_eq!(ModuleError::from_code(0x06), Some(ModuleError::ImageMessy));
        assert_eq!(
            ModuleError::from_code(0x07),
            Some(ModuleError::TooFewFeatures)
        );
        assert_eq!(ModuleError::from_code(0x08), Some(ModuleError::NoMatch));
        assert_eq!(ModuleError::from_code(0x09), Some(ModuleError::NotFound));
        assert_eq!(
            ModuleError::from_code(0x0A),
            Some(ModuleError::CombineFailed)
        );
        assert_eq!(ModuleError::from_code(0x0B), Some(ModuleError::BadPageId));
        assert_eq!(
            ModuleError::from_code(0x13),
            Some(ModuleError::WrongPassword)
        );
        assert_eq!(ModuleError::from_code(0x1F), Some(ModuleError::LibraryFull));
        assert_eq!(
            ModuleError::ImageMessy.hint().en,
            "Wipe the finger dry and press again"
        );
        assert_eq!(ModuleError::ImageMessy.hint().zh, "请把手指擦干后重新按压");
        assert!(ModuleError::TooFewFeatures.is_patient_retryable());
        assert!(!ModuleError::FlashError.is_patient_retryable());
    }
}
