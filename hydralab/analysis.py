"""Look at a run directory from a notebook: tables (pandas), plots (matplotlib), players.

pandas, matplotlib and IPython are imported lazily (the ``notebooks`` extra); the run directory
is the only input, so a finished run can be studied long after the call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydralab.audio import read_wav

if TYPE_CHECKING:
    import pandas as pd
    from IPython.display import Audio
    from matplotlib.axes import Axes

__all__ = ["TRACKS", "listen", "load_transcript", "load_turns", "plot_turn_latency"]

TRACKS = {
    "mixed": "audio_mixed.wav",
    "user": "audio_user.wav",
    "caller": "audio_user.wav",
    "assistant": "audio_assistant.wav",
    "model": "audio_assistant.wav",
}


def _dir(run: Any) -> Path:
    """A run directory from a path or anything with a ``run_dir`` (``RunResult``)."""
    return Path(getattr(run, "run_dir", run))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_transcript(run: Any) -> pd.DataFrame:
    """The audit log as a table: time from call start (s), who, what."""
    import pandas as pd

    d = _dir(run)
    entries = _read_json(d / "audit_log.json")["transcript"]
    t0 = _read_json(d / "run.json").get("timeline", {}).get("t0_epoch_ms")
    if t0 is None and entries:
        t0 = int(entries[0]["timestamp"])
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
            {"t_s": (int(e["timestamp"]) - int(t0 or 0)) / 1000.0, "who": kind, "text": text}
        )
    return pd.DataFrame(rows, columns=["t_s", "who", "text"])


def load_turns(run: Any) -> pd.DataFrame:
    """One row per assistant turn: type, status, tools, ``model_response`` latency and anchor."""
    import pandas as pd

    turns = _read_json(_dir(run) / "run.json")["turns"]
    cols = ["index", "kind", "status", "model_response_ms", "latency_reason", "tools", "text"]
    return pd.DataFrame([{c: t.get(c) for c in cols} for t in turns], columns=cols).set_index(
        "index"
    )


def plot_turn_latency(run: Any, *, ax: Axes | None = None) -> Axes:
    """Bar per assistant turn of ``model_response`` (speech_stopped → first audio), in ms."""
    import matplotlib.pyplot as plt

    turns = load_turns(run)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    colors = {"greeting": "#999999", "plain": "#1f77b4", "tool": "#ff7f0e"}
    vals = turns["model_response_ms"].fillna(0.0)
    ax.bar(turns.index.astype(str), vals, color=[colors.get(k, "#2ca02c") for k in turns["kind"]])
    for i, (v, reason) in enumerate(
        zip(turns["model_response_ms"], turns["latency_reason"], strict=True)
    ):
        if v != v or v is None:  # NaN: no valid anchor
            ax.annotate(str(reason), (i, 0), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xlabel("assistant turn")
    ax.set_ylabel("model_response (ms)")
    ax.set_title("speech_stopped → first audio delta, per turn")
    return ax


def listen(run: Any, track: str = "mixed") -> Audio:
    """An inline 48 kHz player for ``mixed``, ``user``/``caller`` or ``assistant``/``model``."""
    from IPython.display import Audio

    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}: choose one of {sorted(TRACKS)}")
    pcm, rate = read_wav(_dir(run) / TRACKS[track])
    return Audio(  # type: ignore[no-untyped-call]
        pcm.astype("float32") / 32768.0, rate=rate, normalize=False
    )
