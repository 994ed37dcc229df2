"""Offline speech: TTS (eSpeak NG, optional GPL extra), STT (pocketsphinx), VAD, text rules.

Importing this package never loads eSpeak NG; that happens on the first synthesis.
"""

from __future__ import annotations

from hydralab.speech.stt import (
    LocalTranscriber,
    Transcriber,
    Transcript,
    make_transcriber,
)
from hydralab.speech.text import normalize_for_wer, spoken_form, wer
from hydralab.speech.tts import (
    AGENT_VOICE,
    CALLER_VOICE,
    SpeechUnavailableError,
    SynthesizedSpeech,
    Synthesizer,
    WordTiming,
)
from hydralab.speech.tts import Utterance as Utterance  # deprecated alias, one release
from hydralab.speech.vad import (
    SegmentEvent,
    SpeechEnd,
    SpeechSegmenter,
    SpeechStart,
    VoiceActivityDetector,
)

__all__ = [
    "AGENT_VOICE",
    "CALLER_VOICE",
    "LocalTranscriber",
    "SegmentEvent",
    "SpeechEnd",
    "SpeechSegmenter",
    "SpeechStart",
    "SpeechUnavailableError",
    "SynthesizedSpeech",
    "Synthesizer",
    "Transcriber",
    "Transcript",
    "VoiceActivityDetector",
    "WordTiming",
    "make_transcriber",
    "normalize_for_wer",
    "spoken_form",
    "wer",
]
