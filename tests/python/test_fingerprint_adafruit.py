"""Adafruit's CircuitPython fingerprint library (from PyPI, unmodified)
against the emulated module over its pseudo-terminal: a third-party client
that reads fixed lengths and cannot tell the emulator from an R30x/AS608."""

import adafruit_fingerprint
import serial

OK = adafruit_fingerprint.OK


def open_sensor(devices):
    uart = serial.Serial(devices.fingerprint, baudrate=57600, timeout=1)
    return adafruit_fingerprint.Adafruit_Fingerprint(uart)


def enrol(devices, finger, name, location):
    devices.control(f"finger place {name} 85")
    assert finger.get_image() == OK
    assert finger.image_2_tz(1) == OK
    assert finger.get_image() == OK
    assert finger.image_2_tz(2) == OK
    assert finger.create_model() == OK
    assert finger.store_model(location, 1) == OK
    devices.control("finger lift")


def test_parameters_password_and_health(devices):
    finger = open_sensor(devices)  # verifies the password, reads sysparams
    assert finger.library_size == 200
    assert finger.security_level == 3
    assert finger.data_packet_size == 2  # 128 bytes
    assert finger.check_module()
    assert finger.verify_password() == OK
    assert finger.set_led(color=2, mode=1) == OK
    assert '"led":"Breathing Blue"' in devices.control("status")


def test_enrol_store_search_and_templates(devices):
    finger = open_sensor(devices)
    assert finger.get_image() == adafruit_fingerprint.NOFINGER
    enrol(devices, finger, "P0001-R2", 3)
    enrol(devices, finger, "P0002-L1", 17)
    assert finger.count_templates() == OK
    assert finger.template_count == 2
    assert finger.read_templates() == OK
    assert finger.templates == [3, 17]

    devices.control("finger place P0002-L1 75")
    assert finger.get_image() == OK
    assert finger.image_2_tz(1) == OK
    assert finger.finger_search() == OK
    assert finger.finger_id == 17
    assert finger.confidence >= 50
    assert finger.finger_fast_search() == OK
    assert finger.finger_id == 17

    devices.control("finger place stranger 90")
    assert finger.get_image() == OK
    assert finger.image_2_tz(1) == OK
    assert finger.finger_search() == adafruit_fingerprint.NOTFOUND


def test_load_compare_upload_download_delete_empty(devices):
    finger = open_sensor(devices)
    enrol(devices, finger, "P0003-R1", 5)

    # Load the stored model and compare it with a fresh capture.
    devices.control("finger place P0003-R1 80")
    assert finger.get_image() == OK
    assert finger.image_2_tz(2) == OK
    assert finger.load_model(5, 1) == OK
    assert finger.compare_templates() == OK
    assert finger.confidence[0] >= 50

    # Upload the characteristic file, put it back in the other buffer,
    # store it elsewhere, and find the finger there.
    assert finger.load_model(5, 1) == OK
    data = finger.get_fpdata("char", 1)
    assert len(data) == 512
    assert finger.delete_model(5) == OK
    assert finger.send_fpdata(data, "char", 2)
    assert finger.store_model(9, 2) == OK
    assert finger.get_image() == OK
    assert finger.image_2_tz(1) == OK
    assert finger.finger_search() == OK
    assert finger.finger_id == 9

    # Different finger: no match.
    devices.control("finger place someone-else 80")
    assert finger.get_image() == OK
    assert finger.image_2_tz(2) == OK
    assert finger.compare_templates() == adafruit_fingerprint.NOMATCH

    assert finger.empty_library() == OK
    assert finger.count_templates() == OK
    assert finger.template_count == 0
    # The emptied slot holds nothing to load.
    assert finger.load_model(9, 1) == adafruit_fingerprint.DBRANGEFAIL
    finger.soft_reset()  # reads the 0x55 handshake byte


def test_two_different_fingers_do_not_make_a_model(devices):
    finger = open_sensor(devices)
    devices.control("finger place A 90")
    assert finger.get_image() == OK
    assert finger.image_2_tz(1) == OK
    devices.control("finger place B 90")
    assert finger.get_image() == OK
    assert finger.image_2_tz(2) == OK
    assert finger.create_model() == adafruit_fingerprint.ENROLLMISMATCH
