"""The session timeline: caller and assistant audio as 48 kHz PCM16 tracks on one clock.

A chunk is written at the sample position of its clock time; where nothing was
written a track holds silence. Caller audio is appended contiguously while frames arrive steadily
(jitter never inserts silence, cf. EVA #176) and padded to the clock position when the sender
fell silent (real silence is never collapsed, cf. pipecat #4561). Assistant audio is written by
the pacer at the moment each frame is played, so burst delivery and barge-in drops never
distort it. The WAV files are views of this timeline.

The WAV files are written at the end (:meth:`Timeline.save`) or, for crash safety, as the call
goes: :meth:`Timeline.open_files` creates them, :meth:`Timeline.flush` (called periodically by
the shell) streams into them the audio that can no longer change — everything older than a
safety margin (:data:`STREAM_MARGIN_MS`) — and :meth:`Timeline.close` (or :meth:`save` on the
same directory) writes the rest and fixes the headers. The files then hold exactly the bytes
:meth:`save` writes. A process killed mid-call leaves valid WAVs up to the last flush
(:func:`hydralab.audio.wav.recover_wav` repairs a flush torn by the kill).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from hydralab.audio.pcm import check_pcm16
from hydralab.audio.wav import WavStreamWriter, write_wav

__all__ = [
    "STREAM_FLUSH_EVERY_MS",
    "STREAM_MARGIN_MS",
    "TRACK_NAMES",
    "WAV_NAMES",
    "Timeline",
    "first_onset",
    "last_offset",
]

TRACK_NAMES: Final = ("user", "assistant")
WAV_NAMES: Final = {name: f"audio_{name}.wav" for name in (*TRACK_NAMES, "mixed")}
"""The recordings' file names, by track (``"mixed"``: both tracks summed)."""
_NS_PER_S: Final = 1_000_000_000
_SCAN_BLOCK: Final = 1 << 16  # windows examined per vectorised step of the onset scans
_CLEAN: Final = 1 << 62  # a track's ``dirty`` when nothing was written since the last flush

STREAM_MARGIN_MS: Final = 5000.0
"""How old audio must be before :meth:`Timeline.flush` streams it to the files. What may still
change near the present: the play-out placer records assistant audio up to its lead (tens of
ms) ahead of the send clock and a Twilio ``clear`` erases that lead (at most the underrun
tolerance plus a frame, ~100 ms); a caller chunk is placed up to its length plus its arrival
jitter before the present; :meth:`Timeline.append` moves the last half second of a stream later
when its sender slipped. 5 s is well above all of them. One change no margin covers:
:meth:`Timeline.append` moves a *whole* segment earlier when a chunk reveals an earlier anchor
(arrival jitter, or a sender clock faster than ours), and a caller that sends without pause is
one segment from the start of the call. Such changes are still recorded exactly: rewritten in
place at the next flush when within twice the margin of the streamed end, else by
:meth:`Timeline.close` (until then a crash leaves those samples as they were when streamed)."""
STREAM_FLUSH_EVERY_MS: Final = 1000.0
""":meth:`Timeline.flush` writes when at least this much new audio can be streamed (a shell may
call it on every tick)."""


class _Track:
    """A growable int16 buffer in fixed-size blocks; unwritten samples are zero.

    Growing never copies what is already recorded (a doubling buffer copied the whole track on
    the event loop: 79 ms at 2 min of a call, 207 ms at 8.5 min); only :meth:`view` (the whole
    track, at the end of a call) assembles one contiguous array."""

    __slots__ = ("_blocks", "dirty", "length")

    BLOCK: Final = 1 << 18  # samples per block: 5.5 s at 48 kHz, 33 s at 8 kHz (512 KiB)

    def __init__(self) -> None:
        self._blocks: list[npt.NDArray[np.int16]] = []
        self.length = 0
        self.dirty = _CLEAN  # lowest sample changed since the last flush to the files

    def _span(self, a: int, b: int) -> Iterator[tuple[npt.NDArray[np.int16], int, int, int]]:
        """``(block, lo, hi, offset)`` for each block piece of samples ``[a, b)``: samples
        ``a + offset ...`` are ``block[lo:hi]``."""
        size = self.BLOCK
        pos = a
        while pos < b:
            k, lo = divmod(pos, size)
            hi = min(size, lo + (b - pos))
            yield self._blocks[k], lo, hi, pos - a
            pos += hi - lo

    def write(self, start: int, pcm: npt.NDArray[np.int16]) -> None:
        n = pcm.shape[0]
        if n == 0:
            return  # an empty chunk neither writes nor extends the track
        self.dirty = min(self.dirty, start)
        end = start + n
        while len(self._blocks) * self.BLOCK < end:
            self._blocks.append(np.zeros(self.BLOCK, dtype=np.int16))
        k, lo = divmod(start, self.BLOCK)
        if lo + n <= self.BLOCK:  # the common case: one block
            self._blocks[k][lo : lo + n] = pcm
        else:
            for block, blo, bhi, off in self._span(start, end):
                block[blo:bhi] = pcm[off : off + bhi - blo]
        if end > self.length:
            self.length = end

    def read(self, a: int, b: int) -> npt.NDArray[np.int16]:
        """A copy of samples ``[a, b)``, cut at the track's end (``view()[a:b]``)."""
        a, b = max(0, a), min(b, self.length)
        out = np.empty(max(0, b - a), dtype=np.int16)
        for block, lo, hi, off in self._span(a, b):
            out[off : off + hi - lo] = block[lo:hi]
        return out

    def _zero(self, a: int, b: int) -> None:
        for block, lo, hi, _ in self._span(max(0, a), min(b, len(self._blocks) * self.BLOCK)):
            block[lo:hi] = 0

    def view(self) -> npt.NDArray[np.int16]:
        """The whole track, contiguous (a copy when it spans several blocks)."""
        if self.length <= self.BLOCK:
            return self._blocks[0][: self.length] if self._blocks else np.zeros(0, np.int16)
        return self.read(0, self.length)

    def move(self, start: int, length: int, new_start: int) -> None:
        """Move the block ``[start, start + length)``, which ends the track, to ``new_start``
        (earlier or later); what it vacates becomes zeros."""
        block = self.read(start, start + length)
        self.dirty = min(self.dirty, start, new_start)
        self._zero(min(start, new_start), start + length)
        self.length = min(start, new_start)
        self.write(new_start, block)


class _Segment:
    """One run of a live stream without pauses: where it starts and how much it holds."""

    __slots__ = ("length", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.length = 0


@dataclass
class _Stream:
    """The WAV files a timeline streams into (:meth:`Timeline.open_files`)."""

    directory: Path
    files: dict[str, WavStreamWriter]
    margin: int  # samples
    every: int  # samples
    window: int  # samples: changes this far behind ``written`` are rewritten at once
    written: int = 0  # samples streamed to every file
    stale: int = _CLEAN  # older changes, rewritten by ``close``


class Timeline:
    """Two PCM16 tracks, ``"user"`` and ``"assistant"``, positioned by the session clock.

    Sample index ``i`` of every track is the clock time ``t0_ns + i / sample_rate_hz`` seconds.

    Args:
        t0_ns: monotonic time of sample 0 (usually the session clock's ``t0_ns``).
        sample_rate_hz: rate of both tracks (48 kHz for the EVA files).
    """

    def __init__(self, *, t0_ns: int, sample_rate_hz: int = 48000) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        self.t0_ns = int(t0_ns)
        self.sample_rate_hz = int(sample_rate_hz)
        self._tracks = {name: _Track() for name in TRACK_NAMES}
        self._segments: dict[str, _Segment] = {}
        self._floors: dict[str, int] = {}  # a segment never moves before the previous one's end
        self._lateness: dict[str, collections.deque[tuple[int, int]]] = {}
        self._slip_samples = round(_SLIP_MS * self.sample_rate_hz / 1000.0)
        self._stream: _Stream | None = None
        self.stream_error: str | None = None
        """Why streaming to the files stopped mid-call (an ``OSError``), else None; the files
        are then written whole by :meth:`save`, as without streaming."""

    def _get(self, track: str) -> _Track:
        try:
            return self._tracks[track]
        except KeyError:
            raise ValueError(f"unknown track {track!r}; tracks are {TRACK_NAMES}") from None

    def index_of(self, t_ns: int) -> int:
        """Sample index of clock time ``t_ns`` (rounded half up; negative before ``t0_ns``)."""
        num = (int(t_ns) - self.t0_ns) * self.sample_rate_hz
        return (2 * num + _NS_PER_S) // (2 * _NS_PER_S)

    def time_of(self, index: int) -> int:
        """Clock time (monotonic ns, rounded half up) of sample ``index``."""
        num = int(index) * _NS_PER_S
        return self.t0_ns + (2 * num + self.sample_rate_hz) // (2 * self.sample_rate_hz)

    def write(self, track: str, pcm: npt.NDArray[np.int16], *, t_ns: int) -> int:
        """Write a chunk whose first sample plays at clock time ``t_ns``.

        Overlapping writes overwrite (the later write wins); gaps stay zero. Samples that would
        fall before ``t0_ns`` are dropped.

        Args:
            track: ``"user"`` or ``"assistant"``.
            pcm: mono int16 samples at ``sample_rate_hz``.
            t_ns: monotonic time of the chunk's first sample.

        Returns:
            The sample index of the chunk's first sample (negative if it started before t0).
        """
        return self._write_at(self._get(track), check_pcm16(pcm, "Timeline"), self.index_of(t_ns))

    @staticmethod
    def _write_at(tr: _Track, pcm: npt.NDArray[np.int16], start: int) -> int:
        if start < 0:
            tr.write(0, pcm[min(-start, pcm.shape[0]) :])
        else:
            tr.write(start, pcm)
        return start

    def append(
        self,
        track: str,
        pcm: npt.NDArray[np.int16],
        *,
        t_ns: int,
        gap_tolerance_ms: float = 60.0,
    ) -> int:
        """Append a chunk of a live stream that *arrived* at ``t_ns``.

        The chunk's nominal start is ``t_ns`` minus its duration (a chunk arrives once its last
        sample exists). Chunks of a steady stream are laid end to end — jitter never inserts
        silence — and the run ("segment") is anchored where its chunks arrived *earliest*
        relative to their position in the run: arrival delays (a stall, a backlog after a slow
        start) only ever make chunks late, so the least-delayed arrival is the best estimate of
        the sender's clock. When a chunk reveals an earlier anchor, the segment moves earlier
        (never before the previous segment's end). If a chunk's nominal start is more than
        ``gap_tolerance_ms`` after the segment's end, the sender fell silent: the gap is kept as
        zeros and a new segment starts at the chunk's nominal start.

        Args:
            track: ``"user"`` or ``"assistant"``.
            pcm: mono int16 samples at ``sample_rate_hz``.
            t_ns: monotonic arrival time of the chunk (its last sample).
            gap_tolerance_ms: largest lateness still treated as jitter.

        Returns:
            The sample index where the chunk was placed.
        """
        tr = self._get(track)
        pcm = check_pcm16(pcm, "Timeline")
        if pcm.shape[0] == 0:
            return tr.length
        nominal = self.index_of(t_ns) - pcm.shape[0]
        tolerance = round(gap_tolerance_ms * self.sample_rate_hz / 1000.0)
        seg = self._segments.get(track)
        late = self._lateness.setdefault(track, collections.deque(maxlen=_SLIP_WINDOW))
        if seg is not None:
            late.append((nominal - (seg.start + seg.length), pcm.shape[0]))
        slip = min(late)[0] if len(late) == late.maxlen else 0
        if seg is None or late[-1][0] > tolerance:
            # first chunk, or the sender fell silent: a gap beyond tolerance stays silence
            floor = tr.length  # the previous segment's end: real silence is never collapsed
            if seg is None and nominal < 0:
                # The first chunk started before the timeline's zero: what came before zero is
                # cut, the rest keeps its place (clamping it to 0 would put the whole track
                # late by up to a chunk, and every later chunk with it).
                pcm = pcm[-nominal:]
                nominal = 0
                if pcm.shape[0] == 0:
                    return 0
            seg = self._segments[track] = _Segment(max(nominal, floor))
            self._floors[track] = floor
            late.clear()
        elif slip > self._slip_samples and seg.start + seg.length == tr.length:
            # The sender slipped: every chunk of the last half second came at least ``slip``
            # late, so its clock restarted later and the audio really has that gap. The window's
            # chunks (all but this one, already written) move ``slip`` later behind the gap.
            tail = min(sum(n for _, n in list(late)[:-1]), seg.length)
            a = seg.start + seg.length - tail
            tr.move(a, tail, a + slip)
            seg = self._segments[track] = _Segment(a + slip)
            seg.length = tail
            self._floors[track] = a
            late.clear()
        else:
            anchor = max(nominal - seg.length, self._floors.get(track, 0))
            if anchor < seg.start and seg.start + seg.length == tr.length:
                tr.move(seg.start, seg.length, anchor)
                seg.start = anchor
        start = seg.start + seg.length
        seg.length += pcm.shape[0]
        return self._write_at(tr, pcm, start)

    def append_user(
        self, pcm: npt.NDArray[np.int16], *, t_ns: int, gap_tolerance_ms: float = 60.0
    ) -> int:
        """Append caller audio that arrived at ``t_ns``; see :meth:`append`."""
        return self.append("user", pcm, t_ns=t_ns, gap_tolerance_ms=gap_tolerance_ms)

    def track(self, name: str) -> npt.NDArray[np.int16]:
        """A copy of one track (``"user"`` or ``"assistant"``)."""
        return self._get(name).view().copy()

    def track_length(self, name: str) -> int:
        """Number of samples in one track."""
        return self._get(name).length

    @property
    def n_samples(self) -> int:
        """Length of the longest track in samples."""
        return max(tr.length for tr in self._tracks.values())

    @property
    def duration_s(self) -> float:
        """Length of the longest track in seconds."""
        return self.n_samples / self.sample_rate_hz

    def padded(self, name: str) -> npt.NDArray[np.int16]:
        """One track zero-padded to :attr:`n_samples`."""
        out = np.zeros(self.n_samples, dtype=np.int16)
        view = self._get(name).view()
        out[: view.shape[0]] = view
        return out

    def mixed(self) -> npt.NDArray[np.int16]:
        """Sum of both tracks (shorter one zero-padded), clipped to int16."""
        acc = np.zeros(self.n_samples, dtype=np.int32)
        for tr in self._tracks.values():
            acc[: tr.length] += tr.view()
        return np.clip(acc, -32768, 32767).astype(np.int16)

    def save(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``audio_user.wav``, ``audio_assistant.wav`` and ``audio_mixed.wav``.

        All three are mono PCM16 at ``sample_rate_hz`` and have the same length. If the
        files were opened for streaming in ``directory`` (:meth:`open_files`), this finishes
        them (:meth:`close`); the bytes are the same either way.

        Args:
            directory: target directory (created if missing).

        Returns:
            ``{"user": path, "assistant": path, "mixed": path}``.
        """
        out_dir = Path(directory)
        st = self._stream
        if st is not None and _same_dir(st.directory, out_dir):
            return self.close()
        out_dir.mkdir(parents=True, exist_ok=True)
        rate = self.sample_rate_hz
        paths = {name: out_dir / file for name, file in WAV_NAMES.items()}
        for name in TRACK_NAMES:
            write_wav(paths[name], self.padded(name), sample_rate_hz=rate)
        write_wav(paths["mixed"], self.mixed(), sample_rate_hz=rate)
        return paths

    # ------------------------------------------------------------------ streaming to files
    @property
    def streaming(self) -> bool:
        """True between :meth:`open_files` and :meth:`close`."""
        return self._stream is not None

    @property
    def streamed_samples(self) -> int:
        """Samples already in the streamed files (0 when not streaming)."""
        return 0 if self._stream is None else self._stream.written

    def open_files(
        self,
        directory: str | os.PathLike[str],
        *,
        margin_ms: float = STREAM_MARGIN_MS,
        flush_every_ms: float = STREAM_FLUSH_EVERY_MS,
    ) -> dict[str, Path]:
        """Create the three WAV files in ``directory`` (created if missing) and stream into them
        from now on: :meth:`flush` as the call goes, :meth:`close` (or :meth:`save`) at the
        end. The files are valid WAVs (empty at first) from this call on.

        Args:
            directory: where ``audio_user.wav``, ``audio_assistant.wav`` and
                ``audio_mixed.wav`` go (existing files are replaced).
            margin_ms: only audio older than this is streamed (:data:`STREAM_MARGIN_MS`).
            flush_every_ms: :meth:`flush` writes once this much audio is due
                (:data:`STREAM_FLUSH_EVERY_MS`).

        Returns:
            ``{"user": path, "assistant": path, "mixed": path}``.

        Raises:
            RuntimeError: the files are already open.
        """
        if self._stream is not None:
            raise RuntimeError(f"the timeline already streams to {self._stream.directory}")
        if margin_ms < 0 or flush_every_ms < 0:
            raise ValueError("margin_ms and flush_every_ms must be >= 0")
        out_dir = Path(directory)
        out_dir.mkdir(parents=True, exist_ok=True)
        files: dict[str, WavStreamWriter] = {}
        try:
            for name, file in WAV_NAMES.items():
                files[name] = WavStreamWriter(out_dir / file, sample_rate_hz=self.sample_rate_hz)
        except BaseException:
            for w in files.values():
                w.close(fsync=False)
            raise
        rate = self.sample_rate_hz
        margin = round(margin_ms * rate / 1000.0)
        self._stream = _Stream(
            directory=out_dir,
            files=files,
            margin=margin,
            every=round(flush_every_ms * rate / 1000.0),
            window=max(2 * margin, rate),
        )
        for tr in self._tracks.values():
            tr.dirty = _CLEAN  # the files start empty: everything up to now is still due
        return {name: w.path for name, w in files.items()}

    def flush(self, now_ns: int, *, force: bool = False) -> int:
        """Stream to the files what can no longer change: the audio older than ``now_ns``
        less the margin. A no-op when the files are not open, and (unless ``force``) until at
        least ``flush_every_ms`` of audio is due, so a shell may call it on every tick.

        A change to audio already streamed (rare: a late write older than the margin, or a
        stream's segment moved earlier) is rewritten in place at the next write if it lies
        within twice the margin of the streamed end, else by :meth:`close`; so the finished
        files always equal :meth:`save`'s.

        Args:
            now_ns: the clock's present (monotonic ns, the timeline's clock).
            force: write whatever is due, however little.

        Never raises for the files: if writing fails (``OSError``), streaming stops
        (:attr:`stream_error` says why) and :meth:`save` writes the files whole at the end.

        Returns:
            Samples in the files after the call (0 when not streaming).
        """
        st = self._stream
        if st is None:
            return 0
        frontier = min(self.index_of(now_ns) - st.margin, self.n_samples)
        for tr in self._tracks.values():
            if tr.dirty < st.written - st.window:  # far back (a long segment moved)
                st.stale = min(st.stale, tr.dirty)  # rewritten by ``close``
                tr.dirty = _CLEAN
        dirty = min(tr.dirty for tr in self._tracks.values())
        if dirty >= st.written and frontier - st.written < (1 if force else max(st.every, 1)):
            return st.written
        try:
            self._stream_span(st, min(dirty, st.written), max(frontier, st.written))
        except OSError as exc:  # a full disk must not end the call: save() writes them whole
            self.stream_error = f"{type(exc).__name__}: {exc}"
            self._stream = None
            for w in st.files.values():
                with contextlib.suppress(OSError):
                    w.close(fsync=False)
            return 0
        return st.written

    def close(self) -> dict[str, Path]:
        """Stream everything left, give the files their final sizes and close them (fsynced).
        The files then equal what :meth:`save` writes. A no-op returning ``{}`` when the files
        are not open.

        Returns:
            ``{"user": path, "assistant": path, "mixed": path}``.
        """
        st = self._stream
        if st is None:
            return {}
        try:
            end = self.n_samples
            dirty = min(tr.dirty for tr in self._tracks.values())
            lo = max(0, min(st.written, dirty, st.stale))
            self._stream_span(st, lo, end)
            for w in st.files.values():
                w.truncate(end)
        finally:
            self._stream = None
            errors: list[BaseException] = []
            for w in st.files.values():
                try:
                    w.close()
                except OSError as exc:  # close them all, then report the first failure
                    errors.append(exc)
            if errors:
                raise errors[0]
        return {name: w.path for name, w in st.files.items()}

    def _stream_span(self, st: _Stream, lo: int, hi: int) -> None:
        """Write samples ``[lo, hi)`` of every file (zeros past a track's end) and commit."""
        lo = max(0, lo)
        step = 30 * self.sample_rate_hz  # bounded temporaries for a long rewrite
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            acc = np.zeros(b - a, dtype=np.int32)
            for name, tr in self._tracks.items():
                part = np.zeros(b - a, dtype=np.int16)
                view = tr.read(a, b)
                part[: view.shape[0]] = view
                acc += part
                st.files[name].write_at(a, part)
            st.files["mixed"].write_at(a, np.clip(acc, -32768, 32767).astype(np.int16))
        for tr in self._tracks.values():
            tr.dirty = _CLEAN
        st.written = max(st.written, hi)
        for w in st.files.values():
            w.commit()

    def first_onset(
        self,
        track: str,
        *,
        start_index: int = 0,
        end_index: int | None = None,
        rms_threshold_dbfs: float = -40.0,
        window_ms: float = 10.0,
    ) -> int | None:
        """First audible sample of ``track`` from ``start_index`` on; see :func:`first_onset`."""
        lo, pcm = self._range(track, start_index, end_index)
        at = first_onset(
            pcm,
            sample_rate_hz=self.sample_rate_hz,
            rms_threshold_dbfs=rms_threshold_dbfs,
            window_ms=window_ms,
        )
        return None if at is None else lo + at

    def last_offset(
        self,
        track: str,
        *,
        end_index: int | None = None,
        start_index: int = 0,
        rms_threshold_dbfs: float = -40.0,
        window_ms: float = 10.0,
    ) -> int | None:
        """Last audible sample of ``track`` before ``end_index``; see :func:`last_offset`."""
        lo, pcm = self._range(track, start_index, end_index)
        at = last_offset(
            pcm,
            sample_rate_hz=self.sample_rate_hz,
            rms_threshold_dbfs=rms_threshold_dbfs,
            window_ms=window_ms,
        )
        return None if at is None else lo + at

    def _range(
        self, track: str, start_index: int, end_index: int | None
    ) -> tuple[int, npt.NDArray[np.int16]]:
        """``(lo, samples [lo, hi))`` of ``track``, the range clamped as the scans clamp it
        (only that range is copied out of the track's blocks)."""
        tr = self._get(track)
        lo = min(max(int(start_index), 0), tr.length)
        hi = tr.length if end_index is None else min(max(int(end_index), lo), tr.length)
        return lo, tr.read(lo, hi)


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def _scan_params(
    pcm: npt.NDArray[np.int16],
    sample_rate_hz: int,
    start_index: int,
    end_index: int | None,
    rms_threshold_dbfs: float,
    window_ms: float,
) -> tuple[int, int, int, float, float]:
    pcm = check_pcm16(pcm, "Timeline")
    if window_ms <= 0:
        raise ValueError(f"window_ms must be positive, got {window_ms}")
    n = pcm.shape[0]
    lo = min(max(int(start_index), 0), n)
    hi = n if end_index is None else min(max(int(end_index), lo), n)
    window = min(max(1, round(window_ms * sample_rate_hz / 1000.0)), hi - lo)
    amplitude = 32768.0 * 10.0 ** (rms_threshold_dbfs / 20.0)
    return lo, hi, window, amplitude, window * amplitude * amplitude


def _window_energy(
    pcm: npt.NDArray[np.int16], a: int, b: int, window: int
) -> npt.NDArray[np.float64]:
    """Sum of squares of every ``window``-long window starting in ``[a, b - window]``."""
    seg = pcm[a:b].astype(np.float64)
    csum = np.concatenate(([0.0], np.cumsum(seg * seg)))
    return csum[window:] - csum[:-window]


_SLIP_WINDOW = 25  # chunks (0.5 s of 20 ms frames)
_SLIP_MS = 8.0  # a sender whose every chunk of the window came this late has slipped

AUDIBLE_DBFS = -45.0
"""hydralab's one definition of "audible" (RMS over 10 ms windows, dBFS re 32768): 5 dB above
the −50 dBFS line-noise floor. The caller's own stamps and the timeline's ``v2v`` both use it."""


def first_onset(
    pcm: npt.NDArray[np.int16],
    *,
    sample_rate_hz: int,
    start_index: int = 0,
    end_index: int | None = None,
    rms_threshold_dbfs: float = -40.0,
    window_ms: float = 10.0,
) -> int | None:
    """Index where the signal first becomes audible in ``pcm[start_index:end_index]``.

    Finds the first ``window_ms`` window whose RMS reaches ``rms_threshold_dbfs`` (relative to
    full scale 32768, so a full-scale sine is about -3 dBFS) and returns its first sample whose
    magnitude reaches the threshold, so the answer is not early by up to a window.

    Returns:
        The sample index, or ``None`` if nothing in the range is audible.
    """
    lo, hi, window, amplitude, energy = _scan_params(
        pcm, sample_rate_hz, start_index, end_index, rms_threshold_dbfs, window_ms
    )
    pos = lo
    while window > 0 and pos + window <= hi:
        stop = min(hi, pos + _SCAN_BLOCK + window - 1)
        hits = np.flatnonzero(_window_energy(pcm, pos, stop, window) >= energy)
        if hits.size:
            j = pos + int(hits[0])
            loud = np.flatnonzero(np.abs(pcm[j : j + window].astype(np.int32)) >= amplitude)
            return j + int(loud[0]) if loud.size else j
        pos = stop - window + 1
    return None


def last_offset(
    pcm: npt.NDArray[np.int16],
    *,
    sample_rate_hz: int,
    end_index: int | None = None,
    start_index: int = 0,
    rms_threshold_dbfs: float = -40.0,
    window_ms: float = 10.0,
) -> int | None:
    """Index of the last audible sample in ``pcm[start_index:end_index]``.

    Mirror image of :func:`first_onset`: the last window whose RMS reaches the threshold, then
    its last sample whose magnitude reaches the threshold.

    Returns:
        The sample index, or ``None`` if nothing in the range is audible.
    """
    lo, hi, window, amplitude, energy = _scan_params(
        pcm, sample_rate_hz, start_index, end_index, rms_threshold_dbfs, window_ms
    )
    pos = hi
    while window > 0 and pos - window >= lo:
        begin = max(lo, pos - _SCAN_BLOCK - window + 1)
        hits = np.flatnonzero(_window_energy(pcm, begin, pos, window) >= energy)
        if hits.size:
            j = begin + int(hits[-1])
            loud = np.flatnonzero(np.abs(pcm[j : j + window].astype(np.int32)) >= amplitude)
            return j + int(loud[-1]) if loud.size else j + window - 1
        pos = begin + window - 1
    return None
