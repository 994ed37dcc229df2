"""The bridge's per-frame fast paths write exactly what the general code writes."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hydralab.client import SentEventIds, elide_frame, encode_append, encode_client_event
from hydralab.protocol.hydra import InputAudioBufferAppend
from hydralab.rundir import _dump
from hydralab.secrets import Secret, may_hold_secret, redact_obj


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-32768, 32767), max_size=400), st.integers(1, 10_000))
def test_append_text_equals_the_general_encoder(samples: list[int], n: int) -> None:
    pcm = np.array(samples, dtype=np.int16)
    ids = SentEventIds("a1b2c3")
    eid = ids.next_id(InputAudioBufferAppend.type)
    text, logged = encode_append(eid, pcm)
    want_text, want_dict = encode_client_event(
        InputAudioBufferAppend.from_pcm(pcm).__class__(
            audio=InputAudioBufferAppend.from_pcm(pcm).audio, event_id=eid
        )
    )
    assert text == want_text
    assert logged == elide_frame(want_dict)
    assert ids.sent_type(eid) == InputAudioBufferAppend.type


def test_next_id_and_stamp_share_one_counter() -> None:
    ids = SentEventIds("a1b2c3")
    first = ids.next_id("input_audio_buffer.append")
    stamped = ids.stamp(InputAudioBufferAppend(audio=""))
    assert first != stamped.event_id and ids.n_sent == 2


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
_rows = st.recursive(
    st.none() | st.integers() | _text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_rows)
def test_skipping_redaction_is_safe(row: object) -> None:
    """Whenever the cheap check says a row holds nothing to redact, redacting changes
    nothing; so the writer's output equals the always-redacted one."""
    Secret('sk-te"st\\key42')  # a known key with characters JSON escapes
    text = json.dumps(row, ensure_ascii=False, default=str)
    redacted = json.dumps(redact_obj(row), ensure_ascii=False, default=str)
    if not may_hold_secret(text):
        assert text == redacted
    assert _dump(row, indent=None) == redacted


def test_known_key_and_patterns_are_caught() -> None:
    Secret("sk-live-abcdef123456")
    for row in (
        {"msg": "x sk-live-abcdef123456 y"},
        {"url": "wss://h/?api_key=abcdef123456"},
        {"h": "Authorization: Bearer abcdefghijk"},
    ):
        out = _dump(row, indent=None)
        assert "abcdef123456" not in out and "abcdefghijk" not in out


def test_the_hint_check_covers_the_case_blind_regex() -> None:
    """Every text the redactor's case-blind hint regex finds, the cheap check flags."""
    from hydralab.secrets import _BEARER_HINT

    for text in ("BeArEr x", "TOKEN", "to\u212aen", "xx bearer", "nothing here", "tok en"):
        if _BEARER_HINT.search(text):
            assert may_hold_secret(json.dumps(text, ensure_ascii=False)), text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("abeknortBEKNORT \u212a\u0130"), max_size=12))
def test_the_hint_check_is_a_superset(text: str) -> None:
    from hydralab.secrets import _BEARER_HINT

    if _BEARER_HINT.search(text):
        assert may_hold_secret(json.dumps(text, ensure_ascii=False))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["", " ", "\n", "\r\n", "\t"]))
def test_pcm_decoding_takes_whitespace_as_before(data: bytes, ws: str) -> None:
    import base64

    from hydralab.protocol.hydra import decode_pcm16

    text = base64.b64encode(data).decode()
    spaced = ws.join(text[i : i + 4] for i in range(0, len(text), 4))
    pcm, carry = decode_pcm16(spaced, validate=True)
    assert pcm.tobytes() + carry == data
