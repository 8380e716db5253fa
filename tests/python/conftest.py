"""Shared fixtures: `wuding-sim devices` as a subprocess, as a user runs it."""

import os
import pathlib
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def sim_binary():
    path = os.environ.get("WUDING_SIM", str(ROOT / "target" / "debug" / "wuding-sim"))
    if not pathlib.Path(path).exists():
        pytest.fail(f"{path} not built: run `cargo build -p wuding-firmware-host` (tests/run-all.sh does)")
    return path


class Devices:
    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.fingerprint = str(self.dir / "fingerprint")
        self.nfc = str(self.dir / "nfc")

    def control(self, line):
        """Sends one control command over the documented socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.dir / "control.sock"))
            s.sendall(line.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        reply = reply.decode().strip()
        assert reply.startswith("ok"), f"{line!r}: {reply}"
        return reply


@pytest.fixture
def devices(tmp_path):
    proc = subprocess.Popen(
        [sim_binary(), "devices", "--dir", str(tmp_path), "--instant", "--capacity", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            line = proc.stdout.readline()
            if "ready" in line:
                break
            if not line or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"wuding-sim devices did not start: {proc.stderr.read()}")
        yield Devices(tmp_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
