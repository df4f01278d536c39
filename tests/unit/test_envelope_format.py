"""The envelope's byte format: what it writes, what it reads back, and that bad bytes fail one way only."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connvault.crypto.envelope import MAGIC, NONCE_BYTES, TAG_BYTES, VERSION, Envelope, SealContext
from connvault.errors import DecryptionFailed

KEY_ID = "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d"
SAMPLE = Envelope(KEY_ID, b"W" * 5, b"N" * NONCE_BYTES, b"C" * 3 + b"T" * TAG_BYTES)

envelopes = st.builds(
    Envelope,
    key_id=st.text(min_size=1, max_size=100).filter(lambda s: len(s.encode()) <= 0xFFFF),
    wrapped_key=st.binary(min_size=1, max_size=400),
    nonce=st.binary(min_size=NONCE_BYTES, max_size=NONCE_BYTES),
    ciphertext=st.binary(min_size=TAG_BYTES, max_size=300),
)


def test_the_layout_is_magic_version_then_length_prefixed_key_id_and_wrapped_key_then_nonce_and_ciphertext() -> None:
    key_id = KEY_ID.encode()

    assert SAMPLE.to_bytes() == (
        b"CV\x01" + len(key_id).to_bytes(2, "big") + key_id + b"\x00\x05WWWWW" + b"N" * 12 + b"CCC" + b"T" * 16
    )


@given(envelopes)
def test_any_envelope_reads_back_as_itself(envelope: Envelope) -> None:
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope


@given(st.binary(max_size=600))
def test_reading_arbitrary_bytes_raises_nothing_but_decryption_failed(data: bytes) -> None:
    with contextlib.suppress(DecryptionFailed):
        Envelope.from_bytes(data)


@given(st.binary(max_size=600))
def test_reading_arbitrary_bytes_behind_a_valid_prefix_raises_nothing_but_decryption_failed(data: bytes) -> None:
    with contextlib.suppress(DecryptionFailed):
        Envelope.from_bytes(MAGIC + bytes((VERSION,)) + data)


@pytest.mark.parametrize("length", range(len(SAMPLE.to_bytes())))
def test_every_truncation_of_an_envelope_is_refused(length: int) -> None:
    blob = SAMPLE.to_bytes()[:length]

    if length >= len(SAMPLE.to_bytes()) - len(SAMPLE.ciphertext) + TAG_BYTES:
        # Cutting into the ciphertext still leaves a well-formed envelope; GCM refuses it when opened.
        Envelope.from_bytes(blob)
    else:
        with pytest.raises(DecryptionFailed):
            Envelope.from_bytes(blob)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "not in connvault format"),
        (b"XX\x01" + SAMPLE.to_bytes()[3:], "not in connvault format"),
        (b"CV\x02" + SAMPLE.to_bytes()[3:], "version"),
        (b"CV\x01\x00\x00" + b"\x00\x01W" + b"N" * 28, "truncated"),  # empty key id
        (b"CV\x01\x00\x02\xff\xfe\x00\x01W" + b"N" * 28, "key id is not text"),
        (b"CV\x01\x00\x01K\x00\x00" + b"N" * 28, "truncated"),  # empty wrapped key
    ],
)
def test_a_malformed_envelope_is_refused_with_a_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(DecryptionFailed) as error:
        Envelope.from_bytes(blob)

    assert reason in str(error.value)


def test_a_header_field_too_long_for_its_length_prefix_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="too long"):
        Envelope("k" * 0x10000, b"w", b"n" * NONCE_BYTES, b"c" * TAG_BYTES).to_bytes()


@given(st.uuids(), st.uuids(), st.text(max_size=40), st.text(max_size=40), st.uuids(), st.uuids())
def test_different_places_give_different_associated_data(
    tenant_a: uuid.UUID, tenant_b: uuid.UUID, field_a: str, field_b: str, row_a: uuid.UUID, row_b: uuid.UUID
) -> None:
    a, b = SealContext(tenant_a, field_a, row_a), SealContext(tenant_b, field_b, row_b)

    assert (a.associated_data() == b.associated_data()) == (a == b)
