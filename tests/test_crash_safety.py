"""Crash safety of a run directory: recordings streamed to disk during the call
(:meth:`Timeline.open_files` / :meth:`~Timeline.flush` / :meth:`~Timeline.close`), WAVs repaired
after a kill (:func:`recover_wav`), and a killed run's directory scored from what it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydralab.audio import (
    WAV_NAMES,
    Timeline,
    WavStreamWriter,
    read_wav,
    recover_wav,
    wav_bytes,
    wav_header,
)
from hydralab.playout import PlayoutPlacer

RATE = 48000
MS = 1_000_000  # ns
T0 = 7_000_000_000


def _files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / file).read_bytes() for name, file in WAV_NAMES.items()}


def _noise(rng: np.random.Generator, n: int, scale: int = 12000) -> npt.NDArray[np.int16]:
    return rng.integers(-scale, scale, n).astype(np.int16)


# ---------------------------------------------------------------- the WAV writer and recovery


@pytest.mark.parametrize("n", [0, 1, 960, 48_001])
def test_wav_header_is_the_one_wave_writes(n: int) -> None:
    pcm = np.arange(n, dtype=np.int64).astype(np.int16)
    assert wav_header(n, sample_rate_hz=RATE) == wav_bytes(pcm, sample_rate_hz=RATE)[:44]


def test_stream_writer_writes_in_place_and_commits(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    w = WavStreamWriter(path, sample_rate_hz=RATE)
    assert read_wav(path)[0].size == 0  # valid (empty) from the start
    w.write_at(0, np.full(100, 7, dtype=np.int16))
    w.write_at(200, np.full(50, 9, dtype=np.int16))  # a gap stays zeros
    w.write_at(10, np.full(5, -3, dtype=np.int16))  # an earlier sample rewritten
    assert read_wav(path)[0].size == 0  # the header still says 0 until the commit
    w.commit()
    x, rate = read_wav(path)
    assert rate == RATE and x.size == 250
    assert (x[:10] == 7).all() and (x[10:15] == -3).all() and (x[100:200] == 0).all()
    w.truncate(120)
    w.close()
    w.close()  # twice is a no-op
    assert w.closed and read_wav(path)[0].size == 120
    with pytest.raises(ValueError, match="closed"):
        w.write_at(0, np.zeros(1, dtype=np.int16))


def test_recover_a_wav_killed_mid_write(tmp_path: Path) -> None:
    """The process died after writing samples, before the header caught up, in the middle of a
    sample: every whole sample written is kept, the file is valid again."""
    rng = np.random.default_rng(3)
    path = tmp_path / "audio_user.wav"
    w = WavStreamWriter(path, sample_rate_hz=RATE)
    first, second = _noise(rng, 4800), _noise(rng, 1234)
    w.write_at(0, first)
    w.commit()
    w.write_at(first.size, second)  # not committed: the header still counts `first` only
    w._file().write(b"\x01")  # a torn sample: one byte of the next one
    w._file().close()  # the kill: the file is left as it is on disk, never committed
    w._f = None
    assert read_wav(path)[0].size == first.size  # readable, but short of what was written
    rec = recover_wav(path)
    assert (rec.frames, rec.sample_rate_hz, rec.repaired, rec.dropped_bytes) == (
        first.size + second.size,
        RATE,
        True,
        1,
    )
    x, rate = read_wav(path)
    assert rate == RATE and np.array_equal(x, np.concatenate([first, second]))
    assert path.read_bytes() == wav_bytes(x, sample_rate_hz=RATE)


def test_recover_fixes_zero_and_oversized_headers_and_leaves_good_files(tmp_path: Path) -> None:
    pcm = np.arange(-500, 500, dtype=np.int16)
    good = tmp_path / "good.wav"
    good.write_bytes(wav_bytes(pcm, sample_rate_hz=8000))
    before = good.read_bytes()
    assert recover_wav(good).repaired is False and good.read_bytes() == before
    data = bytearray(before)
    data[40:44] = (0).to_bytes(4, "little")
    dry = tmp_path / "dry.wav"
    dry.write_bytes(bytes(data) + b"\x07")
    seen = recover_wav(dry, dry_run=True)  # says what it would do, changes nothing
    assert (seen.repaired, seen.frames, seen.dropped_bytes) == (True, pcm.size, 1)
    assert dry.read_bytes() == bytes(data) + b"\x07"
    for bad_size in (0, 0xFFFFFFFF - 36):
        path = tmp_path / f"bad{bad_size}.wav"
        path.write_bytes(
            wav_header(0, sample_rate_hz=8000)[:4]
            + b"\0" * 4
            + before[8:40]
            + bad_size.to_bytes(4, "little")
            + before[44:]
        )
        rec = recover_wav(path)
        assert rec.repaired and rec.frames == pcm.size and rec.sample_rate_hz == 8000
        assert path.read_bytes() == before


def test_recover_refuses_a_file_without_a_header(tmp_path: Path) -> None:
    for i, data in enumerate((b"", b"RIFF\0\0", b"RIFF\0\0\0\0WAVEfmt ")):
        path = tmp_path / f"{i}.wav"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=r"header|data chunk|RIFF"):
            recover_wav(path)


# ---------------------------------------------------------------- streaming from the timeline


def test_streaming_api_basics(tmp_path: Path) -> None:
    tl = Timeline(t0_ns=T0)
    assert tl.flush(T0 + 10**10) == 0 and tl.close() == {}  # not streaming: no-ops
    paths = tl.open_files(tmp_path / "rec", margin_ms=1000.0, flush_every_ms=500.0)
    assert tl.streaming and set(paths) == {"user", "assistant", "mixed"}
    assert all(read_wav(p)[0].size == 0 for p in paths.values())
    with pytest.raises(RuntimeError, match="already streams"):
        tl.open_files(tmp_path / "other")
    tl.write("user", np.full(3 * RATE, 100, dtype=np.int16), t_ns=T0)
    assert tl.flush(T0 + 1_200 * MS) == 0  # only 200 ms older than the margin: not yet due
    assert tl.flush(T0 + 1_200 * MS, force=True) == RATE // 5
    assert tl.flush(T0 + 1_600 * MS) == RATE // 5  # 400 ms more due: under flush_every
    assert tl.flush(T0 + 1_800 * MS) == int(0.8 * RATE)
    assert read_wav(paths["user"])[0].size == int(0.8 * RATE)  # committed: valid on disk
    assert tl.flush(T0 + 60 * 10**9) == 3 * RATE  # never past the end of the audio
    tl.write("assistant", np.full(RATE, 50, dtype=np.int16), t_ns=T0 + 2 * 10**9)
    assert tl.save(tmp_path / "rec") == paths  # save() on the open directory finishes them
    assert not tl.streaming
    twin = tmp_path / "twin"
    tl.save(twin)  # not streaming any more: the ordinary atomic write
    assert _files(tmp_path / "rec") == _files(twin)


def test_save_elsewhere_while_streaming_does_not_disturb_the_stream(tmp_path: Path) -> None:
    tl = Timeline(t0_ns=T0)
    tl.open_files(tmp_path / "live", margin_ms=0.0)
    tl.write("user", np.full(RATE, 5, dtype=np.int16), t_ns=T0)
    tl.flush(T0 + 10**9)
    tl.save(tmp_path / "copy")
    assert tl.streaming
    tl.close()
    assert _files(tmp_path / "live") == _files(tmp_path / "copy")


def test_a_failing_disk_stops_streaming_without_ending_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tl = Timeline(t0_ns=T0)
    tl.open_files(tmp_path / "rec", margin_ms=0.0)
    tl.write("user", np.full(RATE, 3, dtype=np.int16), t_ns=T0)

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(WavStreamWriter, "write_at", full)
    assert tl.flush(T0 + 2 * 10**9) == 0  # no exception into the shell's ticker
    assert not tl.streaming and tl.stream_error is not None and "No space" in tl.stream_error
    monkeypatch.undo()
    tl.write("assistant", np.full(RATE, 4, dtype=np.int16), t_ns=T0 + 10**9)
    tl.save(tmp_path / "rec")  # written whole at the end, as without streaming
    twin = Timeline(t0_ns=T0)
    twin.write("user", np.full(RATE, 3, dtype=np.int16), t_ns=T0)
    twin.write("assistant", np.full(RATE, 4, dtype=np.int16), t_ns=T0 + 10**9)
    twin.save(tmp_path / "twin")
    assert _files(tmp_path / "rec") == _files(tmp_path / "twin")


def test_a_long_segment_moved_far_back_is_rewritten_by_close(tmp_path: Path) -> None:
    """A caller streaming without pause is one segment; a chunk arriving earlier than any
    before moves all of it, back past what was streamed: the end result is still exact."""
    rng = np.random.default_rng(5)
    live, twin = Timeline(t0_ns=T0), Timeline(t0_ns=T0)
    live.open_files(tmp_path / "live", margin_ms=1000.0, flush_every_ms=100.0)
    t = T0 + 400 * MS  # the first chunk came 380 ms late
    for i in range(1500):  # 30 s
        pcm = _noise(rng, 960)
        for tl in (live, twin):
            tl.append_user(pcm, t_ns=t)
        live.flush(t)
        t += 20 * MS if i != 1200 else -300 * MS  # at 24 s, one chunk on time at last
    assert live.streamed_samples > 20 * RATE
    live.close()
    twin.save(tmp_path / "twin")
    assert _files(tmp_path / "live") == _files(tmp_path / "twin")


@st.composite
def _calls(draw: st.DrawFn) -> list[tuple[str, int, int, int]]:
    """A call as a list of steps ``(kind, dt_ms, size, extra)``."""
    kinds = st.sampled_from(["user", "user", "assistant", "assistant", "barge", "flush", "idle"])
    return draw(
        st.lists(
            st.tuples(
                kinds,
                st.integers(0, 120),  # ms since the previous step
                st.integers(1, 2400),  # samples (user chunk / assistant frame)
                st.integers(0, 3),  # user: arrival jitter ms; flush: 0 = forced
            ),
            min_size=1,
            max_size=120,
        )
    )


def _play(
    steps: list[tuple[str, int, int, int]],
    live: Timeline,
    twin: Timeline,
    *,
    jitter: bool,
    snapshots: tuple[Path, list[tuple[int, dict[str, bytes]]]] | None = None,
) -> None:
    """Feed one call to both timelines as the bridge does — caller chunks placed when they
    arrive, assistant frames where the play-out placer puts them (a few ms late: the 48 kHz
    copy's resampler shift), barge-in erases of what was recorded ahead of the caller —
    flushing ``live`` on the way (a snapshot of its files at each explicit flush)."""
    placer = PlayoutPlacer()
    rng = np.random.default_rng(len(steps))
    shift = -3 * MS
    t = T0 + 20 * MS
    sender = t  # the caller's own clock: where its next chunk starts
    for kind, dt_ms, size, extra in steps:
        t += dt_ms * MS
        dur = round(size * 1e9 / RATE)
        if kind == "user":
            pcm = _noise(rng, size)
            if jitter:  # sent back to back unless the sender paused; arrives `extra` ms late
                sender = max(sender, t - dur) + dur
                for tl in (live, twin):
                    tl.append_user(pcm, t_ns=sender + extra * MS)
            else:  # a chunk exists once its last sample does: it started `dur` ago
                for tl in (live, twin):
                    tl.write("user", pcm, t_ns=t - dur)
        elif kind == "assistant":
            pcm = _noise(rng, size, 8000)
            pos = placer.place(sent_index=live.index_of(t), n_samples=size)
            for tl in (live, twin):
                tl.write("assistant", pcm, t_ns=tl.time_of(pos) + shift)
        elif kind == "barge":  # the caller was told to clear: what was recorded ahead is erased
            span = placer.clear(at_index=live.index_of(t))
            if span is not None:
                a, b = span
                for tl in (live, twin):
                    tl.write(
                        "assistant", np.zeros(b - a, dtype=np.int16), t_ns=tl.time_of(a) + shift
                    )
        elif kind == "flush":
            live.flush(t, force=extra == 0)
            if snapshots is not None:
                directory, taken = snapshots
                taken.append((live.streamed_samples, _files(directory)))
        live.flush(t)  # the shell's ticker: throttled


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=_calls(), margin_ms=st.sampled_from([150.0, 400.0, 5000.0]))
def test_streamed_files_are_exactly_what_save_writes(
    steps: list[tuple[str, int, int, int]], margin_ms: float
) -> None:
    """Streaming (random chunk sizes and times, barge-in erases within the margin) ends with
    byte-identical files; and nothing streamed is ever changed later: every snapshot taken
    during the call is a valid WAV whose samples are the final file's first samples."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        live, twin = Timeline(t0_ns=T0), Timeline(t0_ns=T0)
        live.open_files(base / "live", margin_ms=margin_ms, flush_every_ms=40.0)
        snapshots: list[tuple[int, dict[str, bytes]]] = []
        _play(steps, live, twin, jitter=False, snapshots=(base / "live", snapshots))
        live.close()
        twin.save(base / "twin")
        final = _files(base / "twin")
        assert _files(base / "live") == final
        for n, files in snapshots:
            for name, data in files.items():
                assert len(data) == 44 + 2 * n
                assert data[:44] == wav_header(n, sample_rate_hz=RATE)
                assert data[44:] == final[name][44 : 44 + 2 * n], name


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=_calls(), margin_ms=st.sampled_from([0.0, 100.0, 5000.0]))
def test_streamed_files_equal_save_with_jittery_appends(
    steps: list[tuple[str, int, int, int]], margin_ms: float
) -> None:
    """With the caller's chunks appended as they arrive (jitter moves segments, even behind
    what was streamed, margin 0 included) the finished files still equal save()'s."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        live, twin = Timeline(t0_ns=T0), Timeline(t0_ns=T0)
        live.open_files(base / "live", margin_ms=margin_ms, flush_every_ms=20.0)
        _play(steps, live, twin, jitter=True)
        assert live.save(base / "live")
        twin.save(base / "twin")
        assert _files(base / "live") == _files(base / "twin")


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from hydralab.audio import Timeline
    out, t0 = sys.argv[1], 10**9
    tl = Timeline(t0_ns=t0)
    tl.open_files(out, margin_ms=100.0, flush_every_ms=100.0)
    t = t0
    for i in range(10**9):  # forever, until killed
        t += 20_000_000
        pcm = ((np.arange(960) + 960 * i) % 20000 - 10000).astype(np.int16)
        tl.write("user", pcm, t_ns=t - 20_000_000)
        tl.write("assistant", -pcm, t_ns=t - 20_000_000)
        if tl.flush(t) >= 48000 and i % 10 == 0:
            print(tl.streamed_samples, flush=True)
        time.sleep(0.002)  # 10x real time
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_call_leaves_recoverable_recordings(tmp_path: Path) -> None:
    """A process streaming a call is SIGKILLed: its three WAVs are valid (after recover_wav)
    and hold exactly the samples of the audio streamed so far."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(3):  # three progress lines: at least a second of audio streamed
            assert proc.stdout.readline().strip()
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    expected = ((np.arange(10**7) % 20000) - 10000).astype(np.int16)
    for name, file in WAV_NAMES.items():
        recover_wav(tmp_path / file)  # the kill may have come between a write and its commit
        got, rate = read_wav(tmp_path / file)
        assert rate == RATE and got.size >= RATE, name
        want = {"user": 1, "assistant": -1, "mixed": 0}[name] * expected[: got.size]
        assert np.array_equal(got, want), name


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.update(int(c) for c in text)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigkill_of_a_run_leaves_no_child_process(tmp_path: Path) -> None:
    """``hydralab run`` with the offline STT worker, SIGKILLed mid-call: the decoder process
    (and multiprocessing's resource tracker, which its queue kept alive) exit too, and the
    streamed recordings are on disk."""
    from hydralab.speech.tts import Synthesizer

    if not Synthesizer.available():
        pytest.skip("needs the speech extra")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from hydralab.cli import main; raise SystemExit(main())",
            "run",
            "--out",
            str(tmp_path),
            "--stt",
            "local",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        children: set[int] = set()
        while time.monotonic() < deadline and len(children) < 2:  # decoder + resource tracker
            time.sleep(0.2)
            children = _children(proc.pid)
        assert len(children) >= 2, children
        time.sleep(3.0)  # mid-call
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not [c for c in children if _alive(c)]
    (record_dir,) = tmp_path.glob("*/records/*")
    assert (record_dir / "events.jsonl").is_file() and (record_dir / "audio_mixed.wav").is_file()
