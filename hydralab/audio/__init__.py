"""Sans-I/O audio: μ-law codec, resamplers, WAV files and the session timeline."""

from __future__ import annotations

from hydralab.audio.mulaw import ULAW_SILENCE, ulaw_decode, ulaw_encode
from hydralab.audio.perturb import (
    NOMINAL_SPEECH_DBFS,
    LinePerturbation,
    LinePerturber,
    PerturbedAudio,
    render_babble_bed,
)
from hydralab.audio.resample import MAX_RATIO_TERM, StreamResampler, resample
from hydralab.audio.timeline import (
    AUDIBLE_DBFS,
    STREAM_FLUSH_EVERY_MS,
    STREAM_MARGIN_MS,
    TRACK_NAMES,
    WAV_NAMES,
    Timeline,
    first_onset,
    last_offset,
)
from hydralab.audio.wav import (
    WavRecovery,
    WavStreamWriter,
    read_wav,
    recover_wav,
    wav_bytes,
    wav_header,
    write_wav,
)

__all__ = [
    "AUDIBLE_DBFS",
    "MAX_RATIO_TERM",
    "NOMINAL_SPEECH_DBFS",
    "STREAM_FLUSH_EVERY_MS",
    "STREAM_MARGIN_MS",
    "TRACK_NAMES",
    "ULAW_SILENCE",
    "WAV_NAMES",
    "LinePerturbation",
    "LinePerturber",
    "PerturbedAudio",
    "StreamResampler",
    "Timeline",
    "WavRecovery",
    "WavStreamWriter",
    "first_onset",
    "last_offset",
    "read_wav",
    "recover_wav",
    "render_babble_bed",
    "resample",
    "ulaw_decode",
    "ulaw_encode",
    "wav_bytes",
    "wav_header",
    "write_wav",
]
