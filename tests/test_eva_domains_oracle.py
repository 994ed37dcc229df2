"""itsm and medical_hr: oracle conversations with EVA's own tool code, and the configure ceiling.

Every shared itsm and medical_hr record is simulated in virtual time against the emulator with
EVA's tool code loaded from ``../shared/eva/src`` at run time (:mod:`oracle_checks` says what an
oracle run must show). Their tool schemas alone exceed Hydra's ~32 KB ``session.configure``
ceiling, so they run ``compacted`` (labelled non-standard); one runs the experimental
``update`` strategy (the emulator's default: ``session.update`` is not limited). Standard mode
refuses them before anything starts, with the numbers, and so does hydralab's own tool code
(it has no itsm / medical_hr tools) with what to point ``--eva-dir`` at.
Skipped when ``../shared/eva`` is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from needs import PANDAS
from oracle_checks import (
    EVA_DATA,
    EVA_DIR,
    check_eva_run_directory,
    check_oracle_run,
    domain_records,
    real_calls,
)

from hydralab.protocol.budget import ConfigureTooLargeError
from hydralab.records import load_record
from hydralab.runner import RunResult
from hydralab.sim import simulate_record
from hydralab.tools import ToolBackendError

CASES = [(rid, domain) for domain in ("itsm", "medical_hr") for rid in domain_records(domain)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    out = tmp_path_factory.mktemp("oracle")
    return {
        rid: simulate_record(
            rid,
            data_dir=EVA_DIR,
            out_dir=out,
            run_id=f"oracle-{domain}",  # EVA's run is one domain (config.json names it)
            tools="eva",
            configure_mode="compacted",
        )
        for rid, domain in CASES
    }


@real_calls
@pytest.mark.parametrize(("record_id", "domain"), CASES)
def test_oracle_run_completes_the_task(
    runs: dict[str, RunResult], record_id: str, domain: str
) -> None:
    record = load_record(record_id, data_dir=EVA_DIR, domain=domain)
    result = runs[record_id]
    check_oracle_run(result, record, tools="eva")
    check_eva_run_directory(result, record)
    # compacted to fit, and labelled so wherever the numbers are read
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    budget = run["configure_budget"]
    assert budget["mode"] == "compacted" and budget["standard"] is False
    assert budget["bytes"] <= budget["ceiling_bytes"]
    assert result.conditions["standard"] is False
    assert "non-standard" in result.summary()


@real_calls
def test_trace_ids_were_chained_to_the_live_ones(runs: dict[str, RunResult]) -> None:
    # itsm ids are content hashes; the trace's invented ones were mapped as the call went
    chained = {
        rid: json.loads((r.run_dir / "run.json").read_text(encoding="utf-8"))[
            "emulator_id_chain"
        ]
        for rid, r in runs.items()
    }
    assert chained["11"] == {"INC0048271": "INC4951eb12a732"}
    for rid in ("12", "13", "14"):
        ((trace_id, live_id),) = chained[rid].items()
        assert trace_id.endswith("-048271") and live_id != trace_id


@real_calls
@pytest.mark.skipif(not PANDAS, reason="needs pandas (the notebooks extra)")
def test_the_sessions_table_says_how_each_conversation_ran(runs: dict[str, RunResult]) -> None:
    from hydralab.analysis import load_run

    for rid, result in runs.items():
        row = load_run(result.run_dir).sessions.iloc[0]
        assert row["record_id"] == rid
        assert row["domain"] in ("itsm", "medical_hr")
        assert (row["configure_mode"], row["standard_conditions"]) == ("compacted", False)
        assert row["tools_backend"] == "eva"


@pytest.mark.skipif(not EVA_DATA, reason="shared EVA data not present")
@pytest.mark.parametrize("domain", ["itsm", "medical_hr"])
def test_standard_mode_refuses_with_the_numbers(tmp_path: Path, domain: str) -> None:
    rid = domain_records(domain)[0]
    with pytest.raises(ConfigureTooLargeError) as err:
        simulate_record(rid, data_dir=EVA_DIR, out_dir=tmp_path, tools="eva")
    text = str(err.value)
    assert "32,000-byte ceiling" in text and "bytes" in text
    assert "compacted" in text and "update" in text
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.skipif(not EVA_DATA, reason="shared EVA data not present")
def test_hydralabs_tools_have_no_itsm_and_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ToolBackendError, match="--eva-dir"):
        simulate_record(
            "11", data_dir=EVA_DIR, out_dir=tmp_path, tools="hydralab", configure_mode="compacted"
        )
    assert not any(tmp_path.iterdir())


@real_calls
def test_update_strategy_runs_an_itsm_record(tmp_path: Path) -> None:
    result = simulate_record(
        "11", data_dir=EVA_DIR, out_dir=tmp_path, tools="eva", configure_mode="update"
    )
    check_oracle_run(result, load_record("11", data_dir=EVA_DIR), tools="eva")
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    budget = run["configure_budget"]
    assert budget["mode"] == "update" and budget["standard"] is False
    update = budget["update"]
    assert update["tools"] == 59 and update["verified"] is False
    sent = run["bridge"]["session_update"]
    assert sent["sent"] and sent["echo"] and sent["all_tools_applied"]
    assert sent["echo_tools"] == 59
