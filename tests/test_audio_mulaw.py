"""G.711 μ-law: bit-exact with CPython's audioop and with an independent formula."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest

from hydralab.audio import ULAW_SILENCE, ulaw_decode, ulaw_encode

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def ref_encode(sample: int) -> int:
    """G.711 μ-law of a 16-bit sample, written from the formula (not from a segment table).

    audioop encodes the top 14 bits: v = x >> 2 (floor), magnitude m = min(|v|, 8159) + 33,
    exponent = position of m's leading one above bit 5, mantissa = the 4 bits below it,
    and the code is the bitwise complement of sign|exponent|mantissa.
    """
    v = sample >> 2
    sign = 0x80 if v < 0 else 0x00
    m = min(abs(v), 8159) + 33
    exponent = m.bit_length() - 6
    if exponent > 7:  # only at the clip level: the largest magnitude code
        return 0x80 if sign == 0 else 0x00
    mantissa = (m >> (exponent + 1)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ref_decode(code: int) -> int:
    """G.711 μ-law expansion: ((mantissa << 3) + 0x84) << exponent, minus the bias."""
    u = ~code & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


def test_encode_matches_formula_for_every_int16() -> None:
    expected = bytes(ref_encode(int(x)) for x in ALL_INT16)
    assert ulaw_encode(ALL_INT16) == expected


def test_decode_matches_formula_for_every_code() -> None:
    expected = np.array([ref_decode(c) for c in ALL_CODES], dtype=np.int16)
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def _audioop() -> types.ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module: types.ModuleType = pytest.importorskip("audioop")
        return module


def test_encode_bit_exact_with_audioop() -> None:
    audioop = _audioop()
    assert ulaw_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.astype("<i2").tobytes(), 2)


def test_decode_bit_exact_with_audioop() -> None:
    audioop = _audioop()
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype="<i2")
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_silence_code() -> None:
    assert ULAW_SILENCE == 0xFF
    assert ulaw_encode(np.zeros(160, dtype=np.int16)) == bytes([ULAW_SILENCE]) * 160
    np.testing.assert_array_equal(ulaw_decode(bytes([ULAW_SILENCE]) * 4), np.zeros(4))


def test_round_trip_codes_and_samples() -> None:
    decoded = ulaw_decode(ALL_CODES)
    reencoded = ulaw_encode(decoded)
    # Every code survives decode -> encode except 0x7F, the "negative zero" (decodes to 0).
    differ = [c for c in range(256) if reencoded[c] != c]
    assert differ == [0x7F]
    assert reencoded[0x7F] == ULAW_SILENCE
    # Linear -> μ-law -> linear keeps the G.711 error bound (4-bit mantissa) below the clip.
    x = ALL_INT16.astype(np.int32)
    err = np.abs(ulaw_decode(ulaw_encode(ALL_INT16)).astype(np.int32) - x)
    inside = np.abs(x) <= 32124
    assert np.all(err[inside] <= np.abs(x[inside]) / 32 + 8)


def test_types_and_lengths() -> None:
    out = ulaw_decode(bytearray(b"\x00\x80\xff"))
    assert out.dtype == np.int16
    assert out.tolist() == [-32124, 32124, 0]
    assert ulaw_decode(memoryview(b"")).shape == (0,)
    assert ulaw_encode(np.zeros(0, dtype=np.int16)) == b""
    assert isinstance(ulaw_encode(np.ones(3, dtype=np.int16)), bytes)
    with pytest.raises(TypeError, match="int16"):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        ulaw_encode([0, 1])  # type: ignore[arg-type]
