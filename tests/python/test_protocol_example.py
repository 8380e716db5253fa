"""The worked example of docs/protocol.md, verified by an independent Ed25519
implementation (the `cryptography` package), reading nothing but the
document."""

import base64
import json
import pathlib
from hashlib import sha256

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def worked_example():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## 11. Worked example", 1)[1]
    block = section.split("```text", 1)[1].split("```", 1)[0]
    values = {}
    for line in block.strip().splitlines():
        name, value = line.split(" = ", 1)
        values[name.strip()] = value
    return values


@pytest.fixture(scope="module")
def ex():
    values = worked_example()
    assert set(values) >= {
        "seed", "public_key", "key_id", "context", "payload", "signature", "record_id", "envelope",
    }
    return values


def test_public_key_derives_from_seed(ex):
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ex["seed"]))
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert public.hex() == ex["public_key"]


def test_signature_verifies_over_context_and_payload(ex):
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(ex["public_key"]))
    message = bytes.fromhex(ex["context"]) + ex["payload"].encode("ascii")
    key.verify(bytes.fromhex(ex["signature"]), message)


def test_signature_is_deterministic_and_reproduced(ex):
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ex["seed"]))
    message = bytes.fromhex(ex["context"]) + ex["payload"].encode("ascii")
    assert private.sign(message).hex() == ex["signature"]


def test_signature_fails_without_context_or_with_a_changed_byte(ex):
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(ex["public_key"]))
    sig = bytes.fromhex(ex["signature"])
    with pytest.raises(InvalidSignature):
        key.verify(sig, ex["payload"].encode("ascii"))
    tampered = bytes.fromhex(ex["context"]) + ex["payload"].replace('"B07"', '"B08"').encode("ascii")
    with pytest.raises(InvalidSignature):
        key.verify(sig, tampered)


def test_ids(ex):
    assert sha256(ex["payload"].encode("ascii")).hexdigest() == ex["record_id"]
    assert sha256(bytes.fromhex(ex["public_key"])).digest()[:16].hex() == ex["key_id"]
    assert ex["context"] == b"wuding/session/v1\x00".hex()


def test_envelope_carries_the_exact_payload(ex):
    envelope = json.loads(ex["envelope"])
    assert list(envelope) == ["v", "type", "key_id", "payload", "signature"]
    assert envelope["v"] == 1 and envelope["type"] == "session"
    assert envelope["key_id"] == ex["key_id"]
    assert envelope["signature"] == ex["signature"]
    assert base64.b64decode(envelope["payload"], validate=True) == ex["payload"].encode("ascii")


def test_payload_is_a_session_record(ex):
    record = json.loads(ex["payload"])
    assert list(record)[:2] == ["type", "v"]
    assert record["type"] == "session" and record["v"] == 1
    assert record["charge"]["total_fen"] == sum(i["amount_fen"] for i in record["charge"]["items"])
