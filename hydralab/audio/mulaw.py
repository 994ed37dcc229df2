"""G.711 μ-law codec with numpy lookup tables, bit-exact with CPython's ``audioop``.

``audioop`` is deprecated and gone in Python 3.13; these tables reproduce
``audioop.lin2ulaw(data, 2)`` for every int16 input and ``audioop.ulaw2lin(data, 2)`` for every
code, so no ``audioop``/``audioop-lts`` dependency is needed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ULAW_SILENCE", "ulaw_decode", "ulaw_encode"]

ULAW_SILENCE = 0xFF
"""The μ-law code for digital silence (linear 0)."""

_BIAS = 0x84
_CLIP_14 = 8159  # CPython's 14-bit clip level (32635 >> 2)
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def _build_encode_table() -> npt.NDArray[np.uint8]:
    """Encode table indexed by ``int16 value + 32768`` (CPython ``st_14linear2ulaw``)."""
    linear = np.arange(-32768, 32768, dtype=np.int32)
    pcm14 = linear >> 2  # audioop feeds the top 14 bits (arithmetic shift)
    mask = np.where(pcm14 < 0, 0x7F, 0xFF).astype(np.int32)
    magnitude = np.minimum(np.abs(pcm14), _CLIP_14) + (_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, magnitude, side="left").astype(np.int32)
    # At the clip level the biased magnitude (8192) is past the last segment: maximum code.
    overflow = seg >= 8
    seg_c = np.minimum(seg, 7)
    uval = (seg_c << 4) | ((magnitude >> (seg_c + 1)) & 0xF)
    code = np.where(overflow, 0x7F ^ mask, uval ^ mask)
    return code.astype(np.uint8)


def _build_decode_table() -> npt.NDArray[np.int16]:
    """Decode table indexed by μ-law code (CPython ``st_ulaw2linear16``)."""
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = ((u & 0x0F) << 3) + _BIAS
    t = t << ((u & 0x70) >> 4)
    linear = np.where(u & 0x80, _BIAS - t, t - _BIAS)
    return linear.astype(np.int16)


_ENCODE = _build_encode_table()
_DECODE = _build_decode_table()
_ENCODE.setflags(write=False)
_DECODE.setflags(write=False)


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode PCM16 samples to G.711 μ-law bytes (one byte per sample).

    Args:
        pcm: mono int16 samples (any shape is flattened in C order).

    Returns:
        The μ-law bytes, bit-exact with ``audioop.lin2ulaw(pcm.tobytes(), 2)``.
    """
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError(
            f"ulaw_encode expects an int16 numpy array, got {type(pcm).__name__}"
            + (f" of dtype {pcm.dtype}" if isinstance(pcm, np.ndarray) else "")
        )
    index = pcm.reshape(-1).astype(np.int32) + 32768
    return bytes(_ENCODE[index].tobytes())


def ulaw_decode(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """Decode G.711 μ-law bytes to PCM16 samples.

    Args:
        data: μ-law bytes.

    Returns:
        A new int16 array, bit-exact with ``audioop.ulaw2lin(data, 2)``.
    """
    codes = np.frombuffer(data, dtype=np.uint8)
    return _DECODE[codes]
