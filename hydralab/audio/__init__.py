"""Sans-I/O audio: μ-law codec, resamplers, WAV files and the session timeline.

The names below are imported lazily (PEP 562), except the resampler's: ``import hydralab.audio``
loads ``hydralab.audio.resample`` only, so code that needs the resampler or the μ-law codec does
not pay for the others (:mod:`~hydralab.audio.perturb` and its TTS, the timeline, WAV files).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hydralab._lazy import lazy_attributes

# Eager, not lazy: ``resample`` names both a function and the submodule defining it. Importing the
# submodule (any ``from hydralab.audio.resample import ...``) binds the *module* as this package's
# ``resample`` attribute the first time it loads; loading it here first, then binding the function,
# keeps ``hydralab.audio.resample`` the function as before. It costs numpy and soxr only (no scipy).
from hydralab.audio.resample import MAX_RATIO_TERM, StreamResampler, resample

if TYPE_CHECKING:  # the same names, eagerly, for type checkers (the runtime path is __getattr__)
    from hydralab.audio.mulaw import ULAW_SILENCE, ulaw_decode, ulaw_encode
    from hydralab.audio.perturb import (
        NOMINAL_SPEECH_DBFS,
        LinePerturbation,
        LinePerturber,
        PerturbedAudio,
        render_babble_bed,
    )
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

# public name -> the submodule of this package that defines it
_LAZY: dict[str, str] = {
    "ULAW_SILENCE": "mulaw",
    "ulaw_decode": "mulaw",
    "ulaw_encode": "mulaw",
    "LinePerturbation": "perturb",
    "LinePerturber": "perturb",
    "NOMINAL_SPEECH_DBFS": "perturb",
    "PerturbedAudio": "perturb",
    "render_babble_bed": "perturb",
    "AUDIBLE_DBFS": "timeline",
    "STREAM_FLUSH_EVERY_MS": "timeline",
    "STREAM_MARGIN_MS": "timeline",
    "TRACK_NAMES": "timeline",
    "Timeline": "timeline",
    "WAV_NAMES": "timeline",
    "first_onset": "timeline",
    "last_offset": "timeline",
    "WavRecovery": "wav",
    "WavStreamWriter": "wav",
    "read_wav": "wav",
    "recover_wav": "wav",
    "wav_bytes": "wav",
    "wav_header": "wav",
    "write_wav": "wav",
}


_lazy_getattr = lazy_attributes(__name__, _LAZY, globals())


if not TYPE_CHECKING:  # hidden from type checkers, so an unknown name stays an error for them
    __getattr__ = _lazy_getattr


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
