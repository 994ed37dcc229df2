"""The headline numbers: model_response beside what the caller heard, and labels that say how a
run was made (model, tag, voice, rate, caller, STT, configure strategy, hydralab version)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from needs import PANDAS, needs_speech

from hydralab.audio.perturb import LinePerturbation
from hydralab.runner import HEARD_DEFINITION
from hydralab.sim import simulate_record

pytestmark = needs_speech


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> object:
    return simulate_record("HL-AIR-001", out_dir=tmp_path_factory.mktemp("headline"))


def test_heard_is_evas_latency_assistant_turns(run: object) -> None:
    result = run  # type: ignore[assignment]
    meta = json.loads((result.run_dir / "run.json").read_text())  # type: ignore[attr-defined]
    heard = [t["heard_ms"] for t in meta["turns"] if t["heard_ms"] is not None]
    assert len(heard) == len(meta["turns"]) - 1  # every turn but the greeting
    # EVA's response_speed is the mean of the same per-turn values (seconds)
    speed_s = result.scores["response_speed"]  # type: ignore[attr-defined]
    assert abs(sum(heard) / len(heard) - speed_s * 1000.0) <= 2.0  # ms stamps vs EVA rounding
    assert meta["latency"]["heard"]["n"] == len(heard)
    # the caller hears later than the model answers: detection, links, bridge on top
    mr = {t["index"]: t["model_response_ms"] for t in meta["turns"]}
    for t in meta["turns"]:
        if t["heard_ms"] is not None and mr[t["index"]] is not None:
            assert t["heard_ms"] > mr[t["index"]]
    assert "latency_assistant_turns" in HEARD_DEFINITION


def test_the_summary_prints_both_headlines(run: object) -> None:
    text = run.summary()  # type: ignore[attr-defined]
    assert "latency p50: model_response" in text and "heard by the caller" in text
    assert "· heard " in text  # per turn too


@pytest.mark.skipif(not PANDAS, reason="needs pandas (the notebooks extra)")
def test_tables_carry_the_labels_and_both_numbers(run: object) -> None:
    from hydralab.analysis import load_run

    tables = load_run(run)
    row = tables.sessions.iloc[0]
    assert row["model"] == "emulator" and row["model_tag"] == "hydra-v1.1"
    assert row["voice"] and row["output_rate_hz"] == 24000
    assert row["caller"] == "scripted" and row["stt"] == "oracle"
    assert row["configure_mode"] == "standard" and row["hydralab_version"]
    assert row["heard_p50_ms"] > row["model_response_p50_ms"]
    assert "heard_ms" in tables.turns.columns


def test_on_a_noisy_line_v2v_says_why_it_is_missing(tmp_path: Path) -> None:
    result = simulate_record(
        "HL-AIR-001", out_dir=tmp_path, line=LinePerturbation(noise="pink", snr_db=15.0)
    )
    meta = json.loads((result.run_dir / "run.json").read_text())
    rows = [t for t in meta["turns"] if t["kind"] != "greeting"]
    assert all(t["v2v_ms"] is None and t["v2v_reason"].startswith("noisy_line") for t in rows)
    assert all(t["heard_ms"] is not None and t["heard_ms"] > 0 for t in rows)


@pytest.mark.skipif(not PANDAS, reason="needs pandas (the notebooks extra)")
def test_the_transcript_shows_the_intended_line_beside_what_stt_heard() -> None:
    from hydralab.analysis import load_transcript

    df = load_transcript(Path(__file__).parent / "fixtures" / "run_HL-AIR-002")
    users = df[df["who"] == "user"]
    assert list(users["intended"])[1] == "PL9XMC, last name Hunter."
    assert list(users["text"])[1] == "p o i'd s m the last name hunter"  # what STT made of it
    assert df[df["who"] != "user"]["intended"].isna().all()


def test_the_answer_as_heard_is_the_phone_band() -> None:
    import numpy as np

    from hydralab.analysis import load_audio

    run = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"
    heard, rate = load_audio(run, "heard")
    model, model_rate = load_audio(run, "model")
    assert rate == 8000 and model_rate > rate
    assert abs(len(heard) / rate - len(model) / model_rate) < 0.01  # the same call, narrower
    spectrum = np.abs(np.fft.rfft(heard.astype(float)))
    assert spectrum.argmax() * rate / (2 * len(spectrum)) < 4000
