//! Golden byte sequences for every command both drivers send, checked
//! against the byte strings printed in the module manuals (R30x/AS608 user
//! manual command tables; PN532 User Manual UM0701-02 and application note
//! examples), and property tests of both frame codecs.

use proptest::prelude::*;
use wuding_hardware::fingerprint::codec::{
    DEFAULT_ADDRESS, Decoder as FpDecoder, Event, Frame as FpFrame, PacketKind, Role as FpRole,
};
use wuding_hardware::fingerprint::command::{
    CharBuffer, Command, LedColour, LedConfig, LedMode, PacketSize, ReplyData, SystemParameters,
    encode_reply,
};
use wuding_hardware::pn532::codec::{
    ACK, Decoder as PnDecoder, Frame as PnFrame, NACK, Role as PnRole,
};
use wuding_hardware::pn532::command::{self as pn, KeyKind, MifareKey, SamMode};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fp_command(cmd: Command) -> String {
    let payload = cmd.encode();
    hex(
        &FpFrame::new(DEFAULT_ADDRESS, PacketKind::Command, payload.as_slice())
            .to_vec()
            .unwrap(),
    )
}

#[test]
fn fingerprint_commands_match_the_manual() {
    // From the command tables of the R307/AS608 manuals.
    assert_eq!(
        fp_command(Command::GenImg),
        "EF 01 FF FF FF FF 01 00 03 01 00 05"
    );
    assert_eq!(
        fp_command(Command::VfyPwd { password: 0 }),
        "EF 01 FF FF FF FF 01 00 07 13 00 00 00 00 00 1B"
    );
    assert_eq!(
        fp_command(Command::Img2Tz {
            buffer: CharBuffer::ONE
        }),
        "EF 01 FF FF FF FF 01 00 04 02 01 00 08"
    );
    assert_eq!(
        fp_command(Command::RegModel),
        "EF 01 FF FF FF FF 01 00 03 05 00 09"
    );
    assert_eq!(
        fp_command(Command::ReadSysPara),
        "EF 01 FF FF FF FF 01 00 03 0F 00 13"
    );
    assert_eq!(
        fp_command(Command::TemplateNum),
        "EF 01 FF FF FF FF 01 00 03 1D 00 21"
    );
    assert_eq!(
        fp_command(Command::Empty),
        "EF 01 FF FF FF FF 01 00 03 0D 00 11"
    );
    assert_eq!(
        fp_command(Command::SoftRst),
        "EF 01 FF FF FF FF 01 00 03 3D 00 41"
    );
    assert_eq!(
        fp_command(Command::HandShake),
        "EF 01 FF FF FF FF 01 00 03 40 00 44"
    );
}

#[test]
fn every_fingerprint_command_snapshot() {
    let led = LedConfig {
        mode: LedMode::Breathing,
        speed: 0x80,
        colour: LedColour::Blue,
        cycles: 0,
    };
    let all = [
        ("GenImg", Command::GenImg),
        (
            "Img2Tz(2)",
            Command::Img2Tz {
                buffer: CharBuffer::TWO,
            },
        ),
        ("Match", Command::Match),
        (
            "Search(1, 0, 1000)",
            Command::Search {
                buffer: CharBuffer::ONE,
                start: 0,
                count: 1000,
            },
        ),
        (
            "HiSpeedSearch(1, 0, 200)",
            Command::HiSpeedSearch {
                buffer: CharBuffer::ONE,
                start: 0,
                count: 200,
            },
        ),
        ("RegModel", Command::RegModel),
        (
            "Store(1, 300)",
            Command::Store {
                buffer: CharBuffer::ONE,
                page: 300,
            },
        ),
        (
            "LoadChar(2, 7)",
            Command::LoadChar {
                buffer: CharBuffer::TWO,
                page: 7,
            },
        ),
        (
            "UpChar(1)",
            Command::UpChar {
                buffer: CharBuffer::ONE,
            },
        ),
        (
            "DownChar(2)",
            Command::DownChar {
                buffer: CharBuffer::TWO,
            },
        ),
        (
            "DeleteChar(5, 1)",
            Command::DeleteChar { page: 5, count: 1 },
        ),
        ("Empty", Command::Empty),
        ("ReadSysPara", Command::ReadSysPara),
        (
            "VfyPwd(0x12345678)",
            Command::VfyPwd {
                password: 0x1234_5678,
            },
        ),
        ("TemplateNum", Command::TemplateNum),
        ("ReadIndexTable(1)", Command::ReadIndexTable { page: 1 }),
        ("AuraLedConfig(breathing blue)", Command::AuraLedConfig(led)),
        ("SoftRst", Command::SoftRst),
        ("HandShake", Command::HandShake),
    ];
    let text: String = all
        .iter()
        .map(|(name, cmd)| format!("{name:<32} {}\n", fp_command(*cmd)))
        .collect();
    insta::assert_snapshot!("fingerprint_commands", text);

    let params = SystemParameters {
        status: 0,
        system_id: 9,
        capacity: 1000,
        security_level: 3,
        address: DEFAULT_ADDRESS,
        packet_size: PacketSize::B128,
        baud_multiplier: 6,
    };
    let replies = [
        ("ack ok", 0x01, 0x00, ReplyData::None),
        ("ack no finger", 0x01, 0x02, ReplyData::None),
        ("ReadSysPara", 0x0F, 0x00, ReplyData::SysPara(params)),
        ("Match score 215", 0x03, 0x00, ReplyData::Score(215)),
        (
            "Search hit page 17 score 180",
            0x04,
            0x00,
            ReplyData::Hit {
                page: 17,
                score: 180,
            },
        ),
        ("Search not found", 0x04, 0x09, ReplyData::None),
        ("TemplateNum 2", 0x1D, 0x00, ReplyData::Count(2)),
    ];
    let text: String = replies
        .iter()
        .map(|(name, ins, conf, data)| {
            let r = encode_reply(*ins, *conf, data);
            let f = FpFrame::new(DEFAULT_ADDRESS, PacketKind::Ack, r.as_slice());
            format!("{name:<32} {}\n", hex(&f.to_vec().unwrap()))
        })
        .collect();
    insta::assert_snapshot!("fingerprint_replies", text);
}

fn pn_command(data: &[u8]) -> String {
    hex(&PnFrame::command(data).to_vec().unwrap())
}

#[test]
fn pn532_commands_match_the_manual() {
    // UM0701-02 and the PN532 application note examples.
    assert_eq!(
        pn_command(&pn::get_firmware_version()),
        "00 00 FF 02 FE D4 02 2A 00"
    );
    assert_eq!(
        pn_command(&pn::sam_configuration(SamMode::Normal, 0x14)),
        "00 00 FF 05 FB D4 14 01 14 01 02 00"
    );
    assert_eq!(
        pn_command(&pn::in_list_passive_target_106a(1)),
        "00 00 FF 04 FC D4 4A 01 00 E1 00"
    );
    assert_eq!(hex(&ACK), "00 00 FF 00 FF 00");
    assert_eq!(hex(&NACK), "00 00 FF FF 00 00");
    assert_eq!(
        hex(&PnFrame::response(&[0x03, 0x32, 0x01, 0x06, 0x07])
            .to_vec()
            .unwrap()),
        "00 00 FF 06 FA D5 03 32 01 06 07 E8 00"
    );
}

#[test]
fn every_pn532_command_snapshot() {
    let uid = [0x04, 0xA1, 0xB2, 0xC3];
    let all: Vec<(&str, Vec<u8>)> = vec![
        ("GetFirmwareVersion", pn::get_firmware_version().to_vec()),
        (
            "SAMConfiguration normal",
            pn::sam_configuration(SamMode::Normal, 0x14).to_vec(),
        ),
        (
            "InListPassiveTarget 106A",
            pn::in_list_passive_target_106a(1).to_vec(),
        ),
        (
            "InDataExchange auth A block 4",
            pn::mifare_authenticate(1, KeyKind::A, 4, &MifareKey::FACTORY_DEFAULT, uid).to_vec(),
        ),
        (
            "InDataExchange read block 4",
            pn::mifare_read(1, 4).to_vec(),
        ),
        ("InRelease all", pn::in_release(0).to_vec()),
    ];
    let text: String = all
        .iter()
        .map(|(name, data)| format!("{name:<32} {}\n", pn_command(data)))
        .collect();
    insta::assert_snapshot!("pn532_commands", text);
}

proptest! {
    #[test]
    fn fingerprint_frames_survive_any_chunking_and_garbage(
        address in any::<u32>(),
        kind in prop_oneof![Just(PacketKind::Command), Just(PacketKind::Data), Just(PacketKind::Ack), Just(PacketKind::EndData)],
        payload in prop::collection::vec(any::<u8>(), 1..=256),
        garbage in prop::collection::vec(any::<u8>().prop_filter("not a header", |b| *b != 0xEF && *b != 0x55), 0..20),
        step in 1usize..40,
    ) {
        let frame = FpFrame::new(address, kind, &payload);
        let role = if kind == PacketKind::Command { FpRole::Device } else { FpRole::Host };
        let mut bytes = garbage.clone();
        bytes.extend(frame.to_vec().unwrap());
        let mut d = FpDecoder::new(role);
        let mut got = None;
        for piece in bytes.chunks(step) {
            d.push(piece);
            if let Some(Event::Frame(f)) = d.next_event().unwrap() {
                got = Some((f.address, f.kind, f.payload.to_vec()));
            }
        }
        prop_assert_eq!(got, Some((address, kind, payload)));
    }

    #[test]
    fn fingerprint_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for role in [FpRole::Host, FpRole::Device] {
            let mut d = FpDecoder::new(role);
            d.push(&bytes);
            for _ in 0..1000 {
                if let Ok(None) = d.next_event() {
                    break;
                }
            }
        }
    }

    #[test]
    fn pn532_frames_survive_any_chunking_and_preamble(
        data in prop::collection::vec(any::<u8>(), 1..=264),
        wake in 0usize..4,
        step in 1usize..40,
    ) {
        let frame = PnFrame::response(&data);
        let mut bytes = vec![0x55; wake];
        bytes.extend(frame.to_vec().unwrap());
        let mut d = PnDecoder::new(PnRole::Host);
        let mut got = None;
        for piece in bytes.chunks(step) {
            d.push(piece);
            if let Some(PnFrame::Info { data, .. }) = d.next_frame().unwrap() {
                got = Some(data.to_vec());
            }
        }
        prop_assert_eq!(got, Some(data));
    }

    #[test]
    fn pn532_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for role in [PnRole::Host, PnRole::Device] {
            let mut d = PnDecoder::new(role);
            d.push(&bytes);
            for _ in 0..1000 {
                if let Ok(None) = d.next_frame() {
                    break;
                }
            }
        }
    }
}
