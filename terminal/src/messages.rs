//! What the nurse and the patient read, in Chinese (default) and English.
//! Every prompt says what to do next in plain words.

use serde::Serialize;

/// A display language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Zh,
    En,
}

/// A sentence in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

impl Text {
    pub fn new(zh: impl Into<String>, en: impl Into<String>) -> Text {
        Text {
            zh: zh.into(),
            en: en.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }
}

pub fn tap_nurse_card() -> Text {
    Text::new(
        "请护士刷工作卡并输入密码登录",
        "Nurse: tap your staff card and enter your PIN",
    )
}

pub fn wrong_pin() -> Text {
    Text::new(
        "密码错误，请重新刷卡登录",
        "Wrong PIN. Tap your staff card again",
    )
}

pub fn tap_patient_card() -> Text {
    Text::new("请患者刷医保卡", "Patient: tap the insurance card")
}

pub fn unknown_card() -> Text {
    Text::new(
        "此卡不在本院名单中，请联系管理员",
        "This card is not on this hospital's roster. Ask the administrator",
    )
}

pub fn place_finger(zh_finger: &str, en_finger: &str) -> Text {
    Text::new(
        format!("请将{zh_finger}平放在指纹仪上"),
        format!("Place the {en_finger} flat on the sensor"),
    )
}

pub fn retry_finger(zh_finger: &str, en_finger: &str, advice: Advice) -> Text {
    let (zh, en) = match advice {
        Advice::PressFlat => ("请按实、放平", "press it flat and firmly"),
        Advice::Moisten => (
            "手指太干，请哈口气或用湿巾润湿后",
            "the finger is dry: breathe on it or moisten it, then",
        ),
        Advice::WipeDry => ("请把手指擦干后", "wipe the finger dry, then"),
        Advice::NoFinger => ("未检测到手指，请", "no finger detected:"),
    };
    Text::new(
        format!("未能识别，{zh}重新按压{zh_finger}"),
        format!("Not recognised: {en} place the {en_finger} again"),
    )
}

pub fn second_finger(zh_finger: &str, en_finger: &str) -> Text {
    Text::new(
        format!("换一个手指：请将{zh_finger}放在指纹仪上"),
        format!("Let's try another finger: place the {en_finger} on the sensor"),
    )
}

pub fn fallback_offered() -> Text {
    Text::new(
        "指纹多次未能识别。请选择原因，并由第二名医护人员刷卡确认患者身份",
        "The fingerprint could not be read. Choose a reason and have a second staff member confirm the patient with their card",
    )
}

pub fn no_template() -> Text {
    Text::new(
        "该患者尚未在本终端录入指纹：请先录入，或由第二名医护人员确认身份",
        "This patient has no fingerprint on this terminal: enrol first, or have a second staff member confirm identity",
    )
}

pub fn session_open(bed: &str) -> Text {
    Text::new(
        format!("已签到，{bed} 床治疗开始"),
        format!("Checked in: treatment started at bed {bed}"),
    )
}

pub fn checked_out(yuan: &str) -> Text {
    Text::new(
        format!("已签退，本次费用 {yuan} 元，记录已签名保存"),
        format!("Checked out: charge {yuan} yuan, record signed and saved"),
    )
}

pub fn timed_out() -> Text {
    Text::new("操作超时，已取消", "Timed out: cancelled")
}

pub fn cancelled() -> Text {
    Text::new("已取消", "Cancelled")
}

pub fn no_free_bed() -> Text {
    Text::new(
        "没有空闲床位，请先为已结束的治疗签退",
        "No free bed: check out a finished session first",
    )
}

pub fn save_failed() -> Text {
    Text::new(
        "保存失败，请勿关机并联系管理员（会话仍在，可重试）",
        "Saving failed. Do not switch off; call the administrator (the session is kept, retry is possible)",
    )
}

pub fn enrol_tap_card() -> Text {
    Text::new(
        "指纹录入：请患者刷医保卡",
        "Enrolment: patient, tap the insurance card",
    )
}

pub fn enrol_choose_finger() -> Text {
    Text::new(
        "请选择录入的手指（透析患者请用无内瘘一侧的手）",
        "Choose the finger to enrol (dialysis patients: use the hand without the fistula)",
    )
}

pub fn enrol_capture(zh_finger: &str, en_finger: &str, n: u8, of: u8) -> Text {
    Text::new(
        format!("第 {n}/{of} 次：请将{zh_finger}放在指纹仪上，然后抬起"),
        format!("Capture {n} of {of}: place the {en_finger} on the sensor, then lift it"),
    )
}

pub fn enrol_duplicate() -> Text {
    Text::new(
        "该手指已登记在另一位患者名下，不能录入。已记录本次情况",
        "This finger is already enrolled under another patient and cannot be enrolled. This was logged",
    )
}

pub fn enrol_done(zh_finger: &str, en_finger: &str) -> Text {
    Text::new(
        format!("{zh_finger}录入成功"),
        format!("The {en_finger} is enrolled"),
    )
}

pub fn enrol_failed() -> Text {
    Text::new(
        "录入失败：几次按压差别太大，请重新开始",
        "Enrolment failed: the captures differ too much. Start again",
    )
}

pub fn device_fault() -> Text {
    Text::new(
        "指纹仪故障，请检查连接或使用人工确认",
        "Fingerprint sensor fault: check it, or use staff confirmation",
    )
}

/// Advice after a failed capture, chosen from the module's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Advice {
    PressFlat,
    Moisten,
    WipeDry,
    NoFinger,
}
