//! The emulated PN532 NFC reader (HSU/UART), with virtual MIFARE Classic
//! cards.
//!
//! A sans-IO state machine over the driver's own frame codec
//! (`wuding_hardware::pn532::codec`) in the device role: bytes from the
//! host in, [`Output`]s out. Cards are placed in and taken out of the field
//! from outside ([`EmulatedPn532::present`], [`EmulatedPn532::remove`]);
//! placing one while an `InListPassiveTarget` waits answers it at once, as
//! the chip does.
//!
//! Behaviour follows the PN532 User Manual (UM0701-02): every well-formed
//! command is acknowledged with an ACK frame before its response; a frame
//! with a bad checksum is ignored (the host times out waiting for the ACK
//! and sends again); a NACK from the host asks for the last response again;
//! an ACK from the host aborts the command in progress; a command the chip
//! does not know is answered with the application-level error frame.
//! `InListPassiveTarget` with no card in the field is acknowledged and then
//! stays silent until a card arrives or the host sends something else.

pub mod card;

use std::time::Duration;

use wuding_hardware::pn532::codec::{ACK, Decoder, ERROR_FRAME, Frame, Role};
use wuding_hardware::pn532::command::{
    self as cmd, BLOCK_LEN, FirmwareVersion, StatusError, response_code,
};

pub use card::VirtualCard;

/// What the adapter must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Work(Duration),
    Send(Vec<u8>),
}

/// How long the chip takes to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pn532Timings {
    /// From a command to its ACK.
    pub ack: Duration,
    /// Activating a card in the field (anticollision and select).
    pub activate: Duration,
    /// One exchange with the card (authenticate, read, write).
    pub exchange: Duration,
}

impl Pn532Timings {
    pub const REALISTIC: Pn532Timings = Pn532Timings {
        ack: Duration::from_millis(1),
        activate: Duration::from_millis(25),
        exchange: Duration::from_millis(6),
    };
    pub const INSTANT: Pn532Timings = Pn532Timings {
        ack: Duration::ZERO,
        activate: Duration::ZERO,
        exchange: Duration::ZERO,
    };
}

/// The emulated chip.
#[derive(Debug)]
pub struct EmulatedPn532 {
    decoder: Decoder,
    timings: Pn532Timings,
    card: Option<VirtualCard>,
    /// An InListPassiveTarget waiting for a card.
    waiting: bool,
    /// The card is activated as target 1.
    selected: bool,
    /// Sector opened by the last successful authentication.
    authenticated: Option<u8>,
    last_response: Option<Vec<u8>>,
    sam_configured: bool,
    /// Commands answered since start (status display).
    pub commands: u64,
}

impl EmulatedPn532 {
    pub fn new(timings: Pn532Timings) -> EmulatedPn532 {
        EmulatedPn532 {
            decoder: Decoder::new(Role::Device),
            timings,
            card: None,
            waiting: false,
            selected: false,
            authenticated: None,
            last_response: None,
            sam_configured: false,
            commands: 0,
        }
    }

    pub fn card(&self) -> Option<&VirtualCard> {
        self.card.as_ref()
    }

    pub fn sam_configured(&self) -> bool {
        self.sam_configured
    }

    /// A card enters the field (replacing any card there).
    pub fn present(&mut self, card: VirtualCard) -> Vec<Output> {
        self.remove();
        self.card = Some(card);
        let mut out = Vec::new();
        if self.waiting {
            self.waiting = false;
            self.activate(&mut out);
        }
        out
    }

    /// The card leaves the field.
    pub fn remove(&mut self) {
        self.card = None;
        self.selected = false;
        self.authenticated = None;
    }

    fn respond(&mut self, out: &mut Vec<Output>, data: &[u8]) {
        let bytes = Frame::response(data)
            .to_vec()
            .expect("response fits a frame");
        self.last_response = Some(bytes.clone());
        out.push(Output::Send(bytes));
    }

    fn activate(&mut self, out: &mut Vec<Output>) {
        let Some(card) = &self.card else { return };
        let mut data = Vec::with_capacity(20);
        cmd::in_list_passive_target_response(card.sens_res, card.sel_res, &card.uid, &mut data);
        self.selected = true;
        self.authenticated = None;
        out.push(Output::Work(self.timings.activate));
        self.respond(out, &data);
    }

    /// Feeds bytes received from the host.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Output> {
        self.decoder.push(bytes);
        let mut out = Vec::new();
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(None) => break,
                // A damaged frame is not acknowledged: the host retries.
                Err(_) => continue,
                Ok(Some(f)) => match f {
                    Frame::Ack => {
                        self.waiting = false;
                        continue;
                    }
                    Frame::Nack => {
                        if let Some(last) = self.last_response.clone() {
                            out.push(Output::Send(last));
                        }
                        continue;
                    }
                    Frame::Error => continue,
                    Frame::Info { data, .. } => data.to_vec(),
                },
            };
            // Any new command ends a wait for a card.
            self.waiting = false;
            self.commands += 1;
            out.push(Output::Work(self.timings.ack));
            out.push(Output::Send(ACK.to_vec()));
            self.command(&frame, &mut out);
        }
        out
    }

    fn command(&mut self, data: &[u8], out: &mut Vec<Output>) {
        let (&code, params) = data.split_first().expect("info frames are not empty");
        match code {
            cmd::DIAGNOSE => {
                // NumTst 0x00: communication line test, echoes the data.
                let mut resp = vec![response_code(code)];
                resp.extend_from_slice(params);
                self.respond(out, &resp);
            }
            cmd::GET_FIRMWARE_VERSION => {
                let v = cmd::firmware_version_response(FirmwareVersion::PN532_V1_6);
                self.respond(out, &v);
            }
            cmd::SAM_CONFIGURATION => {
                if params.is_empty() || !(1..=4).contains(&params[0]) {
                    return self.error_frame(out);
                }
                self.sam_configured = true;
                self.respond(out, &[response_code(code)]);
            }
            cmd::POWER_DOWN => self.respond(out, &[response_code(code), 0x00]),
            cmd::RF_CONFIGURATION => self.respond(out, &[response_code(code)]),
            cmd::IN_LIST_PASSIVE_TARGET => {
                let [max_tg, brty, ..] = params else {
                    return self.error_frame(out);
                };
                if !(1..=2).contains(max_tg) {
                    return self.error_frame(out);
                }
                self.selected = false;
                self.authenticated = None;
                if *brty == cmd::BRTY_ISO14443A_106 && self.card.is_some() {
                    self.activate(out);
                } else {
                    // Wait, silently, for a card (other baud rates: none of
                    // our cards ever answers).
                    self.waiting = *brty == cmd::BRTY_ISO14443A_106;
                }
            }
            cmd::IN_DATA_EXCHANGE => {
                let Some((&tg, exchange)) = params.split_first() else {
                    return self.error_frame(out);
                };
                let (status, payload) = self.exchange(tg, exchange);
                out.push(Output::Work(self.timings.exchange));
                let mut resp = vec![response_code(code), status];
                resp.extend_from_slice(&payload);
                self.respond(out, &resp);
            }
            cmd::IN_DESELECT | cmd::IN_RELEASE => {
                let status = if self.selected { 0x00 } else { 0x27 };
                self.selected = false;
                self.authenticated = None;
                self.respond(out, &[response_code(code), status]);
            }
            _ => self.error_frame(out),
        }
    }

    fn error_frame(&mut self, out: &mut Vec<Output>) {
        self.last_response = Some(ERROR_FRAME.to_vec());
        out.push(Output::Send(ERROR_FRAME.to_vec()));
    }

    /// One MIFARE Classic exchange with the selected card: the status byte
    /// and the data in.
    fn exchange(&mut self, tg: u8, exchange: &[u8]) -> (u8, Vec<u8>) {
        let err = |e: StatusError| (e.code(), Vec::new());
        if tg != 1 {
            return err(StatusError::NotAcceptable);
        }
        // No card, or a halted one (after a failed authentication): the
        // card does not answer.
        let Some(card) = self.card.as_mut().filter(|_| self.selected) else {
            return err(StatusError::Timeout);
        };
        match exchange {
            [
                op @ (cmd::MIFARE_AUTH_A | cmd::MIFARE_AUTH_B),
                block,
                rest @ ..,
            ] if rest.len() >= 10 => {
                let (key, uid) = rest.split_at(6);
                let key_b = *op == cmd::MIFARE_AUTH_B;
                let uid_ok = uid == card.uid.as_slice() || uid[..4] == card.auth_uid();
                if usize::from(*block) < card.blocks.len()
                    && uid_ok
                    && card.key_matches(*block / 4, key_b, key)
                {
                    self.authenticated = Some(*block / 4);
                    (0x00, Vec::new())
                } else {
                    // A failed authentication halts the card.
                    self.authenticated = None;
                    self.selected = false;
                    err(StatusError::Authentication)
                }
            }
            [cmd::MIFARE_READ, block] => {
                if self.authenticated != Some(*block / 4) {
                    return err(StatusError::Authentication);
                }
                (0x00, card.read(*block).to_vec())
            }
            [cmd::MIFARE_WRITE, block, data @ ..] if data.len() == BLOCK_LEN => {
                if self.authenticated != Some(*block / 4) || *block == 0 {
                    return err(StatusError::Authentication);
                }
                card.write(*block, data.try_into().expect("length checked"));
                (0x00, Vec::new())
            }
            _ => err(StatusError::InvalidParameter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(data: &[u8]) -> Vec<u8> {
        Frame::command(data).to_vec().unwrap()
    }

    fn sent(outputs: &[Output]) -> Vec<u8> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send(b) => Some(b.clone()),
                Output::Work(_) => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn no_card_means_ack_then_silence_until_one_arrives() {
        let mut chip = EmulatedPn532::new(Pn532Timings::INSTANT);
        let out = chip.receive(&command(&cmd::in_list_passive_target_106a(1)));
        assert_eq!(sent(&out), ACK.to_vec());
        let card = VirtualCard::mifare_classic_1k(&[0x04, 0xA1, 0xB2, 0xC3]).unwrap();
        let out = sent(&chip.present(card));
        let mut expected = Vec::new();
        cmd::in_list_passive_target_response(
            [0x00, 0x04],
            0x08,
            &[0x04, 0xA1, 0xB2, 0xC3],
            &mut expected,
        );
        assert_eq!(out, Frame::response(&expected).to_vec().unwrap());
    }

    #[test]
    fn unknown_commands_get_the_error_frame_and_nack_repeats() {
        let mut chip = EmulatedPn532::new(Pn532Timings::INSTANT);
        let out = sent(&chip.receive(&command(&[0x99])));
        assert_eq!(out[..6], ACK);
        assert_eq!(out[6..], ERROR_FRAME);
        let fw = sent(&chip.receive(&command(&cmd::get_firmware_version())));
        let again = sent(&chip.receive(&wuding_hardware::pn532::codec::NACK));
        assert_eq!(fw[6..], again[..]);
    }

    #[test]
    fn wake_up_bytes_and_a_damaged_frame_are_skipped() {
        let mut chip = EmulatedPn532::new(Pn532Timings::INSTANT);
        let mut bytes = vec![0x55, 0x55, 0, 0, 0];
        let mut bad = command(&cmd::get_firmware_version());
        let n = bad.len();
        bad[n - 2] ^= 1;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&command(&cmd::get_firmware_version()));
        let out = sent(&chip.receive(&bytes));
        assert_eq!(out[..6], ACK);
        assert_eq!(out.len(), 6 + 13);
    }
}
