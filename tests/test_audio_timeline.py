"""Timeline (one clock, two tracks), onset/offset helpers and WAV in/out."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hydralab.audio import Timeline, first_onset, last_offset, read_wav, wav_bytes, write_wav

RATE = 48000
FRAME = 960  # 20 ms at 48 kHz
MS = 1_000_000  # ns
T0 = 5_000_000_000  # an arbitrary monotonic origin


def frames(count: int, start_value: int = 1) -> list[npt.NDArray[np.int16]]:
    """Frames whose every sample is non-zero and says which frame it came from."""
    return [np.full(FRAME, start_value + i, dtype=np.int16) for i in range(count)]


def zero_runs(x: npt.NDArray[np.int16]) -> list[tuple[int, int]]:
    """(start, length) of every run of zeros."""
    is_zero = np.concatenate(([0], (x == 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(is_zero))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


# ---------------------------------------------------------------- clock positions


def test_index_and_time_conversions() -> None:
    tl = Timeline(t0_ns=T0)
    assert tl.sample_rate_hz == RATE
    assert tl.index_of(T0) == 0
    assert tl.index_of(T0 + 1_000_000_000) == RATE
    assert tl.index_of(T0 + 20 * MS) == FRAME
    assert tl.index_of(T0 + 10_417) == 1  # 0.50002 samples rounds up
    assert tl.index_of(T0 + 10_416) == 0  # 0.49997 samples rounds down
    assert tl.index_of(T0 - 20 * MS) == -FRAME
    assert tl.time_of(FRAME) == T0 + 20 * MS
    for index in (0, 1, 47, 48_001, 28_800_000):
        assert tl.index_of(tl.time_of(index)) == index


def test_write_lands_at_clock_position() -> None:
    tl = Timeline(t0_ns=T0)
    chunk = np.arange(1, 481, dtype=np.int16)
    start = tl.write("assistant", chunk, t_ns=T0 + 1_500 * MS)
    assert start == 72_000
    track = tl.track("assistant")
    assert track.shape == (72_480,)
    assert not track[:72_000].any()  # a gap is silence
    np.testing.assert_array_equal(track[72_000:], chunk)
    assert tl.track("user").shape == (0,)
    assert tl.duration_s == pytest.approx(72_480 / RATE)


def test_later_write_wins_and_gaps_stay_zero() -> None:
    tl = Timeline(t0_ns=T0)
    tl.write("assistant", np.full(FRAME, 7, dtype=np.int16), t_ns=T0)
    tl.write("assistant", np.full(FRAME, 9, dtype=np.int16), t_ns=T0 + 10 * MS)  # overlaps half
    tl.write("assistant", np.full(10, 3, dtype=np.int16), t_ns=T0 + 100 * MS)
    track = tl.track("assistant")
    assert (track[:480] == 7).all()
    assert (track[480:1440] == 9).all()
    assert not track[1440:4800].any()
    assert (track[4800:] == 3).all() and track.shape == (4810,)
    # Writing into the middle never shortens a track.
    tl.write("assistant", np.full(10, 5, dtype=np.int16), t_ns=T0)
    assert tl.track_length("assistant") == 4810


def test_write_before_t0_drops_the_early_part() -> None:
    tl = Timeline(t0_ns=T0)
    start = tl.write("user", np.arange(1, 961, dtype=np.int16), t_ns=T0 - 10 * MS)
    assert start == -480
    np.testing.assert_array_equal(tl.track("user"), np.arange(481, 961, dtype=np.int16))


def test_unknown_track_and_bad_pcm() -> None:
    tl = Timeline(t0_ns=T0)
    with pytest.raises(ValueError, match="unknown track"):
        tl.write("caller", np.zeros(4, dtype=np.int16), t_ns=T0)
    with pytest.raises(TypeError, match="int16"):
        tl.append_user(np.zeros(4, dtype=np.float32), t_ns=T0)


# ---------------------------------------------------------------- caller audio


def test_steady_frames_with_jitter_stay_contiguous() -> None:
    tl = Timeline(t0_ns=T0)
    rng = np.random.default_rng(0)
    sent = frames(500)
    first_arrival = T0 + 300 * MS
    starts = []
    for i, frame in enumerate(sent):
        jitter = int(rng.uniform(-5, 5) * MS)
        starts.append(tl.append_user(frame, t_ns=first_arrival + i * 20 * MS + jitter))
    track = tl.track("user")
    lead = len(track) - len(sent) * FRAME
    # anchored on the least-delayed arrival: within the jitter's early edge of the true grid
    assert -6 * RATE // 1000 <= lead - (tl.index_of(first_arrival) - FRAME) <= 0
    assert starts[-1] == lead + (len(sent) - 1) * FRAME
    np.testing.assert_array_equal(track[lead:], np.concatenate(sent))  # nothing inserted
    assert zero_runs(track) == [(0, lead)]  # the only silence is before the caller spoke


def test_late_start_backlog_is_moved_back_onto_the_senders_clock() -> None:
    # The first frames queue up while the receiver is busy (e.g. a model handshake) and arrive
    # together 80 ms late; later frames arrive on time. The segment ends up on the sender's grid.
    tl = Timeline(t0_ns=T0)
    sent = frames(20)
    grid = [T0 + (i + 1) * 20 * MS for i in range(20)]
    arrivals = [max(t, grid[0] + 80 * MS) for t in grid]
    for frame, t in zip(sent, arrivals, strict=True):
        tl.append_user(frame, t_ns=t)
    track = tl.track("user")
    np.testing.assert_array_equal(track[tl.index_of(T0):], np.concatenate(sent))
    assert zero_runs(track) == []


def test_stall_mid_stream_does_not_shift_later_audio() -> None:
    tl = Timeline(t0_ns=T0)
    sent = frames(30)
    grid = [T0 + (i + 1) * 20 * MS for i in range(30)]
    arrivals = list(grid)
    for i in range(10, 16):  # the receiver stalls 150 ms: six frames arrive together
        arrivals[i] = grid[15] + 30 * MS
    for frame, t in zip(sent, arrivals, strict=True):
        tl.append_user(frame, t_ns=t)
    track = tl.track("user")
    np.testing.assert_array_equal(track, np.concatenate(sent))  # no silence, no shift


def test_late_frame_within_tolerance_then_burst_stays_contiguous() -> None:
    tl = Timeline(t0_ns=T0)
    sent = frames(10)
    arrivals = [T0 + (i + 1) * 20 * MS for i in range(10)]
    arrivals[3] += 55 * MS  # a network hiccup: 55 ms late ...
    for i in range(4, 7):  # ... and the next three frames arrive in a burst right behind it
        arrivals[i] = arrivals[3] + 1 * MS
    for frame, t in zip(sent, arrivals, strict=True):
        tl.append_user(frame, t_ns=t)
    np.testing.assert_array_equal(tl.track("user"), np.concatenate(sent))


def test_pause_in_arrivals_becomes_silence() -> None:
    tl = Timeline(t0_ns=T0)
    talk1, talk2 = frames(50, start_value=1), frames(50, start_value=100)
    t = T0
    for frame in talk1:
        t += 20 * MS
        tl.append_user(frame, t_ns=t)
    t += 500 * MS  # the sender fell silent for 500 ms
    for frame in talk2:
        t += 20 * MS
        tl.append_user(frame, t_ns=t)
    track = tl.track("user")
    assert zero_runs(track) == [(50 * FRAME, 24_000)]  # exactly 500 ms of silence
    np.testing.assert_array_equal(track[: 50 * FRAME], np.concatenate(talk1))
    np.testing.assert_array_equal(track[50 * FRAME + 24_000 :], np.concatenate(talk2))
    assert track.shape == (tl.index_of(t),)  # the track ends at the clock position


def test_pause_with_jitter_and_tolerance() -> None:
    tl = Timeline(t0_ns=T0)
    rng = np.random.default_rng(1)
    t = T0
    for i, frame in enumerate(frames(100)):
        t += 20 * MS
        if i == 50:
            t += 500 * MS
        tl.append_user(frame, t_ns=t + int(rng.uniform(-5, 5) * MS))
    runs = zero_runs(tl.track("user"))
    assert len(runs) == 1
    assert runs[0][0] == 50 * FRAME
    assert abs(runs[0][1] - 24_000) <= 10 * RATE // 1000  # 500 ms +- the jitter
    # A gap just under the tolerance is treated as jitter, just over it as silence.
    under = Timeline(t0_ns=T0)
    under.append_user(frames(1)[0], t_ns=T0 + 20 * MS)
    under.append_user(frames(1)[0], t_ns=T0 + 99 * MS)  # nominal start 59 ms after the end
    assert not zero_runs(under.track("user"))
    over = Timeline(t0_ns=T0)
    over.append_user(frames(1)[0], t_ns=T0 + 20 * MS)
    over.append_user(frames(1)[0], t_ns=T0 + 101 * MS)  # 61 ms
    assert zero_runs(over.track("user")) == [(FRAME, 61 * 48)]


def test_first_frame_is_placed_at_its_clock_position() -> None:
    tl = Timeline(t0_ns=T0)
    start = tl.append_user(frames(1)[0], t_ns=T0 + 2_020 * MS)
    assert start == 2 * RATE
    assert tl.track_length("user") == 2 * RATE + FRAME


def test_ten_minutes_of_frames_is_cheap() -> None:
    tl = Timeline(t0_ns=T0)
    frame = np.full(FRAME, 1, dtype=np.int16)
    for i in range(30_000):  # 10 minutes in 20 ms frames
        tl.append_user(frame, t_ns=T0 + (i + 1) * 20 * MS)
        tl.write("assistant", frame, t_ns=T0 + i * 20 * MS)
    assert tl.duration_s == pytest.approx(600.0)
    assert tl.track_length("user") == tl.track_length("assistant") == 600 * RATE
    assert int(tl.track("user").sum(dtype=np.int64)) == 600 * RATE


# ---------------------------------------------------------------- mixing and saving


def test_mixed_pads_and_clips() -> None:
    tl = Timeline(t0_ns=T0)
    tl.write("user", np.array([30000, -30000, 5000, 100], dtype=np.int16), t_ns=T0)
    tl.write("assistant", np.array([10000, -10000], dtype=np.int16), t_ns=T0)
    np.testing.assert_array_equal(tl.mixed(), [32767, -32768, 5000, 100])
    assert tl.mixed().dtype == np.int16
    np.testing.assert_array_equal(tl.padded("assistant"), [10000, -10000, 0, 0])


def test_save_round_trip(tmp_path: Path) -> None:
    tl = Timeline(t0_ns=T0)
    rng = np.random.default_rng(2)
    user = rng.integers(-20000, 20000, 4800).astype(np.int16)
    bot = rng.integers(-20000, 20000, 2400).astype(np.int16)
    tl.write("user", user, t_ns=T0)
    tl.write("assistant", bot, t_ns=T0 + 50 * MS)
    paths = tl.save(tmp_path / "run" / "rec")
    assert set(paths) == {"user", "assistant", "mixed"}
    assert {p.name for p in paths.values()} == {
        "audio_user.wav",
        "audio_assistant.wav",
        "audio_mixed.wav",
    }
    loaded = {name: read_wav(p) for name, p in paths.items()}
    assert {rate for _, rate in loaded.values()} == {RATE}
    assert {pcm.shape[0] for pcm, _ in loaded.values()} == {4800}
    np.testing.assert_array_equal(loaded["user"][0], user)
    np.testing.assert_array_equal(loaded["assistant"][0][2400:], bot)
    assert not loaded["assistant"][0][:2400].any()
    np.testing.assert_array_equal(loaded["mixed"][0], tl.mixed())
    assert sorted(p.name for p in (tmp_path / "run" / "rec").iterdir()) == sorted(
        p.name for p in paths.values()
    )  # no temporary files left behind


# ---------------------------------------------------------------- onsets and offsets


def burst(n_silence: int, n_tone: int, n_after: int, amp: float = 8000.0) -> npt.NDArray[np.int16]:
    """Silence, then a 1 kHz cosine (loud first and last samples), then silence."""
    t = np.arange(n_tone) / RATE
    tone = np.rint(amp * np.cos(2 * np.pi * 1000 * t)).astype(np.int16)
    return np.concatenate([np.zeros(n_silence, np.int16), tone, np.zeros(n_after, np.int16)])


def test_onset_and_offset_of_a_burst() -> None:
    x = burst(10_000, 4800, 3000)  # tone occupies [10_000, 14_800)
    assert first_onset(x, sample_rate_hz=RATE) == 10_000
    assert last_offset(x, sample_rate_hz=RATE) == 14_799
    assert first_onset(x, sample_rate_hz=RATE, start_index=12_000) == 12_000
    assert last_offset(x, sample_rate_hz=RATE, end_index=12_000) == 11_999
    assert first_onset(x, sample_rate_hz=RATE, start_index=14_800) is None
    assert last_offset(x, sample_rate_hz=RATE, end_index=10_000) is None
    assert first_onset(x, sample_rate_hz=RATE, end_index=10_000) is None


def test_onset_ignores_quiet_noise_and_clicks() -> None:
    rng = np.random.default_rng(3)
    x = burst(100_000, 9600, 100_000).astype(np.int32)  # onset past one scan block
    x += np.rint(rng.normal(0, 50, x.shape[0])).astype(np.int32)  # about -56 dBFS
    x[30_000] = 3000  # an isolated click: loud sample, but a quiet 10 ms window
    x[150_000] = -3000
    pcm = x.astype(np.int16)
    onset = first_onset(pcm, sample_rate_hz=RATE)
    offset = last_offset(pcm, sample_rate_hz=RATE)
    assert onset is not None and abs(onset - 100_000) <= 2
    assert offset is not None and abs(offset - 109_599) <= 2
    # The same noise alone is not "audible" at -40 dBFS, but is at -60 dBFS.
    noise = pcm[:90_000]
    assert first_onset(noise, sample_rate_hz=RATE) is None
    assert first_onset(noise, sample_rate_hz=RATE, rms_threshold_dbfs=-60.0) == 0


def test_onset_threshold_is_rms_in_dbfs() -> None:
    # A sine at -30 dBFS RMS (re 32768) is audible at -35 dBFS, not at -25 dBFS.
    amp = 32768 * 10 ** (-30 / 20) * np.sqrt(2)
    x = burst(4800, 9600, 4800, amp=amp)
    assert first_onset(x, sample_rate_hz=RATE, rms_threshold_dbfs=-35.0) == 4800
    assert first_onset(x, sample_rate_hz=RATE, rms_threshold_dbfs=-25.0) is None
    assert last_offset(x, sample_rate_hz=RATE, rms_threshold_dbfs=-25.0) is None


def test_timeline_onset_helpers_read_the_tracks() -> None:
    tl = Timeline(t0_ns=T0)
    tl.write("user", burst(0, 9600, 0), t_ns=T0 + 1_000 * MS)
    tl.write("assistant", burst(2400, 4800, 0), t_ns=T0 + 1_400 * MS)  # leading silence counts
    user_end = tl.last_offset("user")
    bot_start = tl.first_onset("assistant", start_index=0)
    assert user_end == RATE + 9599
    assert bot_start == tl.index_of(T0 + 1_450 * MS)
    assert user_end is not None and bot_start is not None
    gap_ms = (tl.time_of(bot_start) - tl.time_of(user_end)) / MS
    assert gap_ms == pytest.approx(250.0, abs=0.05)
    assert tl.first_onset("user", start_index=user_end + 1) is None


# ---------------------------------------------------------------- WAV helpers


def test_wav_bytes_header_and_round_trip(tmp_path: Path) -> None:
    pcm = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    data = wav_bytes(pcm, sample_rate_hz=8000)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) == 44 + 2 * pcm.shape[0]
    path = write_wav(tmp_path / "x.wav", pcm, sample_rate_hz=8000)
    assert path.read_bytes() == data
    back, rate = read_wav(path)
    assert rate == 8000 and back.dtype == np.int16
    np.testing.assert_array_equal(back, pcm)
    # Overwriting replaces the file whole.
    write_wav(path, pcm[:2], sample_rate_hz=16000)
    back, rate = read_wav(str(path))
    assert rate == 16000 and back.tolist() == [0, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


def test_wav_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="int16"):
        wav_bytes(np.zeros(4), sample_rate_hz=8000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        wav_bytes(np.zeros(4, dtype=np.int16), sample_rate_hz=0)
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00" * 16)
    with pytest.raises(ValueError, match="mono 16-bit"):
        read_wav(stereo)
    with pytest.raises(TypeError):
        write_wav(tmp_path / "bad.wav", np.zeros(4, dtype=np.int32), sample_rate_hz=8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stereo.wav"]


def test_sender_that_slips_later_keeps_its_real_gap() -> None:
    # The sender's clock restarts 30 ms late (it really paused 30 ms) with small jitter after:
    # later audio lands 30 ms later, the 30 ms are silence, nothing else moves.
    tl = Timeline(t0_ns=T0)
    rng = np.random.default_rng(1)
    sent = frames(120)
    grid = [T0 + (i + 1) * 20 * MS + (30 * MS if i >= 50 else 0) for i in range(120)]
    for i, (frame, t) in enumerate(zip(sent, grid, strict=True)):
        tl.append_user(frame, t_ns=t + int(rng.uniform(0, 2) * MS) * (i > 0))
    track = tl.track("user")
    np.testing.assert_array_equal(track[: 50 * FRAME], np.concatenate(sent[:50]))
    tail = np.concatenate(sent[50:])
    where = tl.index_of(grid[50]) - FRAME
    assert abs((len(track) - len(tail)) - where) <= 2 * RATE // 1000  # within 2 ms of the truth
    np.testing.assert_array_equal(track[len(track) - len(tail):], tail)
    gap = zero_runs(track)
    assert len(gap) == 1 and abs(gap[0][1] - 30 * RATE // 1000) <= 2 * RATE // 1000  # (start, n)


def test_a_first_chunk_that_began_before_zero_is_cut_not_shifted() -> None:
    """A caller whose first 20 ms frame arrives 5 ms after the clock's zero: its audio began
    15 ms before zero. The part before zero is cut; the rest, and every later frame, stays
    where it was sent (not 15 ms late)."""
    tl = Timeline(t0_ns=0, sample_rate_hz=8000)
    for k in range(5):
        frame = np.full(160, k + 1, dtype=np.int16)
        tl.append_user(frame, t_ns=(5 + 20 * k) * 1_000_000)
    user = tl.track("user")
    assert user[0] == 1 and user[39] == 1 and user[40] == 2  # frame 1 ends at 5 ms = sample 40
    assert user.size == 40 + 4 * 160
