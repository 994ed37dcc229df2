"""hydralab — study speech-to-speech voice agents (Smallest AI's Hydra first) in simulated calls.

Quick start (offline, in a notebook)::

    from hydralab import run_record
    result = await run_record()          # default record, local Hydra emulator
    print(result.summary())
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from hydralab.analysis import RunTables, load_batch, load_run
from hydralab.audio import StreamResampler, Timeline, read_wav, ulaw_decode, ulaw_encode, write_wav
from hydralab.batch import BatchResult, run_batch, run_batch_sync
from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
from hydralab.caller import Caller, CallerConfig, CallerResult
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
from hydralab.emulator import Emulator, EmulatorConfig, EmulatorFaults, live_config
from hydralab.playout import PlayoutPlacer
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
from hydralab.tools import ToolExecutor
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
    "Bridge",
    "BridgeConfig",
    "BridgeSession",
    "Caller",
    "CallerConfig",
    "CallerResult",
    "Clock",
    "ConfigureTooLargeError",
    "Emulator",
    "EmulatorConfig",
    "EmulatorFaults",
    "HydraAuthError",
    "HydraClient",
    "HydraConfig",
    "HydraError",
    "HydraServerFullError",
    "HydraVoiceError",
    "ManualClock",
    "PlayoutPlacer",
    "Record",
    "RecordError",
    "RecordFormatError",
    "RecordNotFoundError",
    "ReplayServer",
    "RunResult",
    "RunTables",
    "Script",
    "Secret",
    "SimConfig",
    "Simulation",
    "StreamResampler",
    "SttConfig",
    "Timeline",
    "ToolExecutor",
    "ToolPolicy",
    "TurnTracker",
    "__version__",
    "db_hash",
    "dbs_equal",
    "latency_summary",
    "list_records",
    "live_config",
    "load_batch",
    "load_fixture",
    "load_record",
    "load_run",
    "make_transcriber",
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
