"""hydralab — study speech-to-speech voice agents (Smallest AI's Hydra first) in simulated calls.

Quick start (offline, in a notebook)::

    from hydralab import run_record
    result = await run_record()          # default record, local Hydra emulator
    print(result.summary())
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from hydralab.analysis import (
    RunTables,
    compare_batches,
    latency_table,
    load_batch,
    load_run,
    pass_at_k_table,
)
from hydralab.audio import StreamResampler, Timeline, read_wav, ulaw_decode, ulaw_encode, write_wav
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
from hydralab.emulator import Emulator, EmulatorConfig, EmulatorDrift, EmulatorFaults, live_config
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

try:
    __version__ = version("hydralab")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

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
