"""Study run directories from a notebook: tables (pandas), plots (matplotlib), players.

The run directory is the only input, so a finished run or batch can be studied long after the
calls. pandas, matplotlib, IPython and librosa are imported lazily (extras ``notebooks`` and
``analysis``); importing this module costs nothing.

Tables (:func:`load_run`, :func:`load_batch` → :class:`RunTables`):

* ``turns`` — one row per turn of either speaker, in call order: ``speaker``, ``type``
  (assistant: greeting / plain / tool / barged_in; caller: plain / barge_in), ``text``,
  ``start_s`` / ``end_s`` on the call timeline (seconds from sample 0 of the WAVs), and the
  latency with its anchors: ``model_response_ms`` (Hydra's ``speech_stopped`` received → first
  audio delta received; EVA's metric) between ``speech_stopped_s`` and ``first_audio_s``;
  ``heard_ms``, **the** caller-side number to report beside it (the caller's speech end → the
  first audible answer at the caller, as the caller logged them: EVA's
  ``latency_assistant_turns``, whose mean is ``response_speed``; :data:`hydralab.runner.
  HEARD_DEFINITION`);
  ``v2v_ms`` (the caller's last audible sample → the first audible model sample, read off the
  audio by the bridge; ``None`` with ``v2v_reason``); ``caller_latency_ms`` (caller's speech end
  → first assistant frame played, from the logs: EVA's ``latency_assistant_turns``).
* ``tool_calls`` — one row per function call: tool, args, result status, arguments streaming
  time and execution time (arguments done → output sent).
* ``sessions`` — one row per conversation: outcome, scores, durations, token totals, latency
  summaries (``model_response_p*_ms`` beside ``heard_p*_ms``), the conditions it ran under
  (``model``, ``model_tag``, ``voice``, ``output_rate_hz``, ``stt``, ``hydralab_version``,
  ``hydralab_commit``, ``domain``, ``configure_mode``, ``standard_conditions``,
  ``tools_backend``, ``caller``, ``persona``, ``line_noise``, ``line_snr_db``,
  ``line_packet_loss``, and ``variant`` in a batch of variants; a compacted or
  ``session.update`` configure is not EVA's standard benchmark condition, and the table says so
  beside the scores), ``questions_asked``/``questions_answered_right``, and the turn-taking
  measures of :mod:`hydralab.measures` (``time_to_greeting_ms``, ``barge_ins``,
  ``mean_yield_ms``/``max_yield_ms``, ``mean_overlap_ms``).

Every plot takes ``ax=`` (a new figure when omitted) and returns the axes.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import json
import re
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from hydralab.audio import read_wav, resample, ulaw_decode, ulaw_encode
from hydralab.latency import latency_stats

if TYPE_CHECKING:
    import pandas as pd
    from IPython.display import HTML, Audio
    from matplotlib.axes import Axes

__all__ = [
    "ASSISTANT_TYPES",
    "TRACKS",
    "TYPE_COLORS",
    "RunTables",
    "compare_batches",
    "find_runs",
    "latency_table",
    "latest_run",
    "listen",
    "listen_turn",
    "load_audio",
    "load_batch",
    "load_run",
    "load_transcript",
    "pass_at_k_table",
    "plot_latency_box",
    "plot_latency_ecdf",
    "plot_latency_hist",
    "plot_spectrogram",
    "plot_timeline",
    "plot_tool_waterfall",
    "plot_turn_latency",
    "tool_waterfall",
    "turn_players",
]

PLAYER_RATE_HZ = 48_000
TRACKS = {
    "mixed": "audio_mixed.wav",
    "user": "audio_user.wav",
    "caller": "audio_user.wav",
    "assistant": "audio_assistant.wav",
    "model": "audio_assistant.wav",
    # the model's answer as the caller heard it: the phone line's 8 kHz μ-law band (made from
    # the model's full-band track; "model" is what the model sent)
    "heard": "audio_assistant.wav",
}
ASSISTANT_TYPES = ("greeting", "plain", "tool", "barged_in")
TYPE_COLORS = {
    "greeting": "#8c8c8c",
    "plain": "#1f77b4",
    "tool": "#ff7f0e",
    "barged_in": "#d62728",
    "barge_in": "#d62728",
    "user": "#2ca02c",
    "all": "#333333",
}
PERCENTILES = (50, 90, 95)
BARGE_IN_MIN_OVERLAP_S = 0.1  # a caller turn starting this far before the agent's end
# The tool-turn waterfall: (stage reached, segment label) in order, times from speech_stopped.
WATERFALL_STAGES = (
    ("first_args_delta", "model: speech_stopped → first args delta"),
    ("args_done", "model: arguments streamed"),
    ("tool_executed", "bridge: tool executed"),
    ("output_sent", "bridge: function_call_output sent"),
    ("response_create_sent", "bridge: debounce → response.create"),
    ("first_audio_after_tools", "model: response.create → first audio"),
)
WATERFALL_COLORS = ("#9ecae1", "#4292c6", "#fdae6b", "#e6550d", "#bdbdbd", "#31a354")
_TURN_COLS = [
    "conversation", "record_id", "trial", "model", "speaker", "turn", "type", "status",
    "interrupted", "text", "start_s", "end_s", "duration_s", "model_response_ms",
    "latency_reason", "speech_stopped_s", "first_audio_s", "v2v_ms", "v2v_reason",
    "caller_latency_ms", "heard_ms", "user_stop_s",
    "tools", "input_tokens", "output_tokens", "stages_ms",
]  # fmt: skip
_TOOL_COLS = [
    "conversation", "record_id", "trial", "model", "turn", "call_id", "tool", "args", "status",
    "error_type", "args_start_s", "args_done_s", "output_sent_s", "args_ms", "exec_ms",
]  # fmt: skip
_MARK = re.compile(r"turn_end:(\d+)$")
_ARGS_EVENTS = ("response.function_call_arguments.delta", "response.function_call_arguments.done")


# ---------------------------------------------------------------------------- locating runs
def _dir(run: Any) -> Path:
    """A run directory from a path, a ``RunResult`` (``run_dir``) or a one-run ``RunTables``."""
    if isinstance(run, RunTables):
        if len(run.run_dirs) != 1:
            raise ValueError(
                f"these tables hold {len(run.run_dirs)} conversations: pass one run directory "
                "(e.g. tables.run_dir(conversation))"
            )
        return run.run_dirs[0]
    d = Path(getattr(run, "run_dir", run))
    if (d / "run.json").is_file():
        return d
    found = find_runs(d)
    if len(found) == 1:
        return found[0]
    what = "no run.json" if not found else f"{len(found)} runs (use load_batch)"
    raise FileNotFoundError(f"{d}: not a run directory ({what} found below it)")


def find_runs(root: str | Path) -> list[Path]:
    """Every conversation directory (one holding ``run.json``) at or below ``root``, sorted."""
    r = Path(root)
    if (r / "run.json").is_file():
        return [r]
    return sorted(p.parent for p in r.rglob("run.json"))


def latest_run(root: str | Path) -> Path | None:
    """The most recently written conversation directory below ``root`` (``None`` if none)."""
    runs = find_runs(root) if Path(root).exists() else []
    return max(runs, key=lambda p: (p / "run.json").stat().st_mtime, default=None)


def _read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON lines, skipping a torn last line (a crashed run leaves valid partial files)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                out.append(obj)
    return out


# ---------------------------------------------------------------------------- the event log
@dataclass
class _Events:
    """What the analysis needs from ``events.jsonl``, times in s on the call timeline."""

    created: dict[str, float] = field(default_factory=dict)  # response_id → response.created
    first_delta: dict[str, float] = field(default_factory=dict)  # response_id → first audio
    marks: dict[int, float] = field(default_factory=dict)  # turn → turn-end mark sent
    barge_ins: dict[int, float] = field(default_factory=dict)  # turn → barge-in handled
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # call_id → call facts
    end_s: float | None = None

    @classmethod
    def read(cls, d: Path) -> _Events:
        ev = cls()
        for e in _read_jsonl(d / "events.jsonl"):
            t = e.get("rel_ms")
            f = e.get("frame")
            if not isinstance(t, int | float) or not isinstance(f, dict):
                continue
            s = float(t) / 1000.0
            ev.end_s = s if ev.end_s is None else max(ev.end_s, s)
            typ = f.get("type") or f.get("event")
            rid = f.get("response_id")
            if typ == "response.created":
                rid = (f.get("response") or {}).get("id")
                if rid:
                    ev.created.setdefault(rid, s)
            elif typ == "response.output_audio.delta" and rid:
                ev.first_delta.setdefault(rid, s)
            elif typ == "mark" and (m := _MARK.search(str(f.get("name", "")))):
                ev.marks.setdefault(int(m.group(1)), s)
            elif typ == "barge_in" and isinstance(f.get("turn"), int):
                ev.barge_ins.setdefault(f["turn"], s)
            elif typ in _ARGS_EVENTS:
                c = ev.calls.setdefault(str(f.get("call_id")), {"first_s": s})
                c.setdefault("name", f.get("name"))
                c.setdefault("response_id", rid)
                if typ.endswith(".done"):
                    c["done_s"] = s
                    c["arguments"] = f.get("arguments")
            elif typ == "conversation.item.create":
                item = f.get("item") or {}
                if item.get("type") == "function_call_output":
                    c = ev.calls.setdefault(str(item.get("call_id")), {})
                    c.setdefault("output_s", s)
                    c.setdefault("output", item.get("output"))
        return ev


# ---------------------------------------------------------------------------- tables
@dataclass
class RunTables:
    """The tables of one run or a batch (see the module docstring for the columns)."""

    turns: pd.DataFrame
    tool_calls: pd.DataFrame
    sessions: pd.DataFrame
    run_dirs: list[Path]
    root: Path

    @property
    def assistant(self) -> pd.DataFrame:
        """Assistant turns only."""
        return self.turns[self.turns["speaker"] == "assistant"]

    def run_dir(self, conversation: str | int) -> Path:
        """The directory of one conversation, by its id or its position."""
        if isinstance(conversation, int):
            return self.run_dirs[conversation]
        row = self.sessions[self.sessions["conversation"] == conversation]
        if row.empty:
            raise KeyError(f"no conversation {conversation!r}")
        return Path(row["run_dir"].iloc[0])

    def compare(
        self,
        other: RunTables | str | Path,
        *,
        metric: str = "model_response_ms",
        by: str | None = "type",
        labels: tuple[str, str] = ("a", "b"),
        level: float = 0.95,
        percentiles: Sequence[int] = (50, 90),
        n_boot: int = 2000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """These tables (side ``a``) beside ``other`` (side ``b``), with CIs of ``b - a``.

        See :func:`compare_batches`, which this calls as ``compare_batches(self, other, ...)``.
        """
        return compare_batches(
            self,
            other,
            metric=metric,
            by=by,
            labels=labels,
            level=level,
            percentiles=percentiles,
            n_boot=n_boot,
            seed=seed,
        )

    def __repr__(self) -> str:
        return (
            f"RunTables({len(self.sessions)} conversation(s), {len(self.turns)} turns, "
            f"{len(self.tool_calls)} tool calls, root={str(self.root)!r})"
        )


def _t0_epoch_ms(run: dict[str, Any], audit: list[dict[str, Any]]) -> float:
    t0 = (run.get("timeline") or {}).get("t0_epoch_ms")
    if t0 is None and audit:
        t0 = int(audit[0]["timestamp"])
    return float(t0 or 0)


def _wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (FileNotFoundError, wave.Error, EOFError):
        return None


def _conversation_tables(
    d: Path, meta: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Rows of the three tables for one conversation directory."""
    run = _read_json(d / "run.json", {})
    audit = (_read_json(d / "audit_log.json", {}) or {}).get("transcript", [])
    t0 = _t0_epoch_ms(run, audit)
    ev = _Events.read(d)
    call_end_s = _wav_seconds(d / TRACKS["assistant"]) or ev.end_s

    def tl(epoch_ms: Any) -> float:
        return (float(epoch_ms) - t0) / 1000.0 if epoch_ms is not None else np.nan

    users = [
        {"start_s": tl(u.get("start_epoch_ms")), "end_s": tl(u.get("stop_epoch_ms")), **u}
        for u in run.get("user_utterances", [])
    ]
    a_turns = run.get("turns", [])
    starts = [tl(t.get("first_played_epoch_ms")) for t in a_turns]
    rows: list[dict[str, Any]] = []
    for i, t in enumerate(a_turns):
        idx = int(t.get("index", i))
        start = starts[i]
        end = ev.marks.get(idx, ev.barge_ins.get(idx, np.nan))
        if np.isnan(end):  # no mark (crash, old run): up to the next thing that happened
            later = [s for s in [*starts[i + 1 :], *(u["start_s"] for u in users)] if s > start]
            end = min(later, default=call_end_s if call_end_s is not None else np.nan)
        rids = t.get("response_ids") or []
        deltas = [ev.first_delta[r] for r in rids if r in ev.first_delta]
        first_audio = min(deltas) if deltas else np.nan
        mr = t.get("model_response_ms")
        anchor = first_audio - mr / 1000.0 if mr is not None and deltas else np.nan
        before = [u for u in users if u["end_s"] == u["end_s"] and u["end_s"] <= start]
        user_stop = max((u["end_s"] for u in before), default=np.nan)
        if t.get("kind") == "greeting":
            user_stop = np.nan
        usage = t.get("usage") or {}
        rows.append(
            {
                "speaker": "assistant",
                "turn": idx,
                "type": "barged_in" if t.get("interrupted") else t.get("kind"),
                "status": t.get("status"),
                "interrupted": bool(t.get("interrupted")),
                "text": t.get("text"),
                "start_s": start,
                "end_s": end,
                "model_response_ms": mr,
                "latency_reason": t.get("latency_reason"),
                "speech_stopped_s": anchor,
                "first_audio_s": first_audio,
                "v2v_ms": t.get("v2v_ms"),
                "v2v_reason": t.get("v2v_reason"),
                "caller_latency_ms": (start - user_stop) * 1000.0,
                # the caller-side headline (runner.HEARD_DEFINITION), as the run measured it
                "heard_ms": t.get("heard_ms", (start - user_stop) * 1000.0),
                "user_stop_s": user_stop,
                "tools": list(t.get("tools") or []),
                "input_tokens": usage.get("input_tokens"),
                "output_tokens": usage.get("output_tokens"),
                "stages_ms": dict(t.get("stages_ms") or {}),
            }
        )
    spans = [(r["start_s"], r["end_s"]) for r in rows]
    for u in users:
        # a barge-in overlaps the agent's audio; a reply starts at its end (± a few ms of logging)
        over = any(s <= u["start_s"] < e - BARGE_IN_MIN_OVERLAP_S for s, e in spans)
        rows.append(
            {
                "speaker": "user",
                "turn": int(u.get("index", 0)),
                "type": "barge_in" if over else "plain",
                "status": "transcribed" if u.get("ok") else "untranscribed",
                "interrupted": False,
                "text": u.get("text"),
                "start_s": u["start_s"],
                "end_s": u["end_s"],
                "tools": [],
                "stages_ms": {},
            }
        )
    rows.sort(key=lambda r: np.inf if np.isnan(r["start_s"]) else r["start_s"])

    resp_turn = {
        rid: int(t.get("index", i))
        for i, t in enumerate(a_turns)
        for rid in t.get("response_ids") or []
    }
    calls: list[dict[str, Any]] = []
    if ev.calls:
        for cid, c in sorted(ev.calls.items(), key=lambda kv: kv[1].get("first_s", np.inf)):
            try:
                args = json.loads(c.get("arguments") or "{}")
            except json.JSONDecodeError:
                args = c.get("arguments")
            try:
                out = json.loads(c.get("output") or "null")
            except json.JSONDecodeError:
                out = None
            out = out if isinstance(out, dict) else {}
            first, done, sent = (c.get(k, np.nan) for k in ("first_s", "done_s", "output_s"))
            calls.append(
                {
                    "turn": resp_turn.get(c.get("response_id") or ""),
                    "call_id": cid,
                    "tool": c.get("name"),
                    "args": args,
                    "status": out.get("status"),
                    "error_type": out.get("error_type"),
                    "args_start_s": first,
                    "args_done_s": done,
                    "output_sent_s": sent,
                    "args_ms": (done - first) * 1000.0,
                    "exec_ms": (sent - done) * 1000.0,
                }
            )
    else:  # no event log (e.g. a foreign EVA run): pair the audit log's calls and responses
        open_calls: list[dict[str, Any]] = []
        for e in audit:
            v, s = e.get("value") or {}, tl(e.get("timestamp"))
            if e.get("message_type") == "tool_call":
                open_calls.append({"tool": v.get("tool"), "args": v.get("parameters"), "s": s})
            elif e.get("message_type") == "tool_response":
                match = [c for c in open_calls if c["tool"] == v.get("tool")]
                if not match:
                    continue
                c = match[0]
                open_calls.remove(c)
                r = v.get("response") or {}
                calls.append(
                    {
                        "tool": c["tool"],
                        "args": c["args"],
                        "status": r.get("status"),
                        "error_type": r.get("error_type"),
                        "args_done_s": c["s"],
                        "output_sent_s": s,
                        "exec_ms": (s - c["s"]) * 1000.0,
                    }
                )

    scores = _read_json(d / "scores.json", {}) or {}
    result = _read_json(d / "result.json", {}) or {}
    mr_vals = [t["model_response_ms"] for t in a_turns if t.get("model_response_ms") is not None]
    mr_st = latency_stats(mr_vals)
    heard_st = latency_stats(
        [t["heard_ms"] for t in a_turns if t.get("heard_ms") is not None and t["heard_ms"] > 0]
    )
    usage_tot: dict[str, int] = {}
    for t in a_turns:
        for k, v in (t.get("usage") or {}).items():
            if isinstance(v, int | float):
                usage_tot[k] = usage_tot.get(k, 0) + int(v)
    session = {
        "record_id": run.get("record_id", result.get("record_id")),
        "model": run.get("model"),
        "ended_reason": run.get("ended_reason", result.get("conversation_ended_reason")),
        "error": run.get("error", result.get("error")),
        "completed": result.get("completed"),
        **_run_labels(run),
        **{k: v for k, v in scores.items() if isinstance(v, bool | int | float) or v is None},
        "call_s": call_end_s,
        "wall_s": result.get("duration_seconds"),
        "n_user_turns": len(users),
        "n_assistant_turns": len(a_turns),
        "n_barge_ins": sum(bool(t.get("interrupted")) for t in a_turns),
        "n_tool_calls": len(calls),
        "input_tokens": usage_tot.get("input_tokens", 0),
        "output_tokens": usage_tot.get("output_tokens", 0),
        "total_tokens": usage_tot.get("total_tokens", 0),
        "model_response_n": len(mr_vals),
        **{f"model_response_p{p}_ms": mr_st.get(f"p{p}_ms", np.nan) for p in PERCENTILES},
        "model_response_max_ms": mr_st.get("max_ms", np.nan),
        **{f"heard_p{p}_ms": heard_st.get(f"p{p}_ms", np.nan) for p in PERCENTILES},
        **_turn_taking_columns(d),
        "run_dir": str(d),
        # executor "ray": the host the call ran on (its node.json; None for local runs)
        "node": (_read_json(d / "node.json", {}) or {}).get("hostname"),
    }
    ids = {k: meta.get(k) for k in ("conversation", "trial", "variant")}
    ids.update(record_id=session["record_id"], model=session["model"])
    return (
        [{**ids, **r} for r in rows],
        [{**ids, **c} for c in calls],
        {k: ids[k] for k in ("conversation", "trial", "variant")} | session,
    )


def _turn_taking_columns(d: Path) -> dict[str, Any]:
    """Time to the greeting and the barge-in measures of one conversation
    (:func:`hydralab.measures.conversation_measures`; ``None`` where the files do not say)."""
    from hydralab.measures import MeasureError, conversation_measures

    try:
        m = conversation_measures(d)
    except MeasureError:
        m = {}
    return {
        "time_to_greeting_ms": m.get("time_to_greeting_ms"),
        "barge_ins": m.get("barge_ins"),
        "mean_yield_ms": m.get("mean_yield_ms"),
        "max_yield_ms": m.get("max_yield_ms"),
        "mean_overlap_ms": m.get("mean_overlap_ms"),
    }


def _run_labels(run: dict[str, Any]) -> dict[str, Any]:
    """The conditions a conversation ran under, as table columns: its domain, how the
    ``session.configure`` was fitted (``configure_mode``; ``standard_conditions`` False for
    compacted tools, cut instructions or tools sent later by ``session.update``) and which tool
    code executed the calls (``tools_backend``: EVA's own or hydralab's)."""
    budget = run.get("configure_budget") or {}
    tools = run.get("tools") or {}
    caller = run.get("caller_policy") or {}
    line = caller.get("line") or {}
    questions = run.get("questions") or {}
    hydra = run.get("hydra") or {}
    versions = run.get("versions") or {}
    return {
        "domain": run.get("domain"),
        "model_tag": hydra.get("model"),
        "voice": hydra.get("voice_echoed") or hydra.get("voice_requested"),
        "output_rate_hz": hydra.get("output_rate_hz"),
        "stt": (run.get("stt") or {}).get("provider"),
        "hydralab_version": versions.get("hydralab"),
        "hydralab_commit": versions.get("hydralab_commit"),
        "configure_mode": budget.get("mode"),
        "standard_conditions": budget.get("standard"),
        "tools_backend": tools.get("backend"),
        "caller": caller.get("policy", "scripted"),
        "persona": (caller.get("persona") or {}).get("name"),
        "line_noise": line.get("noise"),
        "line_snr_db": line.get("snr_db") if line.get("noise") not in (None, "none") else None,
        "line_packet_loss": line.get("packet_loss"),
        "questions_asked": questions.get("asked"),
        "questions_answered_right": questions.get("answered_right"),
    }


def _frame(rows: list[dict[str, Any]], cols: list[str]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df.columns:
            df[c] = pd.Series([None] * len(df), dtype=object)
    return df[cols + [c for c in df.columns if c not in cols]]


def _tables(dirs: Sequence[Path], metas: Sequence[dict[str, Any]], root: Path) -> RunTables:
    import pandas as pd

    turns: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    for d, meta in zip(dirs, metas, strict=True):
        t, c, s = _conversation_tables(d, meta)
        turns += t
        calls += c
        sessions.append(s)
    tdf = _frame(turns, _TURN_COLS)
    tdf["duration_s"] = tdf["end_s"] - tdf["start_s"]
    for col in (
        "model_response_ms",
        "v2v_ms",
        "caller_latency_ms",
        "input_tokens",
        "output_tokens",
    ):
        tdf[col] = pd.to_numeric(tdf[col], errors="coerce")
    sdf = pd.DataFrame(sessions)
    for df in (tdf, sdf):
        df["trial"] = pd.array(df["trial"], dtype="Int64")
    cdf = _frame(calls, _TOOL_COLS)
    cdf["trial"] = pd.array(cdf["trial"], dtype="Int64")
    return RunTables(turns=tdf, tool_calls=cdf, sessions=sdf, run_dirs=list(dirs), root=root)


def load_run(run: Any) -> RunTables:
    """The tables of one conversation (a run directory, its parent, or a ``RunResult``)."""
    d = _dir(run)
    return _tables([d], [{"conversation": d.name, "trial": None}], d)


def load_batch(path: str | Path) -> RunTables:
    """The tables of every conversation below ``path`` (a batch directory or any folder).

    Conversations are found by their ``run.json``, at any depth. When ``path`` holds a batch
    manifest (``batch.json``, see :func:`hydralab.batch.run_batch`), each row gets its trial
    and variant, and calls the manifest marks ``infrastructure`` (they never reached the model)
    are left out: they say nothing about the model.
    """
    root = Path(path)
    dirs = find_runs(root)
    if not dirs:
        raise FileNotFoundError(f"{root}: no run directories (run.json) found")
    manifest = _read_json(root / "batch.json", {}) or {}
    known = {
        (root / c["run_dir"]).resolve(): (c.get("trial"), c.get("variant"))
        for c in manifest.get("conversations", [])
        if c.get("run_dir")
    }
    # calls that never reached the model (DNS, refused, 401, server_full exhausted) are
    # infrastructure errors, not the model's failures: kept out of the scores and latencies
    never = {
        (root / c["run_dir"]).resolve()
        for c in manifest.get("conversations", [])
        if c.get("run_dir") and c.get("infrastructure")
    }
    dirs = [d for d in dirs if d.resolve() not in never]
    if not dirs:
        raise FileNotFoundError(
            f"{root}: no conversation reached the model ({len(never)} never did)"
        )
    metas = []
    for d in dirs:
        trial, variant = known.get(d.resolve(), (None, None))
        if trial is None and (m := re.search(r"trial_(\d+)", d.relative_to(root).as_posix())):
            trial = int(m.group(1))
        conv = d.relative_to(root).as_posix() if d != root else d.name
        metas.append({"conversation": conv, "trial": trial, "variant": variant})
    return _tables(dirs, metas, root)


def _turn_frame(data: Any) -> pd.DataFrame:
    """A turns DataFrame from tables, a turns DataFrame, a path or a ``RunResult``."""
    import pandas as pd

    if isinstance(data, RunTables):
        return data.turns
    if isinstance(data, pd.DataFrame):
        return data
    p = Path(getattr(data, "run_dir", data))
    return (load_run(p) if (p / "run.json").is_file() else load_batch(p)).turns


def latency_table(
    data: Any,
    *,
    metric: str = "model_response_ms",
    by: str | None = "type",
    ci: bool = False,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """n, p50, p90, p95, max and mean of ``metric`` (ms) per ``by`` group plus an ``all`` row.

    Greeting turns have no anchor and so no ``model_response``; groups without values are left
    out. Percentiles are numpy's linear ones (as in ``run.json``).

    Args:
        data: Tables, a turns DataFrame, a run or batch directory, or a ``RunResult``.
        metric: The latency column (``model_response_ms``, ``v2v_ms``, ``caller_latency_ms``).
        by: The grouping column (``None``: the ``all`` row only).
        ci: Also give each percentile's percentile-bootstrap CI, in columns ``p50_lo``,
            ``p50_hi``, ``p90_lo`` … beside ``p50_ms`` … (NaN for a group of one turn); see
            :func:`hydralab.stats.percentile_ci`. Without it the table is unchanged.
        level: Coverage of the CIs.
        n_boot: Bootstrap resamples per group.
        seed: Seed of the resampling (each group uses it: the table is deterministic).
    """
    import pandas as pd

    from hydralab.stats import summarize

    df = _turn_frame(data)
    df = df[df["speaker"] == "assistant"].dropna(subset=[metric])
    groups: list[tuple[str, Any]] = []
    if by is not None:
        order = _group_order(df[by].dropna().unique())
        groups = [(str(g), df.loc[df[by] == g, metric]) for g in order]
    groups.append(("all", df[metric]))
    rows = []
    for name, v in groups:
        st = latency_stats(np.asarray(v, dtype=float))
        if not st["n"]:
            continue
        row: dict[str, Any] = {
            by or "group": name,
            "n": st["n"],
            **{f"p{p}_ms": st[f"p{p}_ms"] for p in PERCENTILES},
            "max_ms": st["max_ms"],
            "mean_ms": st["mean_ms"],
        }
        if ci:
            sm = summarize(
                np.asarray(v, dtype=float),
                percentiles=PERCENTILES,
                level=level,
                n_boot=n_boot,
                seed=seed,
            )
            row = {
                **{k: row[k] for k in (by or "group", "n")},
                **{
                    k: row.get(k, sm.get(k))
                    for p in PERCENTILES
                    for k in (f"p{p}_ms", f"p{p}_lo", f"p{p}_hi")
                },
                "max_ms": row["max_ms"],
                "mean_ms": row["mean_ms"],
            }
        rows.append(row)
    return pd.DataFrame(rows).set_index(by or "group") if rows else pd.DataFrame()


def _present(x: Any) -> bool:
    """Not None, NaN or pandas' NA."""
    import pandas as pd

    return not bool(pd.isna(x))


def _group_order(values: Iterable[Any]) -> list[Any]:
    vals = list(values)
    known = [t for t in ASSISTANT_TYPES if t in vals]
    return known + sorted((v for v in vals if v not in ASSISTANT_TYPES), key=str)


def tool_waterfall(data: Any) -> pd.DataFrame:
    """One row per tool turn: each waterfall stage's duration (ms) and the total.

    Stages run from Hydra's ``speech_stopped`` through the function-call arguments, the tool,
    the output, the debounced ``response.create`` to the first audio after the tools; a stage
    the turn never reached is NaN. ``first_audio_ms`` is the turn's ``model_response`` (which can
    be a filler phrase spoken before the tool call).
    """
    import pandas as pd

    df = _turn_frame(data)
    df = df[(df["speaker"] == "assistant") & df["stages_ms"].map(bool)]
    rows = []
    for _, r in df.iterrows():
        st, prev = r["stages_ms"], 0.0
        row: dict[str, Any] = {
            "conversation": r["conversation"],
            "record_id": r["record_id"],
            "trial": r["trial"],
            "turn": r["turn"],
            "type": r["type"],
        }
        for key, label in WATERFALL_STAGES:
            v = st.get(key)
            row[label] = np.nan if v is None else max(0.0, float(v) - prev)
            prev = float(v) if v is not None else prev
        row["total_ms"] = prev
        row["first_audio_ms"] = r["model_response_ms"]
        rows.append(row)
    cols = ["conversation", "record_id", "trial", "turn", "type"]
    cols += [lbl for _, lbl in WATERFALL_STAGES] + ["total_ms", "first_audio_ms"]
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------------- audio
def load_audio(run: Any, track: str = "mixed") -> tuple[npt.NDArray[np.int16], int]:
    """One track as ``(int16 samples, sample_rate_hz)``.

    Any sample rate is read as stored (hydralab writes 48 kHz; the test fixture is smaller). A
    missing ``audio_mixed.wav`` is made from the two sides. ``"model"`` is the model's
    full-band output as it sent it; ``"heard"`` the same answer as the caller heard it over
    the phone line: resampled to 8 kHz and through G.711 μ-law (its band ends at 4 kHz).
    """
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}: choose one of {sorted(TRACKS)}")
    d = _dir(run)
    path = d / TRACKS[track]
    if track == "heard":
        pcm, rate = read_wav(path)
        narrow = resample(pcm, in_rate_hz=rate, out_rate_hz=8000) if rate != 8000 else pcm
        return ulaw_decode(ulaw_encode(narrow)), 8000
    if path.is_file() or track != "mixed":
        return read_wav(path)
    (u, ur), (a, ar) = read_wav(d / TRACKS["user"]), read_wav(d / TRACKS["assistant"])
    rate = max(ur, ar)
    u = resample(u, in_rate_hz=ur, out_rate_hz=rate) if ur != rate else u
    a = resample(a, in_rate_hz=ar, out_rate_hz=rate) if ar != rate else a
    n = max(u.size, a.size)
    mix = np.zeros(n, dtype=np.int32)
    mix[: u.size] += u
    mix[: a.size] += a
    return np.clip(mix, -32768, 32767).astype(np.int16), rate


def _clip(
    pcm: npt.NDArray[np.int16], rate: int, start_s: float | None, end_s: float | None
) -> tuple[npt.NDArray[np.int16], float]:
    i0 = max(0, round((start_s or 0.0) * rate))
    i1 = pcm.size if end_s is None else max(i0, min(pcm.size, round(end_s * rate)))
    return pcm[i0:i1], i0 / rate


def _player(pcm: npt.NDArray[np.int16], rate: int) -> Audio:
    from IPython.display import Audio

    if pcm.size == 0:  # a call that recorded nothing (it failed before any audio): a silent player
        pcm, rate = np.zeros(PLAYER_RATE_HZ // 50, dtype=np.int16), PLAYER_RATE_HZ
    if rate != PLAYER_RATE_HZ:
        pcm = resample(pcm, in_rate_hz=rate, out_rate_hz=PLAYER_RATE_HZ)
    return Audio(  # type: ignore[no-untyped-call]
        pcm.astype("float32") / 32768.0, rate=PLAYER_RATE_HZ, normalize=False
    )


def listen(
    run: Any, track: str = "mixed", *, start_s: float | None = None, end_s: float | None = None
) -> Audio:
    """An inline player: ``mixed``, ``user``/``caller``, ``assistant``/``model`` (as sent) or
    ``heard`` (the answer as the caller heard it: 8 kHz μ-law).

    ``start_s``/``end_s`` cut a stretch of the call timeline.
    """
    pcm, rate = load_audio(run, track)
    return _player(_clip(pcm, rate, start_s, end_s)[0], rate)


def _turn_row(run: Any, turn: int, speaker: str) -> Any:
    turns = load_run(run).turns
    sel = turns[(turns["speaker"] == speaker) & (turns["turn"] == turn)]
    if sel.empty:
        raise KeyError(f"no {speaker} turn {turn}")
    return sel.iloc[0]


def listen_turn(
    run: Any,
    turn: int,
    *,
    speaker: str = "assistant",
    track: str = "mixed",
    pad_s: float = 0.25,
) -> Audio:
    """A 48 kHz player for one turn (``pad_s`` of context either side), by default both sides."""
    r = _turn_row(run, turn, speaker)
    end = r["end_s"] if r["end_s"] == r["end_s"] else r["start_s"] + 5.0
    return listen(run, track, start_s=max(0.0, r["start_s"] - pad_s), end_s=end + pad_s)


def turn_players(
    run: Any,
    *,
    speaker: str | None = None,
    types: Sequence[str] | None = None,
    track: str = "mixed",
    pad_s: float = 0.25,
) -> HTML:
    """A table of the call's turns, each with its own 48 kHz player.

    Args:
        speaker: ``"assistant"`` or ``"user"`` only; both when ``None``.
        types: Only these turn types (e.g. ``["barged_in", "barge_in"]``).
        track: What each player plays (``mixed`` hears both sides, barge-ins included).
    """
    from IPython.display import HTML

    d = _dir(run)
    turns = load_run(d).turns
    if speaker is not None:
        turns = turns[turns["speaker"] == speaker]
    if types is not None:
        turns = turns[turns["type"].isin(list(types))]
    pcm, rate = load_audio(d, track)
    rows = []
    for _, r in turns.iterrows():
        end = r["end_s"] if r["end_s"] == r["end_s"] else r["start_s"] + 5.0
        clip, _ = _clip(pcm, rate, max(0.0, r["start_s"] - pad_s), end + pad_s)
        lat = r["model_response_ms"]
        lat_txt = f"{lat:.0f} ms" if lat == lat and lat is not None else ""
        color = TYPE_COLORS.get(str(r["type"]), "#333")
        rows.append(
            "<tr>"
            f"<td>{html.escape(str(r['speaker']))} {int(r['turn'])}</td>"
            f"<td style='color:{color}'>{html.escape(str(r['type']))}</td>"
            f"<td>{r['start_s']:.2f}–{end:.2f} s</td><td>{lat_txt}</td>"
            f"<td style='text-align:left'>{html.escape(str(r['text'] or ''))}</td>"
            f"<td>{_player(clip, rate)._repr_html_()}</td></tr>"  # type: ignore[no-untyped-call]
        )
    head = (
        "<tr><th>turn</th><th>type</th><th>on the timeline</th><th>model_response</th>"
        "<th>text</th><th>listen</th></tr>"
    )
    return HTML(f"<table>{head}{''.join(rows)}</table>")  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------------- plots
def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=figsize, layout="constrained")
    return new


def _assistant_values(data: Any, metric: str, by: str) -> list[tuple[str, npt.NDArray[Any]]]:
    df = _turn_frame(data)
    df = df[df["speaker"] == "assistant"].dropna(subset=[metric])
    return [
        (str(g), np.sort(df.loc[df[by] == g, metric].to_numpy(dtype=float)))
        for g in _group_order(df[by].dropna().unique())
    ]


def _metric_label(metric: str) -> str:
    return {
        "model_response_ms": "model_response (ms): speech_stopped → first audio delta",
        "v2v_ms": "v2v (ms): caller's last audible sample → first audible model sample",
        "caller_latency_ms": "caller latency (ms): caller's speech end → first frame played",
        "heard_ms": "heard (ms): caller's speech end → first audible answer at the caller",
    }.get(metric, metric)


def plot_latency_ecdf(
    data: Any,
    *,
    metric: str = "model_response_ms",
    by: str = "type",
    heard: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """ECDF of a latency per group (turn type by default), with p50/p90/p95 marked on each.

    With ``model_response_ms`` (the default) and ``heard``, the ECDF of what the caller heard
    (``heard_ms``, all turns) is drawn beside it, dashed: the two headline numbers together.
    """
    ax = _axes(ax, (8, 4.2))
    markers = dict(zip(PERCENTILES, ("o", "s", "^"), strict=True))
    xlabel = _metric_label(metric)
    if heard and metric == "model_response_ms":
        h = _turn_frame(data)
        vals = h.loc[h["speaker"] == "assistant", "heard_ms"].dropna().to_numpy(dtype=float)
        vals = np.sort(vals[vals > 0])
        if vals.size:
            p50 = float(np.percentile(vals, 50))
            ax.step(
                np.r_[vals[0], vals],
                np.r_[0.0, np.arange(1, vals.size + 1) / vals.size],
                where="post",
                color="#555",
                ls="--",
                label=f"heard by the caller, all (n={vals.size}): p50 {p50:.0f}",
            )
            xlabel += "\nheard (dashed): caller's speech end → first audible answer at the caller"
    for name, v in _assistant_values(data, metric, by):
        color = TYPE_COLORS.get(name)
        y = np.arange(1, v.size + 1) / v.size
        pct = {p: float(np.percentile(v, p)) for p in PERCENTILES}
        label = f"{name} (n={v.size}): " + " · ".join(f"p{p} {x:.0f}" for p, x in pct.items())
        (line,) = ax.step(np.r_[v[0], v], np.r_[0.0, y], where="post", color=color, label=label)
        for p, x in pct.items():
            ax.plot(x, p / 100.0, markers[p], color=line.get_color(), ms=6, mec="white", zorder=3)
    for p, m in markers.items():
        ax.plot([], [], m, color="#555", label=f"p{p}", ls="none")
    for q in (0.5, 0.9, 0.95):
        ax.axhline(q, color="#bbb", lw=0.6, ls=":", zorder=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of turns ≤ x")
    ax.set_title(f"Latency ECDF by {by}")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return ax


def plot_latency_hist(
    data: Any,
    *,
    metric: str = "model_response_ms",
    by: str = "type",
    bins: int | Sequence[float] = 20,
    ax: Axes | None = None,
) -> Axes:
    """Overlaid histograms of a latency per group; p50 (solid), p90 (dashed), p95 (dotted)."""
    ax = _axes(ax, (8, 4.2))
    groups = _assistant_values(data, metric, by)
    allv = np.concatenate([v for _, v in groups]) if groups else np.zeros(0)
    edges: Any = np.histogram_bin_edges(allv, bins=bins) if allv.size else bins
    styles = dict(zip(PERCENTILES, ("-", "--", ":"), strict=True))
    for name, v in groups:
        color = TYPE_COLORS.get(name)
        ax.hist(v, bins=edges, histtype="stepfilled", alpha=0.3, color=color)
        ax.hist(v, bins=edges, histtype="step", lw=1.5, color=color, label=f"{name} (n={v.size})")
        for p, ls in styles.items():
            ax.axvline(float(np.percentile(v, p)), color=color, ls=ls, lw=1.2)
    for p, ls in styles.items():
        ax.plot([], [], ls=ls, color="#555", label=f"p{p}")
    ax.set_xlabel(_metric_label(metric))
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("turns")
    ax.set_title(f"Latency histogram by {by}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_latency_box(
    data: Any,
    *,
    metric: str = "model_response_ms",
    by: str = "record_id",
    hue: str = "type",
    ax: Axes | None = None,
) -> Axes:
    """A box per ``by`` group (record, model, trial …); every turn a dot coloured by ``hue``."""
    ax = _axes(ax, (8, 4.2))
    df = _turn_frame(data)
    df = df[df["speaker"] == "assistant"].dropna(subset=[metric])
    groups = _group_order(df[by].dropna().unique())
    vals = [df.loc[df[by] == g, metric].to_numpy(dtype=float) for g in groups]
    ax.boxplot(
        vals,
        positions=range(len(groups)),
        widths=0.55,
        showfliers=False,
        medianprops={"color": "black"},
        boxprops={"color": "#555"},
        whiskerprops={"color": "#555"},
        capprops={"color": "#555"},
    )
    rng = np.random.default_rng(0)
    for h in _group_order(df[hue].dropna().unique()):
        sub = df[df[hue] == h]
        x = np.array([groups.index(g) for g in sub[by]], dtype=float)
        x += rng.uniform(-0.18, 0.18, x.size)
        ax.scatter(
            x, sub[metric], s=22, alpha=0.8, color=TYPE_COLORS.get(str(h)), label=str(h),
            edgecolors="white", linewidths=0.5, zorder=3,
        )  # fmt: skip
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    ax.set_xlabel(by)
    ax.set_ylabel(_metric_label(metric).split(":")[0])
    ax.set_title(f"{metric} per {by} (dots: turns, by {hue})")
    ax.legend(fontsize=8, title=hue, title_fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_tool_waterfall(data: Any, *, ax: Axes | None = None, max_turns: int | None = 30) -> Axes:
    """Tool turns as stacked bars, one stage per segment, from ``speech_stopped`` (0 ms).

    A black tick marks the turn's first audio (``model_response``; often a filler phrase spoken
    while the tool runs).
    """
    wf = tool_waterfall(data)
    if max_turns is not None:
        wf = wf.head(max_turns)
    ax = _axes(ax, (11, 2.4 + 0.3 * max(len(wf), 1)))
    labels = [
        f"{r.record_id}" + (f" t{r.trial}" if _present(r.trial) else "")
        + f" · turn {r.turn}"
        for r in wf.itertuples()
    ]  # fmt: skip
    y = np.arange(len(wf))
    left = np.zeros(len(wf))
    for (_, label), color in zip(WATERFALL_STAGES, WATERFALL_COLORS, strict=True):
        w = wf[label].fillna(0.0).to_numpy(dtype=float)
        ax.barh(y, w, left=left, color=color, label=label, height=0.7, edgecolor="white", lw=0.4)
        left += w
    fa = wf["first_audio_ms"].to_numpy(dtype=float)
    ax.scatter(fa, y, marker="|", s=160, color="black", lw=2, label="first audio (model_response)")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms after Hydra's speech_stopped")
    ax.set_title("Tool turns: where the time goes")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3, axis="x")
    return ax


def _span_color(speaker: str, typ: Any) -> str:
    """Caller spans green (red when barging in), model spans by turn type."""
    if speaker == "user" and typ != "barge_in":
        return TYPE_COLORS["user"]
    return TYPE_COLORS.get(str(typ), "#999999")


def _span_handles(alpha: float) -> list[Any]:
    """Legend entries for turn spans: assistant types, barge-in, caller."""
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Patch(facecolor=TYPE_COLORS[k], alpha=alpha, label=k) for k in ("greeting", "plain", "tool")
    ]
    handles += [
        Patch(facecolor=TYPE_COLORS["barged_in"], alpha=alpha, hatch="//", label="barge-in"),
        Patch(facecolor=TYPE_COLORS["user"], alpha=alpha, label="caller"),
    ]
    return handles


def _envelope(
    pcm: npt.NDArray[np.int16], rate: int, t0_s: float, bins: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Min/max per bin of the normalised waveform (fast plotting of long calls)."""
    n = max(1, pcm.size // bins)
    m = pcm.size // n
    x = pcm[: m * n].astype(np.float64).reshape(m, n) / 32768.0
    t = t0_s + (np.arange(m) * n + n / 2) / rate
    return t, x.min(axis=1), x.max(axis=1)


def plot_timeline(
    run: Any,
    *,
    ax: Axes | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    show_text: bool = False,
) -> Axes:
    """The call on one time axis: both tracks' waveforms, turn spans, tool calls, latency brackets.

    The caller's lane is on top, the model's below; spans are coloured by turn type (hatched:
    barge-ins), orange ticks mark tool calls (arguments done), and the brackets between the
    lanes run from Hydra's ``speech_stopped`` to the first audio delta (``model_response``).
    """
    from matplotlib.patches import Rectangle

    d = _dir(run)
    tables = load_run(d)
    turns = tables.turns
    ax = _axes(ax, (13, 3.8))
    lanes = {"user": 1.0, "assistant": 0.0}
    t_lo, t_hi = start_s or 0.0, end_s
    for speaker, y0 in lanes.items():
        pcm, rate = load_audio(d, speaker)
        clip, c0 = _clip(pcm, rate, start_s, end_s)
        if t_hi is None:
            t_hi = pcm.size / rate
        if clip.size:
            peak = max(float(np.abs(clip).max()) / 32768.0, 1e-3)
            t, lo, hi = _envelope(clip, rate, c0, bins=4000)
            color = TYPE_COLORS["user"] if speaker == "user" else "#1f4e79"
            ax.fill_between(t, y0 + 0.38 * lo / peak, y0 + 0.38 * hi / peak, color=color, lw=0)
    assert t_hi is not None

    def inside(*ts: float) -> bool:
        return all(t_lo <= t <= t_hi for t in ts)

    for _, r in turns.iterrows():
        s, e = r["start_s"], r["end_s"]
        if s != s:
            continue
        e = e if e == e else s + 0.5
        if e < t_lo or s > t_hi:
            continue
        y0 = lanes[str(r["speaker"])]
        typ = str(r["type"])
        color = _span_color(str(r["speaker"]), typ)
        ax.add_patch(
            Rectangle(
                (s, y0 - 0.45), e - s, 0.9, facecolor=color, alpha=0.18, edgecolor=color,
                hatch="//" if typ in ("barged_in", "barge_in") else None, lw=0.8, zorder=0,
            )
        )  # fmt: skip
        if show_text and isinstance(r["text"], str):
            text = r["text"] if len(r["text"]) <= 60 else r["text"][:59] + "…"
            ax.text(max(s, t_lo), y0 + 0.47, text, fontsize=7, va="bottom", clip_on=True)
        mr, a, f = r["model_response_ms"], r["speech_stopped_s"], r["first_audio_s"]
        if mr == mr and mr is not None and a == a and f == f and inside(a, f):
            yb = 0.5
            ax.plot([a, a, f, f], [yb + 0.06, yb, yb, yb + 0.06], color="black", lw=1)
            ax.text((a + f) / 2, yb - 0.03, f"{mr:.0f} ms", ha="center", va="top", fontsize=7)
    last_t, stack = -np.inf, 0
    for _, c in tables.tool_calls.sort_values("args_done_s").iterrows():
        t = c["args_done_s"]
        if t != t or not inside(t):
            continue
        stack = stack + 1 if t - last_t < 1.5 else 0  # stack the names of calls close in time
        last_t = t
        ax.plot([t, t], [-0.48, 0.48], color=TYPE_COLORS["tool"], lw=1.5)
        ax.text(t, -0.56 - 0.14 * stack, str(c["tool"]), fontsize=7, ha="left", va="top",
                color="#a04000", clip_on=True)  # fmt: skip
    ax.set_xlim(t_lo, t_hi)
    ax.set_ylim(-1.15, 1.55)
    ax.set_yticks([1.0, 0.0], ["caller", "model"])
    ax.set_xlabel("time on the call timeline (s)")
    sess = tables.sessions.iloc[0]
    ax.set_title(f"{sess['record_id']} · {sess['model']} · ended: {sess['ended_reason']}")
    from matplotlib.lines import Line2D

    handles = [
        *_span_handles(alpha=0.35),
        Line2D([], [], color=TYPE_COLORS["tool"], lw=1.5, label="tool call"),
        Line2D([], [], color="black", lw=1, label="model_response bracket"),
    ]
    ax.legend(handles=handles, fontsize=7, ncol=7, loc="upper center", frameon=False,
              bbox_to_anchor=(0.5, -0.16))  # fmt: skip
    ax.grid(alpha=0.25, axis="x")
    return ax


def plot_spectrogram(
    run: Any,
    *,
    track: str = "mixed",
    ax: Axes | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    n_mels: int = 96,
    turns: bool = True,
) -> Axes:
    """A log-power spectrogram of one track on the call timeline, turn spans on top.

    With librosa (the ``analysis`` extra) it is a mel spectrogram; without it a linear-frequency
    one from scipy. Stripes along the top edge mark the turns (caller green, model by type).
    """
    pcm, rate = load_audio(run, track)
    clip, c0 = _clip(pcm, rate, start_s, end_s)
    y = clip.astype(np.float32) / 32768.0
    ax = _axes(ax, (13, 3.8))
    hop = max(1, rate // 100)  # 10 ms
    n_fft = 1 << int(np.ceil(np.log2(rate * 0.032)))  # ≥ 32 ms
    if y.size < n_fft:  # nothing recorded here (a call that failed before any audio)
        ax.text(0.5, 0.5, "no audio", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{track} track")
        return ax
    try:
        librosa: Any = importlib.import_module("librosa")
        display: Any = importlib.import_module("librosa.display")
    except ImportError:
        librosa = None
    if librosa is not None:
        s = librosa.feature.melspectrogram(y=y, sr=rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
        s_db = librosa.power_to_db(s, ref=np.max, top_db=80.0)
        times = c0 + librosa.frames_to_time(np.arange(s_db.shape[1]), sr=rate, hop_length=hop)
        display.specshow(s_db, sr=rate, hop_length=hop, x_axis="time", y_axis="mel",
                         x_coords=times, ax=ax, cmap="magma", shading="auto")  # fmt: skip
        ax.set_ylabel("Hz (mel scale)")
    else:
        from scipy.signal import spectrogram

        f, t, sxx = spectrogram(y, fs=rate, nperseg=n_fft, noverlap=n_fft - hop)
        s_db = 10 * np.log10(np.maximum(sxx, 1e-12))
        s_db = np.maximum(s_db, s_db.max() - 80.0)
        ax.pcolormesh(c0 + t, f, s_db, shading="auto", cmap="magma")
        ax.set_ylabel("Hz")
    t_lo, t_hi = c0, c0 + clip.size / rate
    ax.set_xlim(t_lo, t_hi)
    ax.set_xlabel("time on the call timeline (s)")
    ax.set_title(f"Spectrogram · {track} track · {rate / 1000:g} kHz")
    if turns:
        for _, r in load_run(run).turns.iterrows():
            s0, e0 = r["start_s"], r["end_s"]
            if s0 != s0 or s0 > t_hi or (e0 == e0 and e0 < t_lo):
                continue
            color = _span_color(str(r["speaker"]), "plain" if r["speaker"] == "user" else r["type"])
            y_lo = 0.955 if r["speaker"] == "user" else 0.91
            e0 = e0 if e0 == e0 else s0 + 0.5
            ax.axvspan(max(s0, t_lo), min(e0, t_hi), ymin=y_lo, ymax=y_lo + 0.04,
                       color=color, alpha=0.95)  # fmt: skip
        ax.legend(handles=_span_handles(alpha=0.95), fontsize=7, ncol=5, loc="upper center",
                  frameon=False, bbox_to_anchor=(0.5, -0.16), title="turn stripes (top: caller, "
                  "below: model)", title_fontsize=7)  # fmt: skip
    return ax


# ---------------------------------------------------------------------------- single-run views
def load_transcript(run: Any) -> pd.DataFrame:
    """The audit log as a table: time on the call timeline (s), who, what — and, for the
    caller's lines, ``intended``: what the caller meant to say (its ``user_speech`` events, in
    order) beside ``text``, what the STT recognised. Show it untruncated with
    ``pd.option_context("display.max_colwidth", None)``."""
    import pandas as pd

    d = _dir(run)
    entries = _read_json(d / "audit_log.json", {}).get("transcript", [])
    t0 = _t0_epoch_ms(_read_json(d / "run.json", {}), entries)
    intended = iter(_intended_lines(d))
    rows = []
    for e in entries:
        kind = e["message_type"]
        v = e["value"]
        if kind == "tool_call":
            text = f"{v['tool']}({json.dumps(v['parameters'], ensure_ascii=False)})"
        elif kind == "tool_response":
            r = v.get("response") or {}
            text = f"{v['tool']} → {r.get('status')}" + (
                f" ({r.get('error_type')})" if r.get("status") == "error" else ""
            )
        else:
            text = str(v)
        rows.append(
            {
                "t_s": (int(e["timestamp"]) - t0) / 1000.0,
                "who": kind,
                "text": text,
                "intended": next(intended, None) if kind == "user" else None,
            }
        )
    return pd.DataFrame(rows, columns=["t_s", "who", "text", "intended"])


def _intended_lines(d: Path) -> list[str]:
    """The caller's intended lines (``user_speech`` events of its log), in order."""
    path = d / "user_simulator_events.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            e = json.loads(line)
            if isinstance(e, dict) and e.get("type") == "user_speech":
                out.append(str((e.get("data") or {}).get("text", "")))
    return out


def plot_turn_latency(run: Any, *, ax: Axes | None = None) -> Axes:
    """Bar per assistant turn of ``model_response`` (speech_stopped → first audio), in ms."""
    turns = load_run(run).assistant
    ax = _axes(ax, (7, 3))
    vals = turns["model_response_ms"].fillna(0.0).to_numpy(dtype=float)
    x = np.arange(len(turns))
    ax.bar(x, vals, color=[TYPE_COLORS.get(str(k), "#2ca02c") for k in turns["type"]])
    for i, (v, reason) in enumerate(
        zip(turns["model_response_ms"], turns["latency_reason"], strict=True)
    ):
        if v != v or v is None:  # NaN: no valid anchor
            ax.annotate(str(reason), (i, 0), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, [f"{t}\n{k}" for t, k in zip(turns["turn"], turns["type"], strict=True)])
    ax.set_xlabel("assistant turn")
    ax.set_ylabel("model_response (ms)")
    ax.set_title("speech_stopped → first audio delta, per turn")
    return ax


# ---------------------------------------------------------------------------- comparisons
def _as_tables(x: Any) -> RunTables:
    """Tables from tables, a run or batch directory, or a ``RunResult``."""
    if isinstance(x, RunTables):
        return x
    p = Path(getattr(x, "run_dir", x))
    return load_run(p) if (p / "run.json").is_file() else load_batch(p)


def _need_columns(df: pd.DataFrame, cols: Iterable[str | None], what: str) -> None:
    missing = [c for c in cols if c is not None and c not in df.columns]
    if missing:
        raise KeyError(f"{what} has no column(s) {missing}; it has {list(df.columns)}")


def _grouped(df: pd.DataFrame, col: str, by: str | None) -> dict[str, npt.NDArray[np.float64]]:
    """``col`` (non-missing) per ``by`` group (known order) plus ``all``."""
    import pandas as pd

    df = df[df[col].notna()]
    out: dict[str, npt.NDArray[np.float64]] = {}
    if by is not None:
        for g in _group_order(df[by].dropna().unique()):
            out[str(g)] = pd.to_numeric(df.loc[df[by] == g, col]).to_numpy(dtype=float)
    out["all"] = pd.to_numeric(df[col]).to_numpy(dtype=float)
    return out


def compare_batches(
    a: Any,
    b: Any,
    *,
    metric: str = "model_response_ms",
    by: str | None = "type",
    labels: tuple[str, str] = ("a", "b"),
    level: float = 0.95,
    percentiles: Sequence[int] = (50, 90),
    n_boot: int = 2000,
    seed: int = 0,
    completion: str = "task_completion",
) -> pd.DataFrame:
    """Two batches (two models, voices or settings) side by side, with CIs of the differences.

    One row per statistic and group, a block per statistic: ``p50_ms`` and ``p90_ms`` of
    ``metric`` over assistant turns per ``by`` group (and ``all``), then ``task_completion``
    over scored conversations (per ``by`` group too when ``by`` is a sessions column, e.g.
    ``record_id`` or ``domain``; else ``all`` only). Columns, with the default labels:

    * ``n_a``, ``n_b`` — turns (conversations for ``task_completion``) with a value;
    * ``a``, ``a_lo``, ``a_hi``, ``b``, ``b_lo``, ``b_hi`` — each side's estimate and CI
      (percentile bootstrap for latency percentiles, Wilson for the completion rate);
    * ``diff``, ``diff_lo``, ``diff_hi`` — ``b - a`` and its CI: a bootstrap resampling each
      side independently for percentiles, Newcombe's hybrid score interval for rates. An
      interval excluding 0 is a difference at that level.

    Percentiles are numpy's linear ones (as in ``run.json``); a conversation counts as
    completed when its ``task_completion`` is 1.0. Turns are resampled as independent values;
    turns of one call are not, so intervals from few calls are optimistic.

    Args:
        a: The baseline: tables, or a batch or run directory.
        b: The other side, likewise.
        metric: The latency column of the turns table.
        by: The grouping column of the turns table (``None``: ``all`` only).
        labels: Names of the two sides, used in the column names.
        level: Coverage of every interval.
        percentiles: Which latency percentiles to compare.
        n_boot: Bootstrap resamples per side and group.
        seed: Seed of the resampling (the same for every group: deterministic).
        completion: The sessions column scored 1.0 for a completed task (the block is left
            out when neither side has it).

    Returns:
        A DataFrame indexed by ``(statistic, group)``.

    Raises:
        KeyError: When ``metric`` or ``by`` is not a column of the turns tables.
        ValueError: On labels that are not two distinct names, or an invalid level.
    """
    import pandas as pd

    from hydralab.stats import percentile_ci, percentile_diff_ci, rate_ci, rate_diff_ci

    la, lb = labels
    if not (isinstance(la, str) and isinstance(lb, str) and la and lb and la != lb):
        raise ValueError(f"labels must be two distinct non-empty names, got {labels!r}")
    if "diff" in labels:
        raise ValueError("'diff' names the difference columns: choose other labels")
    ta, tb = _as_tables(a), _as_tables(b)
    for t, lab in ((ta, la), (tb, lb)):
        _need_columns(t.turns, ["speaker", metric, by], f"the turns table of {lab!r}")
    va, vb = (_grouped(t.assistant, metric, by) for t in (ta, tb))
    order = [*_group_order([g for g in {**va, **vb} if g != "all"]), "all"]
    empty = np.zeros(0)
    cols = [f"n_{la}", f"n_{lb}", la, f"{la}_lo", f"{la}_hi", lb, f"{lb}_lo", f"{lb}_hi"]
    cols += ["diff", "diff_lo", "diff_hi"]
    rows: list[dict[str, Any]] = []
    for q in percentiles:
        for g in order:
            xa, xb = va.get(g, empty), vb.get(g, empty)
            if not (xa.size or xb.size):
                continue
            pa = float(np.percentile(xa, q)) if xa.size else np.nan
            pb = float(np.percentile(xb, q)) if xb.size else np.nan
            ci_a = percentile_ci(xa, q, level=level, n_boot=n_boot, seed=seed)
            ci_b = percentile_ci(xb, q, level=level, n_boot=n_boot, seed=seed)
            ci_d = percentile_diff_ci(xa, xb, q, level=level, n_boot=n_boot, seed=seed)
            rows.append(
                dict(zip(["statistic", "group", *cols], [
                    f"p{q}_ms", g, xa.size, xb.size, pa, *ci_a, pb, *ci_b, pb - pa, *ci_d
                ], strict=True))
            )  # fmt: skip
    sa, sb = ta.sessions, tb.sessions
    if completion in sa.columns or completion in sb.columns:
        sby = by if by is not None and by in sa.columns and by in sb.columns else None
        ca, cb = (_grouped(s, completion, sby) if completion in s.columns else {} for s in (sa, sb))
        for g in [*_group_order([g for g in {**ca, **cb} if g != "all"]), "all"]:
            xa, xb = ca.get(g, empty), cb.get(g, empty)
            if not (xa.size or xb.size):
                continue
            ka, kb = int((xa >= 1.0).sum()), int((xb >= 1.0).sum())
            ra = ka / xa.size if xa.size else np.nan
            rb = kb / xb.size if xb.size else np.nan
            rows.append(
                dict(zip(["statistic", "group", *cols], [
                    completion, g, xa.size, xb.size,
                    ra, *rate_ci(ka, xa.size, level=level),
                    rb, *rate_ci(kb, xb.size, level=level),
                    rb - ra, *rate_diff_ci(ka, xa.size, kb, xb.size, level=level),
                ], strict=True))
            )  # fmt: skip
    out = pd.DataFrame(rows, columns=["statistic", "group", *cols])
    return out.astype({f"n_{la}": int, f"n_{lb}": int}).set_index(["statistic", "group"])


def pass_at_k_table(
    sessions: Any,
    k_values: Sequence[int] = (1, 2, 3),
    *,
    metric: str = "task_completion",
    threshold: float = 1.0,
) -> pd.DataFrame:
    """pass@k and pass^k per record from repeated trials, and their mean over records.

    A trial passes when ``metric >= threshold`` (``task_completion`` is 1.0 for a completed
    task); trials without a score (NaN) are left out, as EVA leaves out errored trials. For each
    record of ``n`` scored trials with ``c`` passes: ``pass@k`` (at least one of k trials
    passes) and ``pass^k`` (all k pass), EVA's unbiased estimators
    (:func:`hydralab.stats.pass_at_k`, :func:`hydralab.stats.pass_hat_k`); NaN when ``k > n``.

    Args:
        sessions: A sessions DataFrame (``record_id``, ``trial``, ``metric``) or tables.
        k_values: The k to report, each a positive integer.
        metric: The score column.
        threshold: The score a trial needs to pass.

    Returns:
        One row per record (index ``record_id``): ``n``, ``c``, ``pass@k`` and ``pass^k`` for
        each k; then a row ``mean`` whose pass columns are the mean over records with at least
        k trials (EVA's aggregate) and whose ``n``/``c`` are the totals.

    Raises:
        KeyError: When a column is missing.
        ValueError: On an invalid k, or a record with the same trial twice (several batches
            or variants in one table: select one first).
    """
    import pandas as pd

    from hydralab.stats import pass_at_k, pass_hat_k

    df = sessions.sessions if isinstance(sessions, RunTables) else sessions
    _need_columns(df, ["record_id", metric], "the sessions table")
    ks = list(k_values)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"k_values must be positive integers, got {k_values!r}")
    ks = sorted(set(ks))
    df = df[df[metric].notna()]
    if "trial" in df.columns:
        known = df[df["trial"].notna()]
        dup = known[known.duplicated(["record_id", "trial"], keep=False)]
        if not dup.empty:
            first = dup.iloc[0]
            raise ValueError(
                f"record {first['record_id']!r} has trial {first['trial']} more than once: the "
                "table mixes batches or variants; select one first "
                "(e.g. sessions[sessions['variant'] == name])"
            )
    rows: list[dict[str, Any]] = []
    for rid in sorted(df["record_id"].dropna().unique(), key=str):
        scores = pd.to_numeric(df.loc[df["record_id"] == rid, metric]).to_numpy(dtype=float)
        n, c = int(scores.size), int((scores >= threshold).sum())
        row: dict[str, Any] = {"record_id": rid, "n": n, "c": c}
        for k in ks:
            row[f"pass@{k}"] = pass_at_k(n, c, k) if k <= n else np.nan
            row[f"pass^{k}"] = pass_hat_k(n, c, k) if k <= n else np.nan
        rows.append(row)
    cols = ["record_id", "n", "c", *(f"pass{s}{k}" for k in ks for s in ("@", "^"))]
    out = pd.DataFrame(rows, columns=cols)
    mean: dict[str, Any] = {"record_id": "mean", "n": int(out["n"].sum()), "c": int(out["c"].sum())}
    for col in cols[3:]:
        mean[col] = float(out[col].mean()) if out[col].notna().any() else np.nan
    out = pd.concat([out, pd.DataFrame([mean], columns=cols)], ignore_index=True)
    return out.astype({"n": int, "c": int}).set_index("record_id")
