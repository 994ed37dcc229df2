"""hydralab — study speech-to-speech voice agents (Smallest AI's Hydra first) in simulated calls.

Quick start (offline, in a notebook)::

    from hydralab import run_record
    result = await run_record()          # default record, local Hydra emulator
    print(result.summary())

The public names below are imported lazily (PEP 562): ``import hydralab`` loads no submodule, and
the first ``hydralab.X`` (or ``from hydralab import X``) imports the one submodule that defines
``X``. Submodules resolve as attributes too (``hydralab.analysis`` after ``import hydralab``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hydralab._lazy import lazy_attributes

if TYPE_CHECKING:  # the same names, eagerly, for type checkers (the runtime path is __getattr__)
    from hydralab.analysis import (
        RunTables,
        compare_batches,
        latency_table,
        load_batch,
        load_run,
        pass_at_k_table,
    )
    from hydralab.audio import (
        StreamResampler,
        Timeline,
        read_wav,
        ulaw_decode,
        ulaw_encode,
        write_wav,
    )
    from hydralab.audio.perturb import LinePerturbation
    from hydralab.batch import BatchResult, BatchSettingsError, run_batch, run_batch_sync
    from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
    from hydralab.caller import Caller, CallerConfig, CallerResult
    from hydralab.callers import (
        LlmCaller,
        LlmCallerConfig,
        Persona,
        RulesCaller,
        load_persona,
    )
    from hydralab.client import (
        DEFAULT_VOICES,
        VOICES,
        HydraAuthError,
        HydraClient,
        HydraConfig,
        HydraError,
        HydraServerFullError,
        HydraVoiceError,
    )
    from hydralab.clock import Clock, ManualClock
    from hydralab.emulator import (
        Emulator,
        EmulatorConfig,
        EmulatorDrift,
        EmulatorFaults,
        live_config,
    )
    from hydralab.listener import Listener
    from hydralab.playout import PlayoutPlacer
    from hydralab.policy import CallerPolicy, CallerPolicyError, Exchange, Heard, Reply
    from hydralab.protocol.budget import ConfigureTooLargeError, plan_configure
    from hydralab.records import (
        DEFAULT_RECORD_ID,
        Record,
        RecordError,
        RecordFormatError,
        RecordNotFoundError,
        list_records,
        load_record,
    )
    from hydralab.replay import ReplayServer, load_fixture
    from hydralab.runner import RunResult, latency_summary, run_record, run_record_sync
    from hydralab.scoring import db_hash, dbs_equal, score_run, task_completion
    from hydralab.script import Script, script_from_record
    from hydralab.secrets import Secret, redact
    from hydralab.sim import SimConfig, Simulation, simulate_record
    from hydralab.speech.stt import SttConfig, make_transcriber
    from hydralab.toolpolicy import ToolPolicy
    from hydralab.tools import (
        EvaTools,
        HydralabTools,
        IdChain,
        ToolBackend,
        ToolBackendError,
        ToolExecutor,
        choose_tools,
    )
    from hydralab.turns import TurnTracker

    __version__: str

# public name -> the submodule (relative to this package) it is imported from on first access
_LAZY: dict[str, str] = {
    "RunTables": "analysis",
    "compare_batches": "analysis",
    "latency_table": "analysis",
    "load_batch": "analysis",
    "load_run": "analysis",
    "pass_at_k_table": "analysis",
    "StreamResampler": "audio",
    "Timeline": "audio",
    "read_wav": "audio",
    "ulaw_decode": "audio",
    "ulaw_encode": "audio",
    "write_wav": "audio",
    "LinePerturbation": "audio.perturb",
    "BatchResult": "batch",
    "BatchSettingsError": "batch",
    "run_batch": "batch",
    "run_batch_sync": "batch",
    "Bridge": "bridge",
    "BridgeConfig": "bridge",
    "BridgeSession": "bridge",
    "Caller": "caller",
    "CallerConfig": "caller",
    "CallerResult": "caller",
    "LlmCaller": "callers",
    "LlmCallerConfig": "callers",
    "Persona": "callers",
    "RulesCaller": "callers",
    "load_persona": "callers",
    "DEFAULT_VOICES": "client",
    "HydraAuthError": "client",
    "HydraClient": "client",
    "HydraConfig": "client",
    "HydraError": "client",
    "HydraServerFullError": "client",
    "HydraVoiceError": "client",
    "VOICES": "client",
    "Clock": "clock",
    "ManualClock": "clock",
    "Emulator": "emulator",
    "EmulatorConfig": "emulator",
    "EmulatorDrift": "emulator",
    "EmulatorFaults": "emulator",
    "live_config": "emulator",
    "Listener": "listener",
    "PlayoutPlacer": "playout",
    "CallerPolicy": "policy",
    "CallerPolicyError": "policy",
    "Exchange": "policy",
    "Heard": "policy",
    "Reply": "policy",
    "ConfigureTooLargeError": "protocol.budget",
    "plan_configure": "protocol.budget",
    "DEFAULT_RECORD_ID": "records",
    "Record": "records",
    "RecordError": "records",
    "RecordFormatError": "records",
    "RecordNotFoundError": "records",
    "list_records": "records",
    "load_record": "records",
    "ReplayServer": "replay",
    "load_fixture": "replay",
    "RunResult": "runner",
    "latency_summary": "runner",
    "run_record": "runner",
    "run_record_sync": "runner",
    "db_hash": "scoring",
    "dbs_equal": "scoring",
    "score_run": "scoring",
    "task_completion": "scoring",
    "Script": "script",
    "script_from_record": "script",
    "Secret": "secrets",
    "redact": "secrets",
    "SimConfig": "sim",
    "Simulation": "sim",
    "simulate_record": "sim",
    "SttConfig": "speech.stt",
    "make_transcriber": "speech.stt",
    "ToolPolicy": "toolpolicy",
    "EvaTools": "tools",
    "HydralabTools": "tools",
    "IdChain": "tools",
    "ToolBackend": "tools",
    "ToolBackendError": "tools",
    "ToolExecutor": "tools",
    "choose_tools": "tools",
    "TurnTracker": "turns",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hydralab")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


_lazy_getattr = lazy_attributes(__name__, _LAZY, globals(), special={"__version__": _version})


if not TYPE_CHECKING:  # hidden from type checkers, so an unknown name stays an error for them
    __getattr__ = _lazy_getattr


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DEFAULT_RECORD_ID",
    "DEFAULT_VOICES",
    "VOICES",
    "BatchResult",
    "BatchSettingsError",
    "Bridge",
    "BridgeConfig",
    "BridgeSession",
    "Caller",
    "CallerConfig",
    "CallerPolicy",
    "CallerPolicyError",
    "CallerResult",
    "Clock",
    "ConfigureTooLargeError",
    "Emulator",
    "EmulatorConfig",
    "EmulatorDrift",
    "EmulatorFaults",
    "EvaTools",
    "Exchange",
    "Heard",
    "HydraAuthError",
    "HydraClient",
    "HydraConfig",
    "HydraError",
    "HydraServerFullError",
    "HydraVoiceError",
    "HydralabTools",
    "IdChain",
    "LinePerturbation",
    "Listener",
    "LlmCaller",
    "LlmCallerConfig",
    "ManualClock",
    "Persona",
    "PlayoutPlacer",
    "Record",
    "RecordError",
    "RecordFormatError",
    "RecordNotFoundError",
    "ReplayServer",
    "Reply",
    "RulesCaller",
    "RunResult",
    "RunTables",
    "Script",
    "Secret",
    "SimConfig",
    "Simulation",
    "StreamResampler",
    "SttConfig",
    "Timeline",
    "ToolBackend",
    "ToolBackendError",
    "ToolExecutor",
    "ToolPolicy",
    "TurnTracker",
    "__version__",
    "choose_tools",
    "compare_batches",
    "db_hash",
    "dbs_equal",
    "latency_summary",
    "latency_table",
    "list_records",
    "live_config",
    "load_batch",
    "load_fixture",
    "load_persona",
    "load_record",
    "load_run",
    "make_transcriber",
    "pass_at_k_table",
    "plan_configure",
    "read_wav",
    "redact",
    "run_batch",
    "run_batch_sync",
    "run_record",
    "run_record_sync",
    "score_run",
    "script_from_record",
    "simulate_record",
    "task_completion",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]
