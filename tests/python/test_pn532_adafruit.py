"""Adafruit's CircuitPython PN532 library (from PyPI, unmodified), through
its UART class, against the emulated PN532 over its pseudo-terminal."""

import serial
from adafruit_pn532.adafruit_pn532 import MIFARE_CMD_AUTH_A, MIFARE_CMD_AUTH_B
from adafruit_pn532.uart import PN532_UART

FACTORY_KEY = b"\xff\xff\xff\xff\xff\xff"


def open_reader(devices):
    uart = serial.Serial(devices.nfc, baudrate=115200, timeout=0.1)
    return PN532_UART(uart, debug=False)  # wakes it, SAM configuration, firmware version


def test_firmware_version(devices):
    pn532 = open_reader(devices)
    ic, ver, rev, support = pn532.firmware_version
    assert (ic, ver, rev) == (0x32, 1, 6)
    assert support & 0x01  # ISO/IEC 14443 Type A
    assert '"sam_configured":true' in devices.control("status")


def test_no_card_then_a_card(devices):
    pn532 = open_reader(devices)
    assert pn532.read_passive_target(timeout=0.3) is None
    devices.control("card present 04A1B2C3")
    assert pn532.read_passive_target(timeout=1) == bytearray(b"\x04\xa1\xb2\xc3")
    devices.control("card remove")
    assert pn532.read_passive_target(timeout=0.3) is None
    uid7 = "04112233445566"
    devices.control(f"card present {uid7}")
    assert pn532.read_passive_target(timeout=1) == bytearray.fromhex(uid7)


def test_authenticate_and_read_the_patient_block(devices):
    pn532 = open_reader(devices)
    devices.control("card present 04C0FFEE P5101000001234")
    uid = pn532.read_passive_target(timeout=1)
    assert uid == bytearray.fromhex("04C0FFEE")
    assert pn532.mifare_classic_authenticate_block(uid, 4, MIFARE_CMD_AUTH_A, FACTORY_KEY)
    block = pn532.mifare_classic_read_block(4)
    assert bytes(block).rstrip(b"\x00") == b"P5101000001234"

    # Write and read back a block of the same sector.
    assert pn532.mifare_classic_write_block(5, bytes(range(16)))
    assert bytes(pn532.mifare_classic_read_block(5)) == bytes(range(16))

    # A wrong key is refused (and halts the card until it is selected again).
    assert not pn532.mifare_classic_authenticate_block(uid, 8, MIFARE_CMD_AUTH_B, b"\x01" * 6)
    assert pn532.read_passive_target(timeout=1) == uid
    assert pn532.mifare_classic_authenticate_block(uid, 8, MIFARE_CMD_AUTH_B, FACTORY_KEY)
