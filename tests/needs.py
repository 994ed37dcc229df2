"""Skip markers for tests that need an optional extra.

The ``speech`` extra (espeakng-loader: eSpeak NG, GPL-3.0) is opt-in, so every test that
synthesizes speech, directly or through the emulator or the scripted caller, skips without it.
pandas comes with the ``notebooks`` extra; tests of its tables skip (or check less) without it.
"""

from __future__ import annotations

import importlib.util

import pytest

from hydralab.speech.tts import Synthesizer

SPEECH = Synthesizer.available()
SPEECH_REASON = "needs the 'speech' extra (eSpeak NG): pip install 'hydralab[speech]'"
needs_speech = pytest.mark.skipif(not SPEECH, reason=SPEECH_REASON)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a module without __spec__ in sys.modules
        return False


PANDAS = _importable("pandas")


def require_speech() -> None:
    """Skip the calling test when eSpeak NG cannot be loaded (for shared helpers)."""
    if not SPEECH:
        pytest.skip(SPEECH_REASON)
