"""The one PCM16 input check of the audio core."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["check_pcm16"]


def check_pcm16(pcm: object, where: str = "audio") -> npt.NDArray[np.int16]:
    """``pcm`` if it is mono 1-D int16 PCM, else a ``TypeError`` that says how to fix it."""
    if not isinstance(pcm, np.ndarray):
        raise TypeError(f"{where} expects a 1-D int16 numpy array, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise TypeError(
            f"{where} expects int16 PCM, got dtype {pcm.dtype}; convert floats in [-1, 1] with "
            "np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)"
        )
    if pcm.ndim != 1:
        raise TypeError(f"{where} expects mono 1-D int16 PCM, got shape {pcm.shape}")
    return pcm
