"""hydralab.analysis on recorded fixtures: tables, audio, players and every plot.

``fixtures/run_HL-AIR-002`` is one offline call with a barge-in (audio at 8/16 kHz);
``fixtures/batch_emulator`` is notebook 02's batch (3 records × 2 trials) without audio.
Each plot is drawn on the Agg backend and checked for what it must show.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from hydralab import analysis  # noqa: E402
from hydralab.analysis import (  # noqa: E402
    RunTables,
    find_runs,
    latency_table,
    latest_run,
    listen,
    listen_turn,
    load_audio,
    load_batch,
    load_run,
    load_transcript,
    plot_latency_box,
    plot_latency_ecdf,
    plot_latency_hist,
    plot_spectrogram,
    plot_timeline,
    plot_tool_waterfall,
    plot_turn_latency,
    tool_waterfall,
    turn_players,
)

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run_HL-AIR-002"
BATCH = FIXTURES / "batch_emulator"


@pytest.fixture(scope="module")
def run() -> RunTables:
    return load_run(RUN)


@pytest.fixture(scope="module")
def batch() -> RunTables:
    return load_batch(BATCH)


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


def _run_json(d: Path) -> dict[str, Any]:
    return json.loads((d / "run.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- tables
def test_turns_in_call_order_with_both_speakers(run: RunTables) -> None:
    t = run.turns
    meta = _run_json(RUN)
    assert (t["speaker"] == "assistant").sum() == len(meta["turns"]) == 4
    assert (t["speaker"] == "user").sum() == len(meta["user_utterances"]) == 3
    assert t["start_s"].is_monotonic_increasing
    assert (t["end_s"] > t["start_s"]).all()
    assert list(t["speaker"]) == ["assistant", "user"] * 3 + ["assistant"]
    assert list(run.assistant["type"]) == ["greeting", "barged_in", "tool", "plain"]


def test_barge_in_on_both_sides(run: RunTables) -> None:
    t = run.turns
    cut = t[t["type"] == "barged_in"].iloc[0]
    caller = t[t["type"] == "barge_in"].iloc[0]
    assert cut["interrupted"] and cut["status"] == "interrupted"
    # the caller started while the agent was still speaking; the agent stopped after that
    assert cut["start_s"] < caller["start_s"] < cut["end_s"]


def test_latency_anchors_are_consistent(run: RunTables) -> None:
    a = run.assistant
    meta = _run_json(RUN)
    got = a["model_response_ms"].dropna().to_numpy()
    want = [x["model_response_ms"] for x in meta["turns"] if x["model_response_ms"] is not None]
    np.testing.assert_allclose(got, want)
    timed = a.dropna(subset=["model_response_ms"])
    span = (timed["first_audio_s"] - timed["speech_stopped_s"]) * 1000
    np.testing.assert_allclose(span, timed["model_response_ms"], atol=1e-6)
    # Hydra hears the end of speech after the caller stops, then answers; playback follows
    assert (timed["user_stop_s"] < timed["speech_stopped_s"]).all()
    assert (timed["first_audio_s"] <= timed["start_s"] + 0.05).all()
    caller = (timed["start_s"] - timed["user_stop_s"]) * 1000
    np.testing.assert_allclose(timed["caller_latency_ms"], caller)
    v2v = [x["v2v_ms"] for x in meta["turns"] if x["model_response_ms"] is not None]
    np.testing.assert_allclose(timed["v2v_ms"], v2v)  # the bridge's audio-onset v2v, as written
    greeting = a[a["type"] == "greeting"].iloc[0]
    assert np.isnan(greeting["model_response_ms"]) and greeting["latency_reason"] == "greeting"
    assert np.isnan(greeting["caller_latency_ms"])


def test_tool_calls(run: RunTables) -> None:
    c = run.tool_calls
    assert list(c["tool"]) == ["get_reservation", "get_flight_status"]
    assert list(c["status"]) == ["success", "success"]
    assert (c["turn"] == 2).all()
    assert c.iloc[0]["args"]["confirmation_number"] == "PL9XMC"
    assert (c["args_ms"] > 0).all() and (c["exec_ms"] >= 0).all()
    assert (c["args_start_s"] < c["args_done_s"]).all()
    assert (c["args_done_s"] <= c["output_sent_s"]).all()


def test_sessions(run: RunTables) -> None:
    s = run.sessions.iloc[0]
    meta = _run_json(RUN)
    assert s["record_id"] == "HL-AIR-002" and s["model"] == "emulator"
    assert s["ended_reason"] == "goodbye" and s["task_completion"] == 1.0
    assert (s["n_user_turns"], s["n_assistant_turns"], s["n_barge_ins"]) == (3, 4, 1)
    assert s["n_tool_calls"] == 2
    assert s["input_tokens"] == sum(t["usage"]["input_tokens"] for t in meta["turns"])
    assert s["model_response_n"] == 3
    assert s["model_response_max_ms"] == pytest.approx(meta["latency"]["model_response"]["max_ms"])
    assert 25 < s["call_s"] < 40
    assert Path(s["run_dir"]) == RUN


def test_load_run_accepts_parents_results_and_tables(tmp_path: Path, run: RunTables) -> None:
    nested = tmp_path / "run-1" / "records" / "HL-AIR-002"
    shutil.copytree(RUN, nested)
    via_parent = load_run(tmp_path / "run-1")
    assert via_parent.run_dirs == [nested]
    assert load_run(SimpleNamespace(run_dir=nested)).turns.shape == run.turns.shape
    assert load_run(run).run_dirs == [RUN]
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path / "nothing")
    shutil.copytree(RUN, tmp_path / "run-1" / "records" / "again")
    with pytest.raises(FileNotFoundError, match="load_batch"):
        load_run(tmp_path / "run-1")


def test_load_batch_reads_manifest_and_layout(batch: RunTables) -> None:
    manifest = json.loads((BATCH / "batch.json").read_text(encoding="utf-8"))
    convs = manifest["conversations"]
    assert len(batch.sessions) == len(convs) == 6
    assert sorted(batch.sessions["trial"]) == [1, 1, 1, 2, 2, 2]
    assert set(batch.sessions["record_id"]) == {"HL-AIR-001", "HL-AIR-002", "HL-AIR-003"}
    assert set(batch.turns["conversation"]) == set(batch.sessions["conversation"])
    assert all(c.startswith("trial_") for c in batch.sessions["conversation"])
    assert batch.turns["trial"].notna().all() and batch.tool_calls["trial"].notna().all()
    assert (batch.sessions["task_completion"] == 1.0).all()
    types = batch.assistant["type"].value_counts().to_dict()
    assert types == {"greeting": 6, "plain": 8, "tool": 12}
    users = batch.turns[batch.turns["speaker"] == "user"]
    assert len(users) == 20 and (users["type"] == "plain").all()  # nobody barged in
    assert len(find_runs(BATCH)) == 6
    d = batch.run_dir(batch.sessions["conversation"].iloc[0])
    assert (d / "run.json").is_file() and batch.run_dir(0) == d


def test_load_batch_without_manifest_and_a_torn_event_log(tmp_path: Path) -> None:
    d = tmp_path / "trial_3" / "x"
    shutil.copytree(RUN, d)
    with (d / "events.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"t_ms": 1, "rel_ms": 99999, "src": "hy')  # a crash mid-line
    t = load_batch(tmp_path)
    assert list(t.sessions["trial"]) == [3]
    assert len(t.turns) == 7
    with pytest.raises(FileNotFoundError):
        load_batch(tmp_path / "empty")


def test_latency_table_matches_numpy(run: RunTables, batch: RunTables) -> None:
    tab = latency_table(batch)
    assert list(tab.index) == ["plain", "tool", "all"]
    tool = batch.assistant[batch.assistant["type"] == "tool"]["model_response_ms"].to_numpy()
    assert tab.loc["tool", "n"] == tool.size == 12
    for p in (50, 90, 95):
        assert tab.loc["tool", f"p{p}_ms"] == pytest.approx(np.percentile(tool, p))
    assert tab.loc["tool", "max_ms"] == pytest.approx(tool.max())
    assert tab.loc["all", "n"] == 20
    small = latency_table(run)
    assert list(small.index) == ["plain", "tool", "barged_in", "all"]
    assert latency_table(run, by=None).index.tolist() == ["all"]
    assert latency_table(batch, metric="caller_latency_ms").loc["all", "n"] == 20


def test_tool_waterfall_stages_add_up(batch: RunTables) -> None:
    wf = tool_waterfall(batch)
    assert len(wf) == 12
    stages = [label for _, label in analysis.WATERFALL_STAGES]
    np.testing.assert_allclose(wf[stages].sum(axis=1), wf["total_ms"], atol=1e-6)
    assert (wf[stages] >= 0).all().all()
    debounce = wf["bridge: debounce → response.create"]
    assert debounce.between(150, 400).all()  # the bridge waits ~200 ms for more outputs


def test_transcript(run: RunTables) -> None:
    tr = load_transcript(RUN)
    assert list(tr.columns) == ["t_s", "who", "text", "intended"]
    assert tr["t_s"].is_monotonic_increasing
    assert {"user", "assistant", "tool_call", "tool_response"} <= set(tr["who"])


# ---------------------------------------------------------------------------- audio
def test_audio_tracks_and_mix() -> None:
    user, ur = load_audio(RUN, "caller")
    model, mr = load_audio(RUN, "model")
    mixed, xr = load_audio(RUN, "mixed")  # no audio_mixed.wav in the fixture: mixed on the fly
    assert (ur, mr, xr) == (8000, 16000, 16000)
    assert abs(user.size / ur - model.size / mr) < 0.05
    assert abs(mixed.size / xr - model.size / mr) < 0.05
    assert np.abs(mixed).max() > 1000
    with pytest.raises(ValueError, match="unknown track"):
        load_audio(RUN, "stereo")


def _wav(player: Any) -> tuple[int, float]:
    with wave.open(io.BytesIO(player.data), "rb") as w:
        return w.getframerate(), w.getnframes() / w.getframerate()


def test_players_are_48k(run: RunTables) -> None:
    assert _wav(listen(RUN, "model", start_s=1.0, end_s=3.0)) == (48000, pytest.approx(2.0))
    assert _wav(listen(RUN))[1] == pytest.approx(run.sessions["call_s"].iloc[0], abs=0.05)
    turn = run.assistant.iloc[1]
    rate, seconds = _wav(listen_turn(RUN, int(turn["turn"])))
    assert rate == 48000
    assert seconds == pytest.approx(turn["end_s"] - turn["start_s"] + 0.5, abs=0.01)
    with pytest.raises(KeyError):
        listen_turn(RUN, 99)
    html = turn_players(RUN, types=["barged_in", "barge_in"]).data
    assert html.count("<audio") == 2 and "barged_in" in html
    assert turn_players(RUN).data.count("<audio") == 7


# ---------------------------------------------------------------------------- plots
def _lines_with_data(ax: Any) -> list[Any]:
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]


def test_plot_latency_ecdf(batch: RunTables) -> None:
    ax = plot_latency_ecdf(batch)
    steps = [ln for ln in _lines_with_data(ax) if ln.get_drawstyle().startswith("steps")]
    assert len(steps) == 3  # heard (dashed, beside model_response), plain, tool
    assert steps[0].get_linestyle() == "--"
    alone = plot_latency_ecdf(batch, heard=False)
    steps_alone = [ln for ln in _lines_with_data(alone) if ln.get_drawstyle().startswith("steps")]
    assert len(steps_alone) == 2  # plain, tool
    marks = [ln for ln in _lines_with_data(ax) if ln.get_marker() in ("o", "s", "^")]
    assert len(marks) == 2 * 3  # p50, p90, p95 on each curve
    tool = batch.assistant[batch.assistant["type"] == "tool"]["model_response_ms"]
    p90 = next(ln for ln in marks if ln.get_marker() == "s" and ln.get_xdata()[0] > 900)
    assert p90.get_xdata()[0] == pytest.approx(np.percentile(tool, 90))
    assert p90.get_ydata()[0] == pytest.approx(0.9)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("heard by the caller, all (n=")
    assert legend[1].startswith("plain (n=8)") and legend[2].startswith("tool (n=12)")
    assert "model_response" in ax.get_xlabel() and ax.get_ylim()[1] >= 1.0


def test_plot_latency_hist(batch: RunTables) -> None:
    _, ax = plt.subplots()
    assert plot_latency_hist(batch, bins=10, ax=ax) is ax
    vlines = [ln for ln in _lines_with_data(ax) if len(set(ln.get_xdata())) == 1]
    assert len(vlines) == 2 * 3
    filled = [p for p in ax.patches if p.get_fill()]
    assert len(filled) == 2  # one stepfilled polygon per turn type
    assert ax.get_ylabel() == "turns"


def test_plot_latency_box(batch: RunTables) -> None:
    ax = plot_latency_box(batch, by="record_id")
    records = ["HL-AIR-001", "HL-AIR-002", "HL-AIR-003"]
    assert [t.get_text() for t in ax.get_xticklabels()] == records
    dots = [c for c in ax.collections if c.get_offsets().shape[0]]
    assert len(dots) == 2 and sum(c.get_offsets().shape[0] for c in dots) == 20
    medians = [ln for ln in ax.get_lines() if ln.get_color() == "black"]
    assert len(medians) == 3
    by_trial = plot_latency_box(batch, by="trial")
    assert [t.get_text() for t in by_trial.get_xticklabels()] == ["1", "2"]


def test_plot_tool_waterfall(batch: RunTables) -> None:
    ax = plot_tool_waterfall(batch)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 12 * len(analysis.WATERFALL_STAGES)
    assert len(ax.get_yticklabels()) == 12
    assert ax.get_yticklabels()[0].get_text() == "HL-AIR-001 t1 · turn 2"
    wf = tool_waterfall(batch)
    right = max(b.get_x() + b.get_width() for b in bars)
    assert right == pytest.approx(wf["total_ms"].max())
    assert len(ax.get_legend().get_texts()) == len(analysis.WATERFALL_STAGES) + 1


def test_plot_timeline(run: RunTables) -> None:
    ax = plot_timeline(RUN)
    spans = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(spans) == 7
    assert sum(p.get_hatch() == "//" for p in spans) == 2  # the barge-in, both sides
    waves = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(waves) == 2  # caller and model waveforms
    brackets = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 4]
    assert len(brackets) == 3  # one per turn with a model_response
    labels = {t.get_text() for t in ax.texts}
    assert {"get_reservation", "get_flight_status"} <= labels
    timed = run.assistant.dropna(subset=["model_response_ms"])
    ms = [f"{v:.0f} ms" for v in timed["model_response_ms"]]
    assert set(ms) <= labels
    assert [t.get_text() for t in ax.get_yticklabels()] == ["caller", "model"]
    assert ax.get_xlim()[1] == pytest.approx(run.sessions["call_s"].iloc[0], abs=0.05)
    # zoom on the barge-in: only what lies inside the window is drawn
    cut, tool = timed.iloc[0], timed.iloc[1]
    lo, hi = cut["speech_stopped_s"] - 0.5, tool["speech_stopped_s"] - 0.1
    zoom = plot_timeline(RUN, start_s=lo, end_s=hi, show_text=True)
    assert zoom.get_xlim() == (lo, hi)
    texts = {t.get_text() for t in zoom.texts}
    assert ms[0] in texts and ms[1] not in texts and "get_reservation" not in texts


@pytest.mark.parametrize("librosa", [True, False], ids=["librosa", "scipy"])
def test_plot_spectrogram(librosa: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if librosa:
        pytest.importorskip("librosa")
    else:
        real = analysis.importlib.import_module

        def no_librosa(name: str, *a: Any) -> Any:
            if name.startswith("librosa"):
                raise ImportError(name)
            return real(name, *a)

        monkeypatch.setattr(analysis.importlib, "import_module", no_librosa)
    ax = plot_spectrogram(RUN, start_s=5.0, end_s=20.0)
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    assert ax.get_xlim() == pytest.approx((5.0, 20.0), abs=0.02)
    stripes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(stripes) == 5  # turns overlapping 5-20 s: caller 0-1, agent 1-2
    assert ("mel" in ax.get_ylabel()) is librosa
    assert "16 kHz" in ax.get_title()


def test_plot_turn_latency(run: RunTables) -> None:
    ax = plot_turn_latency(RUN)
    assert len(ax.patches) == 4
    assert ax.patches[2].get_height() == pytest.approx(run.assistant.iloc[2]["model_response_ms"])


def test_latest_run(tmp_path: Path) -> None:
    assert latest_run(tmp_path / "none") is None
    shutil.copytree(RUN, tmp_path / "a")
    shutil.copytree(RUN, tmp_path / "b")
    (tmp_path / "a" / "run.json").touch()
    assert latest_run(tmp_path) == tmp_path / "a"


def test_import_is_lazy() -> None:
    code = (
        "import sys, hydralab.analysis; "
        "print(sorted(m for m in ('pandas', 'matplotlib', 'IPython', 'librosa') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_call_that_recorded_no_audio_still_plays_and_plots(tmp_path: Path) -> None:
    """A call that failed before any audio (e.g. the caller could not connect) leaves empty
    WAVs: players and plots show that, they do not raise (notebook 03 may pick such a run)."""
    from hydralab.audio import write_wav

    run_dir = tmp_path / "run"
    shutil.copytree(RUN, run_dir)
    for name in ("audio_user.wav", "audio_assistant.wav", "audio_mixed.wav"):
        write_wav(run_dir / name, np.zeros(0, dtype=np.int16), sample_rate_hz=48000)
    assert listen(run_dir, "mixed") is not None
    ax = plot_spectrogram(run_dir, track="mixed")
    assert [t.get_text() for t in ax.texts] == ["no audio"]
    assert turn_players(run_dir) is not None
