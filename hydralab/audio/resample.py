"""Sample-rate conversion: a fixed-latency streaming polyphase FIR and a one-shot soxr wrapper.

Why not ``soxr.ResampleStream`` for the live path: it holds samples back (HQ: 115-175 ms, most
20 ms chunks come back empty, then a burst), which breaks real-time pacing. Why not stateless
per-chunk resampling: edge transients at 50 Hz (error only ~28 dB below the signal). See
``docs/hydra-facts.md``, "Resampling".

:class:`StreamResampler` is a rational L/M polyphase FIR (Kaiser-windowed sinc prototype)
that carries its input history across calls, so streaming in any chunking gives the same samples
as one call over the whole signal, emits exactly ``floor(total_in * out / in)`` samples so far
after every call, and delays the signal by a fixed, whole number of output samples
(:attr:`StreamResampler.delay_samples`, about 3 ms by default). Any ratio whose reduced terms
are at most :data:`MAX_RATIO_TERM` works — the 44.1 kHz family included (44100 -> 8000 is
80/441, 44100 -> 48000 is 160/147, 22050 -> 48000 is 320/147): large terms only make the
prototype longer (about ``taps_per_phase * max(L, M)`` taps), not the work per output sample,
which stays ``taps_per_phase * max(1, M / L)`` multiply-adds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from hydralab.audio.pcm import check_pcm16

__all__ = ["MAX_RATIO_TERM", "StreamResampler", "resample"]

MAX_RATIO_TERM = 1024
"""Largest L or M (of the reduced ratio out/in = L/M) the polyphase resampler accepts."""

_DIRECT_TERM = 64  # up to this, every polyphase branch of a window is computed at once
# The input buffer (history + chunk) is kept between calls up to this many samples (512 KiB);
# a longer chunk (a whole file in one call) gets a temporary buffer instead.
_KEEP_BUFFER_SAMPLES = 1 << 16

DEFAULT_TAPS_PER_PHASE = 48
# Band edges as fractions of the lower Nyquist frequency: flat to 0.85 (3400 Hz at 8 kHz),
# fully attenuated from 1.1 (anything that could alias lands above 0.9 = 3600 Hz at 8 kHz).
_PASS_EDGE = 0.85
_STOP_EDGE = 1.10
_MAX_ATTENUATION_DB = 120.0


@dataclass(frozen=True)
class _Design:
    up: int  # L
    down: int  # M
    taps: int  # prototype length N = 2 * M * delay + 1
    delay_samples: int  # group delay in output samples
    per_phase: int  # K = ceil(N / L): taps of each polyphase branch
    bank_t: npt.NDArray[np.float64]  # (K, L): column p = branch p, time-reversed
    bank: npt.NDArray[np.float64]  # (L, K): row p = branch p, time-reversed
    attenuation_db: float


def _kaiser_beta(attenuation_db: float) -> float:
    """Kaiser window ``beta`` for a stop-band attenuation in dB (Kaiser's empirical formula, as
    ``scipy.signal.kaiser_beta``)."""
    a = attenuation_db
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a > 21:
        return float(0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21))  # float ** float is Any
    return 0.0


def _kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> npt.NDArray[np.float64]:
    """Kaiser-windowed sinc low-pass, ``cutoff`` in cycles per sample, scaled to unit DC gain.

    The same taps (to rounding) as ``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta),
    fs=1.0)``, in numpy only: importing ``scipy.signal`` takes ~0.8 s, and the first
    :class:`StreamResampler` is built on the event loop as a call starts.
    """
    right = cutoff / 0.5  # cutoff as a fraction of the Nyquist frequency (fs = 1)
    m = np.arange(numtaps, dtype=np.float64) - 0.5 * (numtaps - 1)
    h: npt.NDArray[np.float64] = right * np.sinc(right * m)
    h *= np.kaiser(numtaps, beta)
    h /= np.sum(h)  # unit gain at DC
    return h


@functools.lru_cache(maxsize=64)
def _design(up: int, down: int, taps_per_phase: int) -> _Design:
    """Design (once per ratio) the Kaiser low-pass prototype and its polyphase bank."""
    delay = max(1, round(taps_per_phase * max(up, down) / (2 * down)))
    taps = 2 * down * delay + 1  # odd, symmetric: group delay = M * delay upsampled samples
    nyq = 0.5 / max(up, down)  # lower Nyquist frequency, normalised to the upsampled rate
    width = (_STOP_EDGE - _PASS_EDGE) * nyq
    attenuation = min(14.36 * (taps - 1) * width + 7.95, _MAX_ATTENUATION_DB)  # Kaiser formula
    proto = _kaiser_lowpass(taps, 0.5 * (_PASS_EDGE + _STOP_EDGE) * nyq, _kaiser_beta(attenuation))
    proto = proto * up  # zero-stuffing costs a factor L of gain
    per_phase = -(-taps // up)
    padded = np.zeros(per_phase * up, dtype=np.float64)
    padded[:taps] = proto
    # bank[p, i] = h[p + i*L]; reversed along i so a window (oldest sample first) dots with it.
    bank = padded.reshape(per_phase, up).T[:, ::-1]
    bank_t = np.ascontiguousarray(bank.T)
    bank_t.setflags(write=False)
    bank = np.ascontiguousarray(bank)
    bank.setflags(write=False)
    return _Design(up, down, taps, delay, per_phase, bank_t, bank, attenuation)


def _to_int16(y: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    """Round and saturate to int16. Overwrites ``y``, which must be the caller's own scratch."""
    np.rint(y, out=y)
    np.maximum(y, -32768.0, out=y)  # same as np.clip (no NaN here), without its Python overhead
    np.minimum(y, 32767.0, out=y)
    return y.astype(np.int16)


def _check_rate(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (Hz), got {value!r}")


class StreamResampler:
    """Streaming polyphase FIR resampler for PCM16 mono with fixed latency.

    Args:
        in_rate_hz: input sample rate.
        out_rate_hz: output sample rate. ``out/in`` reduced by their gcd to ``L/M`` must have
            ``L, M <= 1024`` (:data:`MAX_RATIO_TERM`: 44100 <-> 8000/16000/24000/48000,
            22050 and 11025 included); equal rates are an identity pass-through.
        taps_per_phase: filter length in samples of the lower of the two rates. The group delay
            is about ``taps_per_phase / 2`` of those samples (3 ms for 48 at 8 kHz) and the
            stop-band attenuation about ``1.8 * taps_per_phase + 8`` dB (94 dB for 48).

    Raises:
        ValueError: rates not positive integers, or L or M above 1024 (e.g. 44101 -> 48000).
    """

    def __init__(
        self,
        in_rate_hz: int,
        *,
        out_rate_hz: int,
        taps_per_phase: int = DEFAULT_TAPS_PER_PHASE,
    ) -> None:
        _check_rate("in_rate_hz", in_rate_hz)
        _check_rate("out_rate_hz", out_rate_hz)
        if taps_per_phase < 2:
            raise ValueError(f"taps_per_phase must be >= 2, got {taps_per_phase}")
        g = math.gcd(int(in_rate_hz), int(out_rate_hz))
        up, down = int(out_rate_hz) // g, int(in_rate_hz) // g
        if max(up, down) > MAX_RATIO_TERM:
            raise ValueError(
                f"{in_rate_hz} Hz -> {out_rate_hz} Hz needs a {up}/{down} polyphase ratio; "
                f"StreamResampler supports L, M <= {MAX_RATIO_TERM}. Use resample() (soxr) "
                "for whole utterances at such rates."
            )
        self.in_rate_hz = int(in_rate_hz)
        self.out_rate_hz = int(out_rate_hz)
        self.taps_per_phase = int(taps_per_phase)
        self._identity = up == down
        self._d = _design(up, down, self.taps_per_phase) if not self._identity else None
        self._hist_len = 0 if self._d is None else self._d.per_phase - 1 + down
        # buf[:hist_len] is the input history (newest last); each call appends its chunk after it.
        self._buf: npt.NDArray[np.float64] = np.zeros(self._hist_len, dtype=np.float64)
        self._n_in = 0
        self._n_out = 0

    @property
    def ratio(self) -> tuple[int, int]:
        """The reduced ratio ``(L, M)`` with ``out/in = L/M``."""
        g = math.gcd(self.in_rate_hz, self.out_rate_hz)
        return self.out_rate_hz // g, self.in_rate_hz // g

    @property
    def num_taps(self) -> int:
        """Length of the prototype low-pass filter (0 for the identity)."""
        return 0 if self._d is None else self._d.taps

    @property
    def delay_samples(self) -> int:
        """Group delay in output samples (a whole number by design)."""
        return 0 if self._d is None else self._d.delay_samples

    @property
    def delay_ms(self) -> float:
        """Group delay in milliseconds: output sample ``k`` corresponds to input time
        ``k / out_rate_hz - delay_ms / 1000``."""
        return 1000.0 * self.delay_samples / self.out_rate_hz

    @property
    def stopband_attenuation_db(self) -> float:
        """Design stop-band attenuation of the prototype (Kaiser estimate)."""
        return math.inf if self._d is None else self._d.attenuation_db

    @property
    def samples_in(self) -> int:
        """Total input samples processed since construction or :meth:`reset`."""
        return self._n_in

    @property
    def samples_out(self) -> int:
        """Total output samples emitted; always ``floor(samples_in * out / in)``."""
        return self._n_out

    def reset(self) -> None:
        """Forget the filter history and counters (start a new, unrelated stream)."""
        self._buf[: self._hist_len] = 0.0
        self._n_in = 0
        self._n_out = 0

    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Resample the next chunk of the stream.

        Args:
            pcm: mono int16 samples at ``in_rate_hz`` (any length, including 0).

        Returns:
            New int16 samples at ``out_rate_hz``; after the call the cumulative output length is
            exactly ``floor(samples_in * out_rate_hz / in_rate_hz)``.

        Raises:
            TypeError: ``pcm`` is not a 1-D int16 array.
        """
        pcm = check_pcm16(pcm, "StreamResampler.process")
        n = pcm.shape[0]
        d = self._d
        if d is None:
            self._n_in += n
            self._n_out += n
            return pcm.copy()
        up, down = d.up, d.down
        start_in = self._n_in
        end_out = ((start_in + n) * up) // down
        count = end_out - self._n_out
        hist = self._hist_len
        total = hist + n
        buf = self._buf
        if total > buf.shape[0]:
            buf = np.empty(total, dtype=np.float64)
            buf[:hist] = self._buf[:hist]
            if total <= _KEEP_BUFFER_SAMPLES:
                self._buf = buf
        else:
            buf = buf[:total]
        buf[hist:] = pcm  # exact int16 -> float64
        y = self._compute(buf, start_in, count) if count > 0 else np.zeros(0, dtype=np.float64)
        self._buf[:hist] = buf[n:]  # the newest hist_len samples (numpy copes with the overlap)
        self._n_in = start_in + n
        self._n_out = end_out
        return _to_int16(y)

    def _compute(
        self, buf: npt.NDArray[np.float64], start_in: int, count: int
    ) -> npt.NDArray[np.float64]:
        d = self._d
        assert d is not None
        up, down, k = d.up, d.down, d.per_phase
        # Output m uses inputs up to n = floor(m*M/L) with branch p = m*M mod L. buf[0] holds
        # input start_in - hist_len, so the window ending at input n is row n - start_in + M.
        first = self._n_out * down
        row0 = first // up - start_in + down
        step = buf.strides[0]
        if down == 1:  # rows are consecutive; each yields L consecutive outputs
            n_rows = (first % up + count + up - 1) // up
            win = np.ndarray((n_rows, k), np.float64, buf, row0 * step, (step, step))
            full = win @ d.bank_t
            phase0 = first % up
            return full.reshape(-1)[phase0 : phase0 + count]
        if up == 1:  # rows step by M; a single branch
            win = np.ndarray((count, k), np.float64, buf, row0 * step, (down * step, step))
            return np.ascontiguousarray(win) @ d.bank_t[:, 0]
        prod = np.arange(self._n_out, self._n_out + count, dtype=np.int64) * down
        newest = prod // up
        phase = prod - newest * up
        rows = newest - (start_in - down)
        n_win = buf.shape[0] - k + 1
        windows = np.ndarray((n_win, k), np.float64, buf, 0, (step, step))
        if max(up, down) > _DIRECT_TERM:  # many branches: only the one each output needs
            picked_rows: npt.NDArray[np.float64] = windows[rows]
            gathered: npt.NDArray[np.float64] = np.einsum("ik,ik->i", picked_rows, d.bank[phase])
            return gathered
        if down > up:  # rows are distinct: compute only those
            picked: npt.NDArray[np.float64] = np.ascontiguousarray(windows[rows]) @ d.bank_t
            out: npt.NDArray[np.float64] = picked[np.arange(count), phase]
            return out
        lo = int(rows[0])
        full = windows[lo : int(rows[-1]) + 1] @ d.bank_t  # every branch of every row
        return full.reshape(-1)[(rows - lo) * up + phase]


def resample(
    pcm: npt.NDArray[np.int16], *, in_rate_hz: int, out_rate_hz: int
) -> npt.NDArray[np.int16]:
    """Resample a whole utterance at once with soxr (VHQ, zero-phase).

    For complete buffers (TTS output, STT input), not for live 20 ms streams.

    Args:
        pcm: mono int16 samples.
        in_rate_hz: input sample rate.
        out_rate_hz: output sample rate (any ratio).

    Returns:
        int16 samples, exactly ``round(len(pcm) * out_rate_hz / in_rate_hz)`` long.
    """
    pcm = check_pcm16(pcm, "resample")
    _check_rate("in_rate_hz", in_rate_hz)
    _check_rate("out_rate_hz", out_rate_hz)
    n_out = (2 * pcm.shape[0] * int(out_rate_hz) + int(in_rate_hz)) // (2 * int(in_rate_hz))
    if in_rate_hz == out_rate_hz:
        return pcm.copy()
    if pcm.shape[0] == 0:
        return np.zeros(0, dtype=np.int16)
    y = np.asarray(soxr.resample(pcm, in_rate_hz, out_rate_hz, quality="VHQ"), dtype=np.int16)
    if y.shape[0] >= n_out:
        return y[:n_out].copy()
    return np.concatenate((y, np.zeros(n_out - y.shape[0], dtype=np.int16)))
