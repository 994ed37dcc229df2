"""run_batch(executor="ray"): the same batch on a local Ray as on the local executor.

One local Ray instance for the module (2 CPUs, 4 ``hydralab_call`` per node, its own temp dir
and namespace: the only Ray user of the suite, so no other test file can collide with it). A
small offline batch (one record × 2 trials, a short scripted call with a tool turn, no STT)
runs on both executors; the run directories must say the same: turns, tool calls, scores, and
``model_response`` per turn within the emulator tolerance of the real-socket tests. Then the
shipped-results path, resume, failures, the session cap and cancellation. Without Ray
(``pip install 'hydralab[ray]'``) the module is skipped.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from needs import PANDAS, needs_speech  # noqa: E402

from hydralab import batch as batch_mod  # noqa: E402
from hydralab.batch import MANIFEST, run_batch, run_batch_sync  # noqa: E402
from hydralab.bridge import BridgeConfig  # noqa: E402
from hydralab.cli import main  # noqa: E402
from hydralab.ray_exec import (  # noqa: E402
    NODE_FILE,
    RESOURCE,
    RaySettings,
    _Limiter,
    pack,
    public_address,
    unpack,
)
from hydralab.script import CallTools, Script, Speak, ToolCall, script_from_lines  # noqa: E402

CALLS_PER_NODE = 4  # this 2-core machine: 2 calls per core (hydralab.ray_exec.CALLS_PER_CORE)
# |measured - emulator ground truth| per turn, as the real-socket tests bound it (test_fidelity):
# two runs of the same seeded turn may differ by twice that
TOLERANCE_MS = 2 * 10.0
# scores that do not depend on latency: equal on both executors
SAME_SCORES = (
    "task_completion", "authentication_success", "tool_call_validity", "conversation_valid_end",
    "conversation_correctly_finished", "conversation_completed_on_time", "db_match", "turns",
)  # fmt: skip
TIMES: dict[str, float] = {}  # wall times, printed at the end of the module (pytest -s)


def short_script() -> Script:
    """A greeting, one tool turn and a goodbye: ~12 s of call."""
    res = {"confirmation_number": "HT4KWB", "last_name": "brooks"}
    return script_from_lines(
        "Hi, SkyWay.",
        ["Confirmation HT4KWB, Brooks.", "Bye."],
        [
            (
                Speak("One moment."),
                CallTools((ToolCall("get_reservation", res),)),
                Speak("Found it."),
            ),
            (Speak("Goodbye."),),
        ],
        record_id="HL-AIR-001",
    )


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    if ray.is_initialized():  # pragma: no cover - nothing else in the suite uses Ray
        pytest.skip("a Ray instance is already running in this process")
    temp = tempfile.mkdtemp(prefix="hlray-")  # short: Ray's socket paths live below it
    t0 = time.monotonic()
    ray.init(
        num_cpus=2,
        resources={RESOURCE: CALLS_PER_NODE},
        include_dashboard=False,
        log_to_driver=False,
        logging_level="warning",
        namespace=f"hydralab-test-{secrets.token_hex(4)}",
        object_store_memory=100 * 1024 * 1024,
        _temp_dir=temp,
    )
    TIMES["ray_init_s"] = time.monotonic() - t0
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        if TIMES:
            print("\nwall times:", {k: round(v, 1) for k, v in TIMES.items()})


def _kw(**extra: Any) -> dict[str, Any]:
    return dict(
        trials=2, concurrency=2, seed=0, progress=False, transcriber=None,
        script=short_script(), **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pair(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same small batch on the local executor and on the local Ray."""
    root = tmp_path_factory.mktemp("pair")
    t0 = time.monotonic()
    local = run_batch_sync(["HL-AIR-001"], out_dir=root / "local", batch_id="b", **_kw())
    TIMES["local_executor_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    on_ray = run_batch_sync(
        ["HL-AIR-001"], out_dir=root / "ray", batch_id="b", executor="ray", **_kw()
    )
    TIMES["ray_executor_s"] = time.monotonic() - t0
    return {"local": local, "ray": on_ray, "root": root}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _run(batch_dir: Path, trial: int) -> Path:
    return batch_dir / f"trial_{trial}" / "records" / "HL-AIR-001"


def _tool_calls(run_dir: Path) -> list[tuple[str, Any]]:
    """(name, arguments) of every tool call, then every output the bridge sent, from the
    run's wire log."""
    calls: list[tuple[str, Any]] = []
    outputs: list[tuple[str, Any]] = []
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        frame = json.loads(line).get("frame") or {}
        if frame.get("type") == "response.function_call_arguments.done":
            calls.append((frame["name"], json.loads(frame["arguments"])))
        item = frame.get("item") or {}
        if frame.get("type") == "conversation.item.create" and "output" in item:
            outputs.append(("output", json.loads(item["output"])))
    return calls + outputs


def _check_same_runs(a: Path, b: Path) -> None:
    """Two run directories of the same seeded conversation say the same."""
    ra, rb = _json(a / "run.json"), _json(b / "run.json")
    assert (ra["ended_reason"], ra["verdict"]) == (rb["ended_reason"], rb["verdict"])
    assert [(t["kind"], t["status"], t["text"], t["tools"]) for t in ra["turns"]] == [
        (t["kind"], t["status"], t["text"], t["tools"]) for t in rb["turns"]
    ]
    assert _tool_calls(a) == _tool_calls(b)
    sa, sb = _json(a / "scores.json"), _json(b / "scores.json")
    assert {k: sa.get(k) for k in SAME_SCORES} == {k: sb.get(k) for k in SAME_SCORES}
    assert sa["turns"]["tools_called"] == ["get_reservation"]
    for ta, tb in zip(ra["turns"], rb["turns"], strict=True):
        if ta["model_response_ms"] is None:
            assert tb["model_response_ms"] is None
            continue
        assert abs(ta["model_response_ms"] - tb["model_response_ms"]) <= TOLERANCE_MS, (ta, tb)
    # result.json's paths are the run directory's own (rewritten when shipped)
    assert _json(b / "result.json")["output_dir"] == str(b.resolve())


def _statuses(res: Any) -> list[tuple[str, str, bool]]:
    return sorted((c.key, c.status, c.infrastructure) for c in res.conversations)


# ---------------------------------------------------------------------- real conversations


@pytest.mark.e2e
@needs_speech
def test_ray_runs_what_the_local_executor_runs(pair: dict[str, Any]) -> None:
    local, on_ray = pair["local"], pair["ray"]
    assert local.ok and on_ray.ok, (local.summary(), on_ray.summary())
    assert _statuses(local) == _statuses(on_ray) == [("HL-AIR-001#1", "ok", False),
                                                     ("HL-AIR-001#2", "ok", False)]  # fmt: skip
    for trial in (1, 2):
        _check_same_runs(_run(local.batch_dir, trial), _run(on_ray.batch_dir, trial))
        assert not (_run(local.batch_dir, trial) / NODE_FILE).exists()  # local: unchanged
        node = _json(_run(on_ray.batch_dir, trial) / NODE_FILE)
        assert node["executor"] == "ray" and node["results"] == "shared"
        assert node["hostname"] == socket.gethostname()
        assert node["node_limit"] == {RESOURCE: CALLS_PER_NODE, "CPU": 2.0}
        assert 1 <= node["in_flight_start"] <= CALLS_PER_NODE
        assert 1 <= node["in_flight_end"] <= CALLS_PER_NODE
        assert len(node["loadavg_start"]) == 3 and node["cpu_count"] >= 1
    m = _json(on_ray.batch_dir / MANIFEST)
    assert m["config"]["executor"] == "ray"
    info = m["config"]["ray"]
    assert info["per_node_limit"] == f"resource {RESOURCE}: 1 per call"
    assert list(info["calls_per_node"].values()) == [CALLS_PER_NODE]
    assert info["started_by_hydralab"] is False and info["max_model_sessions"] is None
    assert _json(local.batch_dir / MANIFEST)["config"]["executor"] == "local"
    for c in m["conversations"]:
        assert c["node"] == socket.gethostname() and c["node_id"]
        assert c["overhead_max_ms"] is not None and c["overhead_max_ms"] <= 10.0
    # the marker the workers looked for is gone; the limiter actor was ended
    assert not list(on_ray.batch_dir.glob(".hydralab-ray-*"))
    with pytest.raises(ValueError):
        ray.get_actor(info["limiter"])
    if PANDAS:
        from hydralab.analysis import load_batch

        assert set(load_batch(on_ray.batch_dir).sessions["node"]) == {socket.gethostname()}
        assert set(load_batch(local.batch_dir).sessions["node"]) == {None}


@pytest.mark.e2e
@needs_speech
def test_a_resume_skips_finished_conversations_on_either_executor(pair: dict[str, Any]) -> None:
    for name in ("ray", "local"):  # a batch started locally may be resumed on Ray
        res = run_batch_sync(
            ["HL-AIR-001"], out_dir=pair["root"] / name, batch_id="b", executor="ray", **_kw()
        )
        assert res.skipped == 2 and res.ok
        assert [c.attempts for c in res.conversations] == [1, 1]


@pytest.mark.e2e
@needs_speech
def test_shipped_results_land_in_the_batch_directory(pair: dict[str, Any], tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = run_batch_sync(
        ["HL-AIR-001"], out_dir=tmp_path, batch_id="s", executor="ray", ship_results=True,
        **{**_kw(), "trials": 1},
    )  # fmt: skip
    TIMES["ray_shipped_1_s"] = time.monotonic() - t0
    assert res.ok, res.summary()
    run_dir = _run(res.batch_dir, 1)
    _check_same_runs(_run(pair["local"].batch_dir, 1), run_dir)
    assert _json(run_dir / NODE_FILE)["results"] == "shipped"
    assert (run_dir.parent.parent / "config.json").is_file()
    for name in ("result.json", "scores.json", "logs.log"):  # the worker's folder is gone
        assert "hydralab-ray-" not in (run_dir / name).read_text(encoding="utf-8")
    assert (run_dir / "audio_user_clean.wav").read_bytes() == (
        run_dir / "audio_user.wav"
    ).read_bytes()
    assert _json(res.batch_dir / MANIFEST)["config"]["ray"]["ship_results"] is True


def _refused(**extra: Any) -> dict[str, Any]:
    """Arguments of a Hydra call that fails at once: nothing listens on the port (no retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return dict(
        model="hydra", hydra_url=f"ws://127.0.0.1:{port}", script=short_script(),
        bridge_config=BridgeConfig(connect_backoff_s=()), progress=False, transcriber=None,
        **extra,
    )  # fmt: skip


@pytest.mark.e2e
def test_the_session_cap_and_the_call_rate_hold_across_the_cluster(
    local_ray: None, tmp_path: Path
) -> None:
    """max_model_sessions=1: the calls' spans (node.json) never overlap; max_calls_per_minute
    spaces their starts. Hydra calls that fail at once keep it quick (each still writes its run
    directory and node.json)."""
    res = run_batch_sync(
        ["HL-AIR-001"], trials=3, concurrency=3, out_dir=tmp_path, batch_id="cap",
        executor="ray", max_model_sessions=1, max_calls_per_minute=60,
        **_refused(api_key="sk-ray-test-" + secrets.token_hex(8)),
    )  # fmt: skip
    assert [c.status for c in res.conversations] == ["error"] * 3
    assert all(c.infrastructure for c in res.conversations)
    spans = sorted(
        (n["started_at"]["epoch_s"], n["ended_at"]["epoch_s"])
        for n in (_json(_run(res.batch_dir, k) / NODE_FILE) for k in (1, 2, 3))
    )
    for (s1, e1), (s2, _) in itertools.pairwise(spans):
        assert e1 <= s2 and s2 - s1 >= 0.9, spans  # 60 a minute: starts 1 s apart
    info = _json(res.batch_dir / MANIFEST)["config"]["ray"]
    assert info["max_model_sessions"] == 1 and info["peak_live_sessions"] == 1
    assert info["max_calls_per_minute"] == 60


@pytest.mark.e2e
def test_failures_are_recorded_as_locally(local_ray: None, tmp_path: Path) -> None:
    """A record that cannot load raises (error, with its message); a Hydra that refuses the
    connection never reached the model (error, infrastructure); the key stays out."""
    key = "sk-ray-test-" + secrets.token_hex(8)
    out = {}
    for executor in ("local", "ray"):
        res = run_batch_sync(
            ["HL-NO-SUCH-RECORD", "HL-AIR-001"], concurrency=2, out_dir=tmp_path,
            batch_id=executor, executor=executor, **_refused(api_key=key),
        )  # fmt: skip
        bad, refused = res.conversations
        assert bad.status == "error" and not bad.infrastructure and bad.run_dir is None
        assert bad.error is not None and "HL-NO-SUCH-RECORD" in bad.error
        assert refused.status == "error" and refused.infrastructure
        assert refused.ended_reason == "model_connect_failed" and refused.run_dir
        assert refused.error is not None and "cannot connect" in refused.error
        assert "api_key=***" in refused.error
        assert key not in (res.batch_dir / MANIFEST).read_text(encoding="utf-8")
        port_free = refused.error.split("127.0.0.1:")[0]  # the port differs between the runs
        out[executor] = (bad.error, port_free, _statuses(res))
    assert out["local"] == out["ray"]


@pytest.mark.e2e
@needs_speech
async def test_cancelling_a_ray_batch_cancels_its_tasks(local_ray: None, tmp_path: Path) -> None:
    task = asyncio.ensure_future(
        run_batch(["HL-AIR-001"], out_dir=tmp_path, batch_id="c", executor="ray", **_kw())
    )
    batch_dir = tmp_path / "c"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the calls are under way (their run directories)
        if len(list(batch_dir.glob("trial_*/records/*"))) == 2:
            break
        await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    convs = _json(batch_dir / MANIFEST)["conversations"]
    assert [(c["status"], c["error"]) for c in convs] == [("error", "cancelled")] * 2
    assert not list(batch_dir.glob(".hydralab-ray-*"))
    # the cluster is free again: a task that needs every call slot of the node runs
    probe = ray.remote(num_cpus=0, resources={RESOURCE: CALLS_PER_NODE})(lambda: "free")
    assert ray.get(probe.remote(), timeout=60) == "free"


# ------------------------------------------------------------------ without conversations


async def test_the_limiter_caps_sessions_and_spaces_starts() -> None:
    lim = _Limiter(max_sessions=2, per_minute=600)  # starts 0.1 s apart
    t0 = time.monotonic()
    starts: list[float] = []

    async def call(token: str, node: str) -> dict[str, Any]:
        gate = await lim.enter(token, node)
        starts.append(time.monotonic() - t0)
        await asyncio.sleep(0.3)
        return {**gate, "left": await lim.leave(token)}

    got = await asyncio.gather(*(call(f"t{i}", "n1" if i < 2 else "n2") for i in range(4)))
    assert lim.peak == 2 and lim.live == 0 and lim.in_flight == {"n1": 0, "n2": 0}
    assert all(b - a >= 0.099 for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False))
    assert max(g["cluster_live"] for g in got) == 2
    assert {g["left"]["node_in_flight"] for g in got} <= {1, 2}
    # a token given up on while it waited frees its slot when it comes
    lim2 = _Limiter(max_sessions=1, per_minute=None)
    await lim2.enter("a", "n")
    waiting = asyncio.ensure_future(lim2.enter("b", "n"))
    await asyncio.sleep(0.05)
    assert (await lim2.leave("b"))["node_in_flight"] is None  # not holding yet: abandoned
    await lim2.leave("a")
    assert (await waiting) == {"abandoned": True}
    assert lim2.live == 0 and lim2.holders == {}


def test_pack_rewrites_paths_and_unpack_refuses_escapes(tmp_path: Path) -> None:
    work, batch = tmp_path / "work", tmp_path / "batch"
    run_dir = work / "trial_1" / "records" / "R1"
    run_dir.mkdir(parents=True)
    (work / "trial_1" / "config.json").write_text("{}")
    (run_dir / "result.json").write_text(json.dumps({"output_dir": str(run_dir)}))
    (run_dir / "audio.wav").write_bytes(str(work).encode() + b"\x00binary")
    os.link(run_dir / "audio.wav", run_dir / "audio_clean.wav")  # as audio_user_clean.wav
    blob = pack(work, run_dir, batch)
    batch.mkdir()
    unpack(blob, batch)
    landed = batch / "trial_1" / "records" / "R1"
    assert _json(landed / "result.json") == {"output_dir": str(landed)}
    assert (landed / "audio.wav").read_bytes() == str(work).encode() + b"\x00binary"
    assert (landed / "audio_clean.wav").read_bytes() == (landed / "audio.wav").read_bytes()
    assert (batch / "trial_1" / "config.json").is_file()
    for name in ("../evil", "/abs/evil"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        with pytest.raises(ValueError, match="refused member"):
            unpack(buf.getvalue(), batch)


def test_settings_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="processes=False"):
        run_batch_sync(["A"], out_dir=tmp_path, executor="ray", processes=False)
    with pytest.raises(ValueError, match="unknown executor"):
        run_batch_sync(["A"], out_dir=tmp_path, executor="dask")
    with pytest.raises(ValueError, match="max_model_sessions applies to executor='ray'"):
        run_batch_sync(["A"], out_dir=tmp_path, max_model_sessions=2)
    with pytest.raises(ValueError, match="max_model_sessions must be"):
        RaySettings(max_model_sessions=0).check()
    with pytest.raises(ValueError, match="hydralab_call"):
        RaySettings(address="auto", calls_per_node=3).check()
    assert not list(tmp_path.iterdir())  # refused before a batch directory was made
    assert public_address("ray://me:pw@head:10001") == "ray://head:10001"
    assert public_address("auto") == "auto"


def test_import_hydralab_does_not_import_ray() -> None:
    code = "import sys, hydralab, hydralab.batch; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_ray_the_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'hydralab\[ray\]'"):
        run_batch_sync(["A"], out_dir=tmp_path, executor="ray", progress=False)


def test_cli_ray_options_reach_run_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def fake(records: Any, **kw: Any) -> Any:
        seen.append(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(batch_mod, "run_batch_sync", fake)
    base = ["batch", "A", "--out", str(tmp_path), "--no-progress"]
    assert main([*base, "--ray"]) == 1
    assert seen[-1]["executor"] == "ray" and "ray_address" not in seen[-1]
    opts = ["--max-model-sessions", "2", "--max-calls-per-minute", "30", "--ship-results"]
    assert main([*base, "--ray", "auto", *opts]) == 1
    assert seen[-1]["ray_address"] == "auto" and seen[-1]["max_model_sessions"] == 2
    assert seen[-1]["max_calls_per_minute"] == 30.0 and seen[-1]["ship_results"] is True
    assert main(base) == 1
    assert "executor" not in seen[-1]  # the local executor, as before


def test_a_sweep_file_may_name_the_executor(tmp_path: Path) -> None:
    from hydralab.batch import SweepError, load_sweep

    doc = "records: [HL-AIR-001]\nmodels: [{label: emu, model: emulator}]\ncallers: [{label: c}]\n"
    path = tmp_path / "sweep.yaml"
    path.write_text(doc + "executor: ray\nmax_model_sessions: 2\n")
    sweep = load_sweep(path)
    assert sweep.batch_kwargs["executor"] == "ray"
    assert sweep.batch_kwargs["max_model_sessions"] == 2
    path.write_text(doc + "max_model_sessions: 2\n")
    with pytest.raises(SweepError, match="executor: ray"):
        load_sweep(path)
    path.write_text(doc + "executor: dask\n")
    with pytest.raises(SweepError, match="executor"):
        load_sweep(path)
