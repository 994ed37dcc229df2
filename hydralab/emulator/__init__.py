"""Offline Hydra emulator: a local server speaking Hydra's wire protocol from a script.

:mod:`.core` is the sans-I/O session state machine; :mod:`.server` the asyncio shell.
``EmulatorConfig()`` is the ``classic`` profile; ``EmulatorConfig.live()`` (or
:func:`live_config`) behaves like the live service; ``EmulatorConfig(drift=EmulatorDrift(...))``
makes it stray from the script with questions of its own.
"""

from hydralab.emulator.core import (
    DRIFT_KINDS,
    MODEL_OUTPUT_RATES_HZ,
    PROFILES,
    S2S_PATH,
    VOICE_ROSTERS,
    Close,
    EmulatorConfig,
    EmulatorDrift,
    EmulatorFaults,
    EmulatorSession,
    GroundTruth,
    Send,
    SpeechCache,
    drift_texts,
    live_config,
    speak_texts,
    split_phrases,
)
from hydralab.emulator.server import Emulator, serve_forever

__all__ = [
    "DRIFT_KINDS",
    "MODEL_OUTPUT_RATES_HZ",
    "PROFILES",
    "S2S_PATH",
    "VOICE_ROSTERS",
    "Close",
    "Emulator",
    "EmulatorConfig",
    "EmulatorDrift",
    "EmulatorFaults",
    "EmulatorSession",
    "GroundTruth",
    "Send",
    "SpeechCache",
    "drift_texts",
    "live_config",
    "serve_forever",
    "speak_texts",
    "split_phrases",
]
