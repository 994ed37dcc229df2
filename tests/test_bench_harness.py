"""The pieces of ``benchmarks/bridge_bench.py`` work (not how fast anything is: performance
targets live in the benchmark, never in a unit test).

- the fake model passes the real :class:`hydralab.client.HydraClient` handshake and streams a
  response it can parse;
- one short conversation through the bridge (``serve_bridge``, in-process) with the fake caller
  and model: every caller frame reaches the model as one append, every response reaches the
  caller, and the stamps give latency and pacing numbers;
- the pacing statistics on synthetic arrival times.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from benchlib import frames as fr
from benchlib.bridge_proc import LagProbe, bridge_server
from benchlib.fake_caller import CallerGroup
from benchlib.fake_model import FakeModel
from benchlib.load import LoadSpec, analyse
from benchlib.stats import match_latency, pacing_stats, pooled_pacing

from hydralab.client import HydraClient, HydraConfig
from hydralab.protocol.hydra import (
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    decode_pcm16,
)

MS = 1_000_000


# ---------------------------------------------------------------------- stats
def test_perfect_grid_has_no_deviation_and_no_drift() -> None:
    arrivals = 5_000 * MS + np.arange(3000, dtype=np.int64) * 20 * MS
    s = pacing_stats(arrivals, 20.0)
    assert s["n"] == 3000
    assert s["max"] == 0 and s["p99"] == 0 and s["p50"] == 0
    assert s["drift_ms_per_min"] == pytest.approx(0.0, abs=1e-9)


def test_one_late_frame_sets_the_max() -> None:
    arrivals = np.arange(500, dtype=np.int64) * 20 * MS
    arrivals[200] += 15 * MS
    s = pacing_stats(arrivals, 20.0)
    assert s["max"] == pytest.approx(15.0)
    assert s["p50"] == 0


def test_drift_is_the_slope_per_minute() -> None:
    # a sender whose frames come 20.01 ms apart drifts 0.5 ms per second: 30 ms per minute
    arrivals = (np.arange(6000) * 20.01 * MS).astype(np.int64)
    assert pacing_stats(arrivals, 20.0)["drift_ms_per_min"] == pytest.approx(30.0, rel=1e-3)


def test_pooled_pacing_and_latency_matching() -> None:
    a = np.arange(50, dtype=np.int64) * 20 * MS
    b = 10_000 * MS + np.arange(50, dtype=np.int64) * 20 * MS
    b[10] += 3 * MS
    assert pooled_pacing([a, b], 20.0, gap_ms=None)["max"] == pytest.approx(3.0)
    lat, ok = match_latency([0, 20 * MS, 40 * MS], [1 * MS, 22 * MS, 41 * MS])
    assert ok and list(lat) == [1.0, 2.0, 1.0]
    assert not match_latency([0, 1], [5])[1]


def test_the_tone_names_the_caller() -> None:
    n = 128
    for i in (0, 1, 63, 127):
        pcm = fr.tone(fr.tone_hz(i, n), 320 * fr.ID_FRAMES, 16000)
        assert fr.identify_tone(pcm, n) == i


# ---------------------------------------------------------------------- fake model
async def test_fake_model_handshake_with_hydra_client() -> None:
    model = FakeModel(n_total=1, delta_ms=40, greeting_ms=120)
    url = await model.start()
    client = HydraClient(HydraConfig(url=url, voice="zoe"), api_key="bench-dummy-key")
    try:
        configured = await asyncio.wait_for(client.connect(), 10)
        assert client.output_rate_hz == 48000
        assert configured.voice == "zoe"
        seen: list[object] = []
        samples = 0
        async with asyncio.timeout(10):
            async for ev in client:
                seen.append(type(ev))
                if isinstance(ev, ResponseOutputAudioDelta):
                    pcm, _ = decode_pcm16(ev.payload)
                    samples += pcm.size
                if isinstance(ev, ResponseDone):
                    break
        assert seen[0] is ResponseCreated and seen[-1] is ResponseDone
        assert ResponseOutputAudioDone in seen
        assert samples == 48 * 120  # the greeting: 120 ms at 48 kHz
    finally:
        await client.close()
        await model.stop()
    assert model.status()["configured"] == 1


# ---------------------------------------------------------------------- one conversation
@pytest.mark.e2e
async def test_one_conversation_through_the_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMALLEST_API_KEY", "bench-dummy-key")
    model = FakeModel(n_total=1, delta_ms=40, greeting_ms=200)
    await model.start()
    probe = LagProbe()
    spec = LoadSpec(kind="bridge", n=1, window_s=2.0, on_ms=600, off_ms=300, lead_ms=0)
    try:
        async with bridge_server(model.url, out_dir=str(tmp_path)) as server:
            probe.start()
            group = CallerGroup([0], [server.url], n_total=1)
            res = await group.connect(timeout_s=15)
            assert res["connected"] == 1, res
            t0 = time.monotonic_ns() + 50 * MS
            await group.stream(t0)
            await model.respond(t0 + 50 * MS, 600, 300, t0 + int(2.6e9), lead_ms=0)
            w0 = t0 + 200 * MS
            await asyncio.sleep(2.8)
            w1 = time.monotonic_ns() - 300 * MS
            await group.stop_stream()
            await asyncio.sleep(0.3)  # what is in flight arrives
            out = analyse(spec, model.report(), [group.report()], w0, w1)
            assert server.active == 1
            await group.close()
            probe.stop()
    finally:
        await model.stop()
    checks = out["checks"]
    assert checks["convs_unmatched"] == 0 and checks["duplicate_conv_ids"] == 0
    assert checks["uplink_count_mismatch"] == 0  # one append per caller frame, none lost
    assert checks["response_count_mismatch"] == 0
    assert out["uplink_ms"]["n"] > 50
    assert out["downlink_first_ms"]["n"] >= 2
    assert out["downlink_delta_ms"]["n"] >= 2 * 15
    assert out["pacing_ms"]["n"] > 0
    assert len(probe.samples) > 0
