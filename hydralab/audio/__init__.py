"""Sans-I/O audio: μ-law codec, resamplers, WAV files and the session timeline."""

from __future__ import annotations

from hydralab.audio.mulaw import ULAW_SILENCE, ulaw_decode, ulaw_encode
from hydralab.audio.resample import MAX_RATIO_TERM, StreamResampler, resample
from hydralab.audio.timeline import (
    AUDIBLE_DBFS,
    TRACK_NAMES,
    Timeline,
    first_onset,
    last_offset,
)
from hydralab.audio.wav import read_wav, wav_bytes, write_wav

__all__ = [
    "AUDIBLE_DBFS",
    "MAX_RATIO_TERM",
    "TRACK_NAMES",
    "ULAW_SILENCE",
    "StreamResampler",
    "Timeline",
    "first_onset",
    "last_offset",
    "read_wav",
    "resample",
    "ulaw_decode",
    "ulaw_encode",
    "wav_bytes",
    "write_wav",
]
