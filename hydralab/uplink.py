"""Caller → model audio (sans-I/O): μ-law 8 kHz in, 20 ms PCM16 16 kHz frames out.

Each caller frame is decoded once and goes three ways: the 8 kHz wire timeline (exactly what the
caller sent), the 48 kHz user track (placed earlier by its resampler's delay, so both line up)
and the 16 kHz stream to the model. While the caller sends nothing, :meth:`Uplink.silence_due`
fills the stream with silence (Hydra's VAD and idle timer need a continuous stream). The 16 kHz
audio of each user utterance (from ``user_speech_start``, with a pre-roll, to
``user_speech_stop``) is kept for its transcription.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from hydralab.audio import StreamResampler, Timeline, ulaw_decode

__all__ = ["Uplink"]

_F8 = 160  # 20 ms at 8 kHz
_F16 = 320  # 20 ms at 16 kHz
_FRAME_NS = 20_000_000
_SILENT_PEAK = 64  # |sample| at or below this (about -54 dBFS) is silence


class Uplink:
    """The caller's audio on its way to the model, and onto the recording.

    Args:
        timeline: The 48 kHz recording (its ``user`` track is written here).
        wire: The 8 kHz wire timeline (its ``user`` track is written here).
        preroll_ms: 16 kHz audio kept before ``user_speech_start`` for the utterance's STT.
        silence_fill_after_ms: Caller silence after which the stream is filled with silence.
        start_ns: Clock time the silence fill counts from.
        max_lead_ms: How far the caller's silence may run ahead of the clock. Some callers
            send silence faster than real time while they wait (EVA's simulator: 18 frames per
            250 ms); silent frames beyond this lead are dropped (counted in
            :attr:`ahead_silence_ms`), so the recording and the model's stream keep to real
            time.
        max_speech_lead_ms: How far the caller's speech may run ahead of the clock. A caller
            that floods speech faster than real time would push minutes of audio to the model
            at once; frames beyond this lead are dropped (counted in :attr:`ahead_speech_ms`
            and :attr:`ahead_speech_frames`). Speech within it is never dropped.
            :meth:`allow_backlog` widens it by a backlog the caller could have built up
            legitimately (its frames held while the model connected).
    """

    def __init__(
        self,
        *,
        timeline: Timeline,
        wire: Timeline,
        preroll_ms: float = 200.0,
        silence_fill_after_ms: float = 60.0,
        start_ns: int = 0,
        max_lead_ms: float = 60.0,
        max_speech_lead_ms: float = 1000.0,
    ) -> None:
        self.timeline = timeline
        self.wire = wire
        self._up16 = StreamResampler(8000, out_rate_hz=16000)
        self._up48 = StreamResampler(8000, out_rate_hz=48000)
        self._pending16 = np.zeros(0, dtype=np.int16)
        self._preroll: deque[npt.NDArray[np.int16]] = deque(maxlen=max(1, int(preroll_ms // 20)))
        self._utt: list[npt.NDArray[np.int16]] | None = None
        self._gap_ns = int(silence_fill_after_ms * 1e6)
        self.last_arrival_ns = start_ns  # the caller's last frame (the fill counts from it)
        self.dropped_ms = 0.0
        self.ahead_silence_ms = 0.0
        self.ahead_speech_ms = 0.0
        self.ahead_speech_frames = 0
        self._max_lead_ns = int(max_lead_ms * 1e6)
        self._max_speech_lead_ns = max(self._max_lead_ns, int(max_speech_lead_ms * 1e6))
        self._backlog_ns = 0
        self._stream_end_ns: int | None = None  # where the audio sent so far ends, in time

    # ------------------------------------------------------------------ audio
    def caller_audio(self, ulaw: bytes, t_ns: int) -> list[npt.NDArray[np.int16]]:
        """A caller media payload that arrived at ``t_ns``: the 16 kHz frames to send now."""
        pcm8 = ulaw_decode(ulaw)
        if pcm8.size == 0:
            return []
        dur_ns = pcm8.size * 1_000_000_000 // 8000
        end = self._stream_end_ns
        if end is None or end + dur_ns < t_ns:  # first frame, or the caller paused: real time
            end = t_ns - dur_ns
        lead_ns = end + dur_ns - t_ns
        if lead_ns > self._max_lead_ns and int(np.abs(pcm8).max()) <= _SILENT_PEAK:
            self.ahead_silence_ms += dur_ns / 1e6
            return []
        if lead_ns > self._max_speech_lead_ns + self._backlog_ns:
            self.ahead_speech_ms += dur_ns / 1e6
            self.ahead_speech_frames += 1
            return []
        self._stream_end_ns = end + dur_ns
        self.last_arrival_ns = t_ns
        # The 48 kHz copy lags the wire by the resampler's delay: place it where the wire has it.
        shift_ns = round(self._up48.delay_ms * 1e6)
        self.timeline.append_user(self._up48.process(pcm8), t_ns=t_ns - shift_ns)
        self.wire.append_user(pcm8, t_ns=t_ns)
        return self._forward(self._up16.process(pcm8), t_ns)

    def allow_backlog(self, backlog_ms: float) -> None:
        """The caller's first frames may have waited this long (the shell reads the caller
        only once the model is up): released at once, they run that far ahead of the clock
        and are no flood, so the speech lead may be that much longer (for the whole call: a
        stream that started ahead stays ahead)."""
        self._backlog_ns = max(self._backlog_ns, round(max(0.0, backlog_ms) * 1e6))

    def _forward(self, pcm16: npt.NDArray[np.int16], t_ns: int) -> list[npt.NDArray[np.int16]]:
        self._preroll.append(pcm16)
        if self._utt is not None:
            self._utt.append(pcm16)
        self._pending16 = np.concatenate([self._pending16, pcm16])
        n = self._pending16.size // _F16 * _F16
        frames = [self._pending16[k : k + _F16] for k in range(0, n, _F16)]
        self._pending16 = self._pending16[n:]
        return frames

    def next_silence_ns(self) -> int:
        """When the stream needs silence if the caller stays quiet: once the caller has been
        quiet for the fill threshold and the audio sent so far has run out."""
        at = self.last_arrival_ns + self._gap_ns
        return at if self._stream_end_ns is None else max(at, self._stream_end_ns)

    def silence_due(self, t_ns: int) -> list[npt.NDArray[np.int16]]:
        """20 ms of silence if the stream needs it (:meth:`next_silence_ns`), else nothing."""
        if t_ns < self.next_silence_ns():
            return []
        pcm16 = self._up16.process(np.zeros(_F8, dtype=np.int16))
        frames = self._forward(pcm16, t_ns)
        # one frame per 20 ms from here on, not one per call
        self._stream_end_ns = max(self._stream_end_ns or t_ns, t_ns) + _FRAME_NS
        return frames

    def dropped(self, frames: list[npt.NDArray[np.int16]]) -> None:
        """These frames could not be sent (the model was reconnecting): counted, not queued."""
        self.dropped_ms += sum(f.size for f in frames) / 16.0

    # ------------------------------------------------------------------ utterances
    @property
    def in_utterance(self) -> bool:
        return self._utt is not None

    def start_utterance(self) -> None:
        """``user_speech_start``: collect the utterance from the pre-roll on."""
        self._utt = list(self._preroll)

    def stop_utterance(self) -> npt.NDArray[np.int16]:
        """``user_speech_stop``: the utterance's 16 kHz audio (empty if none was started)."""
        chunks, self._utt = self._utt or [], None
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
