"""StreamResampler's filter design is numpy-only (no ``scipy.signal`` on the event loop when a
call starts) and gives scipy's ``firwin`` taps; its reused input buffer and in-place int16
conversion change no output sample."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest
from scipy.signal import firwin, kaiser_beta

from hydralab.audio.resample import (
    _KEEP_BUFFER_SAMPLES,
    _PASS_EDGE,
    _STOP_EDGE,
    StreamResampler,
    _design,
    _kaiser_beta,
    _kaiser_lowpass,
    _to_int16,
)

# Every pair the bridge and the uplink build, then the odd model rates it converts too.
PAIRS = [
    (8000, 16000),
    (8000, 48000),
    (16000, 8000),
    (24000, 8000),
    (48000, 8000),
    (24000, 48000),
    (16000, 48000),
    (44100, 8000),
    (44100, 48000),
    (22050, 48000),
    (8000, 24000),
    (48000, 16000),
    (16000, 24000),
    (8000, 44100),
]


def _ids(pairs: list[tuple[int, int]]) -> list[str]:
    return [f"{a / 1000:g}k-{b / 1000:g}k" for a, b in pairs]


def _prototype(in_hz: int, out_hz: int, taps_per_phase: int) -> tuple[int, int, np.ndarray]:
    """(L, M, prototype taps without the gain L) recovered from the polyphase bank."""
    g = math.gcd(in_hz, out_hz)
    up, down = out_hz // g, in_hz // g
    d = _design(up, down, taps_per_phase)
    # bank[p, i] = h[p + i*L], reversed along i
    proto = np.asarray(d.bank[:, ::-1].T.reshape(-1)[: d.taps]) / up
    return up, down, proto


@pytest.mark.parametrize("taps_per_phase", [48, 16, 7])
@pytest.mark.parametrize(("in_hz", "out_hz"), PAIRS, ids=_ids(PAIRS))
def test_taps_equal_scipy_firwin(in_hz: int, out_hz: int, taps_per_phase: int) -> None:
    up, down, proto = _prototype(in_hz, out_hz, taps_per_phase)
    d = _design(up, down, taps_per_phase)
    nyq = 0.5 / max(up, down)
    reference = firwin(
        d.taps,
        0.5 * (_PASS_EDGE + _STOP_EDGE) * nyq,
        window=("kaiser", kaiser_beta(d.attenuation_db)),
        fs=1.0,
    )
    assert proto.shape == reference.shape
    np.testing.assert_allclose(proto, reference, rtol=0, atol=1e-12)
    assert abs(float(np.sum(proto)) - 1.0) < 1e-12  # unit DC gain


@pytest.mark.parametrize("attenuation", [0.0, 10.0, 21.0, 21.5, 35.0, 50.0, 50.01, 94.4, 120.0])
def test_kaiser_beta_is_scipys(attenuation: float) -> None:
    assert _kaiser_beta(attenuation) == pytest.approx(kaiser_beta(attenuation), rel=0, abs=1e-15)


@pytest.mark.parametrize(("numtaps", "cutoff"), [(3, 0.2), (97, 0.2437), (1155, 0.0011)])
def test_lowpass_equals_firwin_beyond_the_designs_parameters(numtaps: int, cutoff: float) -> None:
    for beta in (0.0, 3.5, 8.6, 12.3):
        ours = _kaiser_lowpass(numtaps, cutoff, beta)
        theirs = firwin(numtaps, cutoff, window=("kaiser", beta), fs=1.0)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_building_and_running_resamplers_leaves_scipy_unimported() -> None:
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import hydralab.audio.resample\n"
        "from hydralab.audio import StreamResampler\n"
        f"for a, b in {PAIRS!r}:\n"
        "    r = StreamResampler(a, out_rate_hz=b)\n"
        "    r.process(np.zeros(a // 50, dtype=np.int16))\n"
        "print(sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_to_int16_rounds_half_to_even_and_saturates() -> None:
    ties = [0.5, 1.5, -0.5, -1.5, -0.0, 32766.5, 32767.5, -12345.5]
    others = [2.4999, 32767.4, 1e9, -32768.4, -32768.6, -1e9, 12345.678]
    y = np.array([*ties, *others], dtype=np.float64)
    expected = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
    got = _to_int16(y.copy())
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, expected)


def _signal(rate_hz: int, n: int, seed: int) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate_hz
    x = 20000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 6000, n)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize(("in_hz", "out_hz"), PAIRS[:8], ids=_ids(PAIRS[:8]))
def test_reused_buffer_changes_nothing(in_hz: int, out_hz: int) -> None:
    """The input buffer kept between calls (and left over after a bigger chunk or a reset) gives
    the same samples as a fresh resampler, for chunks on both sides of the size it keeps."""
    x = _signal(in_hz, _KEEP_BUFFER_SAMPLES + 3 * in_hz // 50 + 7, seed=in_hz + out_hz)
    frame = in_hz // 50
    sizes = [frame, 3, 0, frame, _KEEP_BUFFER_SAMPLES - 5, 1, frame, 2 * frame]
    sizes.append(x.shape[0] - sum(sizes))

    def run(r: StreamResampler) -> npt.NDArray[np.int16]:
        out, at = [], 0
        for size in sizes:
            out.append(r.process(x[at : at + size]))
            at += size
        return np.concatenate(out)

    fresh = run(StreamResampler(in_hz, out_rate_hz=out_hz))
    assert fresh.shape[0] == x.shape[0] * out_hz // in_hz
    used = StreamResampler(in_hz, out_rate_hz=out_hz)
    used.process(_signal(in_hz, _KEEP_BUFFER_SAMPLES + 11, seed=1))  # bigger than it keeps
    used.process(_signal(in_hz, 4 * frame, seed=2))
    used.reset()
    np.testing.assert_array_equal(run(used), fresh)
    np.testing.assert_array_equal(run(StreamResampler(in_hz, out_rate_hz=out_hz)), fresh)
    assert used._buf.shape[0] <= _KEEP_BUFFER_SAMPLES
