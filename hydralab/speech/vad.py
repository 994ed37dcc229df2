"""Voice activity detection (webrtcvad) and a sans-I/O speech endpointer.

webrtcvad works natively at 8/16/32/48 kHz on 10/20/30 ms frames. Other rates (e.g. 24 kHz)
are accepted: each frame is resampled to 16 kHz with a stateless polyphase filter, which is
accurate enough for a speech/non-speech decision.

Times in events are milliseconds of the input-sample clock: frame ``i`` covers
``[i * frame_ms, (i + 1) * frame_ms)``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from math import gcd

import numpy as np
import webrtcvad

__all__ = [
    "SegmentEvent",
    "SpeechEnd",
    "SpeechSegmenter",
    "SpeechStart",
    "VoiceActivityDetector",
]

#: The window whose quietest frame is the line's noise floor (``noise_gate_db``).
NOISE_FLOOR_WINDOW_MS = 3000
_NATIVE_RATES_HZ = (8000, 16000, 32000, 48000)
_FRAME_MS = (10, 20, 30)


class VoiceActivityDetector:
    """Frame-level speech/non-speech classifier wrapping ``webrtcvad``.

    Args:
        sample_rate_hz: Rate of the frames passed in (any positive rate; non-native rates are
            resampled to 16 kHz per frame).
        frame_ms: Frame length, 10, 20 or 30 ms.
        mode: Aggressiveness 0-3 (3 = most aggressive in rejecting non-speech).
    """

    def __init__(self, *, sample_rate_hz: int = 16000, frame_ms: int = 20, mode: int = 3) -> None:
        if frame_ms not in _FRAME_MS:
            raise ValueError(f"frame_ms must be one of {_FRAME_MS}, got {frame_ms}")
        if not 0 <= mode <= 3:
            raise ValueError(f"mode must be in 0..3, got {mode}")
        if sample_rate_hz <= 0 or (sample_rate_hz * frame_ms) % 1000:
            raise ValueError(
                f"sample_rate_hz={sample_rate_hz} does not give whole {frame_ms} ms frames"
            )
        self.sample_rate_hz = sample_rate_hz
        self.frame_ms = frame_ms
        self.mode = mode
        self.frame_samples = sample_rate_hz * frame_ms // 1000
        self._vad_rate_hz = sample_rate_hz if sample_rate_hz in _NATIVE_RATES_HZ else 16000
        g = gcd(self._vad_rate_hz, sample_rate_hz)
        self._up = self._vad_rate_hz // g
        self._down = sample_rate_hz // g
        self._vad = webrtcvad.Vad(mode)

    def is_speech(self, frame: np.ndarray) -> bool:
        """Classify one frame of exactly ``frame_samples`` int16 samples."""
        if len(frame) != self.frame_samples:
            raise ValueError(
                f"expected a frame of {self.frame_samples} samples "
                f"({self.frame_ms} ms at {self.sample_rate_hz} Hz), got {len(frame)}"
            )
        pcm = np.asarray(frame)
        if pcm.dtype != np.int16:
            pcm = np.clip(np.round(pcm), -32768, 32767).astype(np.int16)
        if self._vad_rate_hz != self.sample_rate_hz:
            from scipy.signal import resample_poly

            y = resample_poly(pcm.astype(np.float64), self._up, self._down)
            pcm = np.clip(np.round(y), -32768, 32767).astype(np.int16)
        return bool(self._vad.is_speech(pcm.tobytes(), self._vad_rate_hz))

    def frames(self, pcm: np.ndarray) -> list[bool]:
        """Per-frame decisions for all whole frames of ``pcm`` (a trailing partial is ignored)."""
        n = len(pcm) // self.frame_samples
        fs = self.frame_samples
        return [self.is_speech(pcm[i * fs : (i + 1) * fs]) for i in range(n)]

    def voiced_frames(self, pcm: np.ndarray, *, warmup_frames: int = 0) -> int:
        """Number of whole frames of ``pcm`` classified as speech.

        Args:
            pcm: int16 mono audio at ``sample_rate_hz``.
            warmup_frames: First feed this many leading frames once, discarding the results.
                webrtcvad flags the first ~4 frames after a noise onset as speech while its
                noise model adapts; warming up on the same audio removes that bias.
        """
        if warmup_frames > 0:
            self.frames(pcm[: warmup_frames * self.frame_samples])
        return sum(self.frames(pcm))


@dataclass(frozen=True)
class SpeechStart:
    """Speech began at ``start_ms`` (start of the first voiced frame of the run)."""

    start_ms: int


@dataclass(frozen=True)
class SpeechEnd:
    """Speech ended at ``end_ms`` (end of the last voiced frame before the hangover)."""

    end_ms: int


SegmentEvent = SpeechStart | SpeechEnd


class SpeechSegmenter:
    """Sans-I/O endpointer: feed frames, get :class:`SpeechStart` / :class:`SpeechEnd` events.

    A candidate segment opens with ``start_frames`` consecutive voiced frames. It is confirmed
    (``SpeechStart`` emitted, dated at the first voiced frame of that run) once it holds
    ``min_speech_ms`` of voiced frames, so clicks and coughs never emit events; the event is
    therefore reported up to ``min_speech_ms`` after ``start_ms``. A candidate that sees
    ``min(candidate_gap_ms, hangover_ms)`` of silence before being confirmed is dropped
    silently (webrtcvad flags the first ~4 frames after any noise onset as speech; this keeps
    them from being glued to the next utterance). A confirmed segment
    ends (``SpeechEnd`` emitted, dated at the end of its last voiced frame) after
    ``hangover_ms`` without voiced frames, so pauses shorter than the hangover do not split it.

    Args:
        sample_rate_hz: Input rate (see :class:`VoiceActivityDetector`).
        frame_ms: Frame length in ms (10, 20 or 30).
        mode: webrtcvad aggressiveness 0-3.
        start_frames: Consecutive voiced frames that open a candidate segment.
        hangover_ms: Silence after the last voiced frame that ends a segment.
        min_speech_ms: Voiced duration a candidate needs before ``SpeechStart`` is emitted.
        candidate_gap_ms: Silence that drops a not-yet-confirmed candidate.
        noise_gate_db: When set, a frame counts as voiced only if webrtcvad says so *and* its
            level is this many dB above the line's noise floor: the 10th percentile of the
            frame levels of the last :data:`NOISE_FLOOR_WINDOW_MS`, digital silence (a lost
            packet) left out. webrtcvad alone takes the steady noise of a 10 dB SNR line
            (about -30 dBFS) for speech and never ends the turn; a production endpoint tracks
            the noise floor. ``None``: webrtcvad alone.
    """

    def __init__(
        self,
        *,
        sample_rate_hz: int = 16000,
        frame_ms: int = 20,
        mode: int = 3,
        start_frames: int = 3,
        hangover_ms: int = 600,
        min_speech_ms: int = 200,
        candidate_gap_ms: int = 200,
        noise_gate_db: float | None = None,
    ) -> None:
        if start_frames < 1:
            raise ValueError("start_frames must be >= 1")
        if min(hangover_ms, min_speech_ms, candidate_gap_ms) < 0:
            raise ValueError("hangover_ms, min_speech_ms and candidate_gap_ms must be >= 0")
        self.vad = VoiceActivityDetector(
            sample_rate_hz=sample_rate_hz, frame_ms=frame_ms, mode=mode
        )
        self.frame_ms = frame_ms
        self.start_frames = start_frames
        self.hangover_ms = hangover_ms
        self.min_speech_ms = min_speech_ms
        self.candidate_gap_ms = candidate_gap_ms
        self.noise_gate_db = noise_gate_db
        self._levels: deque[float] = deque(maxlen=max(1, NOISE_FLOOR_WINDOW_MS // frame_ms))
        self.reset()

    @property
    def frame_samples(self) -> int:
        """Samples per frame expected by :meth:`push`."""
        return self.vad.frame_samples

    @property
    def in_speech(self) -> bool:
        """Whether a confirmed segment is open (``SpeechStart`` sent, no ``SpeechEnd`` yet)."""
        return self._confirmed

    def reset(self) -> None:
        """Forget all state (no events are emitted)."""
        self._run = 0  # consecutive voiced frames
        self._run_start_ms = 0
        self._candidate = False  # a segment is open (confirmed or not)
        self._confirmed = False
        self._seg_start_ms = 0
        self._voiced_ms = 0
        self._last_voiced_end_ms = 0

    def push(self, frame: np.ndarray, *, frame_index: int) -> list[SegmentEvent]:
        """Process one frame (index on the input clock) and return the events it caused."""
        t_start = frame_index * self.frame_ms
        t_end = t_start + self.frame_ms
        voiced = self.vad.is_speech(frame)
        if self.noise_gate_db is not None:
            x = np.asarray(frame, dtype=np.float64)
            power = float(np.mean(x * x))
            level = 10.0 * math.log10(power + 1.0)
            if power >= 1.0:  # digital silence (a lost packet) says nothing about the floor
                self._levels.append(level)
            if self._levels:
                floor = float(np.percentile(np.fromiter(self._levels, float), 10))
                voiced = voiced and level >= floor + self.noise_gate_db
        events: list[SegmentEvent] = []

        if voiced:
            if self._run == 0:
                self._run_start_ms = t_start
            self._run += 1
            if self._candidate:
                self._voiced_ms += self.frame_ms
                self._last_voiced_end_ms = t_end
            elif self._run >= self.start_frames:
                self._candidate = True
                self._seg_start_ms = self._run_start_ms
                self._voiced_ms = self._run * self.frame_ms
                self._last_voiced_end_ms = t_end
            if (
                self._candidate
                and not self._confirmed
                and self._voiced_ms >= max(self.min_speech_ms, 1)
            ):
                self._confirmed = True
                events.append(SpeechStart(start_ms=self._seg_start_ms))
        else:
            self._run = 0
            gap_ms = t_end - self._last_voiced_end_ms
            if self._confirmed and gap_ms >= self.hangover_ms:
                events.append(SpeechEnd(end_ms=self._last_voiced_end_ms))
                self._candidate = False
                self._confirmed = False
            elif (
                self._candidate
                and not self._confirmed
                and gap_ms >= min(self.candidate_gap_ms, self.hangover_ms)
            ):
                self._candidate = False
        return events

    def process(self, pcm: np.ndarray, *, first_frame_index: int = 0) -> list[SegmentEvent]:
        """Push every whole frame of ``pcm`` (convenience for offline use)."""
        fs = self.frame_samples
        events: list[SegmentEvent] = []
        for i in range(len(pcm) // fs):
            events.extend(self.push(pcm[i * fs : (i + 1) * fs], frame_index=first_frame_index + i))
        return events

    def flush(self) -> list[SegmentEvent]:
        """End of stream: close an open confirmed segment at its last voiced frame."""
        events: list[SegmentEvent] = []
        if self._confirmed:
            events.append(SpeechEnd(end_ms=self._last_voiced_end_ms))
        self.reset()
        return events
