"""Offline Hydra emulator: a local server speaking Hydra's wire protocol from a script.

:mod:`.core` is the sans-I/O session state machine; :mod:`.server` the asyncio shell.
"""

from hydralab.emulator.core import (
    Close,
    EmulatorConfig,
    EmulatorFaults,
    EmulatorSession,
    GroundTruth,
    Send,
    SpeechCache,
    speak_texts,
    split_phrases,
)
from hydralab.emulator.server import Emulator, serve_forever

__all__ = [
    "Close",
    "Emulator",
    "EmulatorConfig",
    "EmulatorFaults",
    "EmulatorSession",
    "GroundTruth",
    "Send",
    "SpeechCache",
    "serve_forever",
    "speak_texts",
    "split_phrases",
]
