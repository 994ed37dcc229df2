"""One self-contained HTML report of a run or a batch: :func:`write_report`.

The page loads nothing: plots are base64 PNGs (matplotlib, drawn on an Agg canvas without
pyplot, so a notebook's backend is left alone), audio players are base64 WAV data URIs (16 kHz
mono, at most ``max_audio_mb`` in all), tables are pandas HTML with every cell escaped, and a
Content-Security-Policy forbids any other source. Needs the ``notebooks`` extra (pandas,
matplotlib), as :mod:`hydralab.analysis` does.

* A single run (a record directory holding ``run.json``, or a run root whose ``records/`` holds
  one): summary (verdict, ended reason, scores, latency headlines with their n), the conditions,
  the audio, per-turn latencies, timeline and per-turn latency plots, the transcript (intended vs
  recognised), the tool trace and the expected-vs-final DB diff.
* A batch (a ``batch.json`` or more than one conversation below the path): the sessions table,
  latency tables with bootstrap CIs, ECDF and box plots, and pass@k when there are trials.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hydralab import analysis
from hydralab.audio import resample, wav_bytes
from hydralab.latency import latency_stats

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["AUDIO_RATE_HZ", "REPORT_NAME", "write_report"]

REPORT_NAME = "report.html"
AUDIO_RATE_HZ = 16_000
MAX_AUDIO_MB = 20.0
_CSP = (
    "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
    "form-action 'none'; base-uri 'none'"
)
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:.6em;overflow:auto}
.note{color:#8a5a00}.ok{color:#1a7f37}.bad{color:#b42318}.kv th{width:14em}
audio{height:2em;vertical-align:middle}.wide{overflow-x:auto}
"""
_CONDITIONS = (
    ("model", "model"),
    ("model tag", "model_tag"),
    ("voice", "voice"),
    ("domain", "domain"),
    ("configure mode", "configure_mode"),
    ("standard conditions", "standard_conditions"),
    ("tools backend", "tools_backend"),
    ("caller", "caller"),
    ("persona", "persona"),
    ("STT", "stt"),
    ("line noise", "line_noise"),
    ("line SNR (dB)", "line_snr_db"),
    ("line packet loss", "line_packet_loss"),
    ("hydralab", "hydralab_version"),
)
_TURN_COLS = (
    "speaker", "turn", "type", "start_s", "end_s", "model_response_ms", "heard_ms", "v2v_ms",
    "latency_reason", "tools", "text",
)  # fmt: skip
_TOOL_COLS = (
    "turn", "call_id", "tool", "args", "status", "error_type", "args_ms", "exec_ms",
)  # fmt: skip
_SESSION_COLS = (
    "conversation", "trial", "variant", "record_id", "model", "completed", "ended_reason",
    "task_completion", "authentication_success", "tool_call_validity", "db_match", "call_s",
    "n_user_turns", "n_assistant_turns", "n_tool_calls", "model_response_n",
    "model_response_p50_ms", "model_response_p90_ms", "heard_p50_ms", "heard_p90_ms",
    "configure_mode", "tools_backend", "caller", "persona", "line_noise", "error",
)  # fmt: skip
_LATENCY_METRICS = ("model_response_ms", "heard_ms")


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _missing(x: Any) -> bool:
    try:
        return x is None or bool(x != x)
    except (TypeError, ValueError):  # pandas.NA and friends
        return True


def _fmt(x: Any) -> str:
    if _missing(x):
        return "—"
    if isinstance(x, float | np.floating):
        return f"{float(x):.3g}" if abs(float(x)) < 10 else f"{float(x):.0f}"
    return str(x)


# ---------------------------------------------------------------------------- building blocks
def _table(df: pd.DataFrame, *, index: bool = False) -> str:
    if df.empty:
        return "<p class='note'>(none)</p>"
    table = str(
        df.to_html(index=index, escape=True, na_rep="", border=0, float_format=lambda v: f"{v:.1f}")
    )
    return f"<div class='wide'>{table}</div>"


def _kv(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


def _columns(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    return df[[c for c in cols if c in df.columns]]


def _figure(draw: Callable[[Axes], Any], figsize: tuple[float, float], alt: str) -> str:
    """A plot as an ``<img>`` with a PNG data URI, or a note saying why it could not be drawn."""
    from matplotlib.figure import Figure

    try:
        fig = Figure(figsize=figsize, layout="constrained")
        draw(fig.subplots())
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
    except Exception as e:  # one plot failing must not lose the report
        return f"<p class='note'>{_esc(alt)}: not drawn ({_esc(type(e).__name__)}: {_esc(e)})</p>"
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{data}'>"


class _AudioBudget:
    """Audio players as WAV data URIs, 16 kHz mono, until ``max_bytes`` of base64 is spent."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.capped = 0

    def player(self, pcm: np.ndarray[Any, Any], rate: int) -> str:
        if rate != AUDIO_RATE_HZ and pcm.size:
            pcm = resample(pcm.astype(np.int16), in_rate_hz=rate, out_rate_hz=AUDIO_RATE_HZ)
        data = base64.b64encode(wav_bytes(pcm.astype(np.int16), sample_rate_hz=AUDIO_RATE_HZ))
        if len(data) > self.left:
            self.capped += 1
            return "<span class='note'>(left out: audio size cap reached)</span>"
        self.left -= len(data)
        src = f"data:audio/wav;base64,{data.decode('ascii')}"
        return f"<audio controls preload='none' src='{src}'></audio>"


def _page(title: str, sections: Sequence[tuple[str, str, str]], notes: Sequence[str]) -> str:
    toc = " · ".join(f"<a href='#{sid}'>{_esc(name)}</a>" for sid, name, _ in sections)
    body = "".join(
        f"<section id='{sid}'><h2>{_esc(name)}</h2>{content}</section>"
        for sid, name, content in sections
    )
    note = "".join(f"<p class='note'>{_esc(n)}</p>" for n in notes)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{note}<nav>{toc}</nav>{body}</body></html>\n"
    )


def _headline(values: Any, name: str) -> str:
    v = np.asarray(values, dtype=float)
    st = latency_stats(v[~np.isnan(v)])
    if not st["n"]:
        return f"{name}: no values (n=0)"
    return (
        f"{name}: p50 {st['p50_ms']:.0f} ms, p90 {st['p90_ms']:.0f} ms, "
        f"max {st['max_ms']:.0f} ms (n={st['n']})"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------- single run
def _verdict(d: Path, session: Any) -> tuple[str, str]:
    run = _read_json(d / "run.json") or {}
    v = run.get("verdict") if isinstance(run, dict) else None
    if isinstance(v, dict) and "completed" in v:
        why = "; ".join(str(x) for x in v.get("not_completed") or [])
        return ("completed", "ok") if v["completed"] else (f"not completed — {why}", "bad")
    completed = session.get("completed")
    if _missing(completed):
        return "unknown", "note"
    return ("completed", "ok") if completed else ("not completed", "bad")


def _db_diff_section(d: Path) -> str:
    from hydralab.scoring import db_diff

    exp, fin = d / "expected_scenario_db.json", d / "final_scenario_db.json"
    missing = [p.name for p in (exp, fin) if not p.is_file()]
    if missing:
        return f"<p class='note'>not computable: no {_esc(', '.join(missing))}</p>"
    e, f = _read_json(exp), _read_json(fin)
    if not isinstance(e, dict) or not isinstance(f, dict):
        return "<p class='note'>not computable: unreadable scenario DB JSON</p>"
    diff = db_diff(e, f)
    same = not (diff["tables_added"] or diff["tables_removed"] or diff["tables_modified"])
    head = (
        "<p class='ok'>the final DB matches the expected DB (no differences)</p>"
        if same
        else "<p class='bad'>the final DB differs from the expected DB</p>"
    )
    text = json.dumps(diff, indent=2, ensure_ascii=False, default=str)
    return f"{head}<pre>{_esc(text)}</pre>"


def _run_sections(d: Path, budget: _AudioBudget) -> tuple[str, list[tuple[str, str, str]]]:
    t = analysis.load_run(d)
    s = t.sessions.iloc[0].to_dict()
    a = t.assistant
    verdict, cls = _verdict(d, s)
    summary = f"<p class='{cls}'><b>verdict: {_esc(verdict)}</b></p>" + _kv(
        [
            ("record", s.get("record_id")),
            ("ended reason", s.get("ended_reason")),
            ("error", s.get("error")),
            ("task_completion", s.get("task_completion")),
            ("authentication_success", s.get("authentication_success")),
            ("tool_call_validity", s.get("tool_call_validity")),
            ("db_match", s.get("db_match")),
            ("call length (s)", s.get("call_s")),
            (
                "turns (caller / assistant)",
                f"{s.get('n_user_turns')} / {s.get('n_assistant_turns')}",
            ),
            ("tool calls", s.get("n_tool_calls")),
            ("model_response", _headline(a["model_response_ms"], "model_response")),
            ("heard", _headline(a["heard_ms"], "heard")),
        ]
    )
    conditions = _kv((label, s.get(col)) for label, col in _CONDITIONS)

    audio = _audio_section(d, t.turns, budget)
    turns = _table(_columns(t.turns, _TURN_COLS))
    plots = _figure(
        lambda ax: analysis.plot_timeline(d, ax=ax), (13, 3.8), "call timeline"
    ) + _figure(lambda ax: analysis.plot_turn_latency(d, ax=ax), (8, 3.2), "latency per turn")
    tr = analysis.load_transcript(d)
    tr = tr.assign(recognised=tr["text"]).drop(columns=["text"])
    transcript = (
        "<p>For the caller's lines: <i>intended</i> is what the caller meant to say, "
        "<i>recognised</i> what the speech recogniser heard.</p>"
        + _table(tr[["t_s", "who", "intended", "recognised"]])
    )
    tools = _table(_columns(t.tool_calls, _TOOL_COLS))
    title = f"hydralab run report — {s.get('record_id') or d.name}"
    return title, [
        ("summary", "Summary", summary),
        ("conditions", "Conditions", conditions),
        ("audio", "Audio", audio),
        ("turns", "Per-turn latency", turns),
        ("timeline", "Timeline", plots),
        ("transcript", "Transcript", transcript),
        ("tools", "Tool trace", tools),
        ("dbdiff", "Expected vs final DB", _db_diff_section(d)),
    ]


def _audio_section(d: Path, turns: pd.DataFrame, budget: _AudioBudget) -> str:
    try:
        pcm, rate = analysis.load_audio(d, "mixed")
    except (OSError, ValueError) as e:
        return f"<p class='note'>no audio ({_esc(e)})</p>"
    parts = [
        f"<p>Both sides mixed ({pcm.size / rate:.1f} s; played here at 16 kHz mono): "
        f"{budget.player(pcm, rate)}</p>"
    ]
    rows = []
    for _, r in turns.iterrows():
        start = float(r["start_s"]) if not _missing(r["start_s"]) else None
        if start is None:
            continue
        end = float(r["end_s"]) if not _missing(r["end_s"]) else start + 5.0
        i0 = max(0, round((start - 0.25) * rate))
        i1 = max(i0, min(pcm.size, round((end + 0.25) * rate)))
        rows.append(
            f"<tr><td>{_esc(r['speaker'])} {_esc(r['turn'])}</td><td>{_esc(r['type'])}</td>"
            f"<td>{start:.2f}–{end:.2f} s</td><td>{_esc(_fmt(r['model_response_ms']))}</td>"
            f"<td>{_esc(r['text'])}</td><td>{budget.player(pcm[i0:i1], rate)}</td></tr>"
        )
    if rows:
        parts.append(
            "<table><tr><th>turn</th><th>type</th><th>on the timeline</th>"
            "<th>model_response (ms)</th><th>text</th><th>listen</th></tr>"
            + "".join(rows)
            + "</table>"
        )
    return "".join(parts)


# ---------------------------------------------------------------------------- batch
def _batch_sections(root: Path) -> tuple[str, list[tuple[str, str, str]]]:
    t = analysis.load_batch(root)
    sessions = _table(_columns(t.sessions, _SESSION_COLS))
    lat = []
    for metric in _LATENCY_METRICS:
        tab = analysis.latency_table(t, metric=metric, ci=True)
        lat.append(f"<h3>{_esc(metric)}</h3>")
        lat.append(
            _table(tab, index=True)
            if not tab.empty
            else f"<p class='note'>no {_esc(metric)} values</p>"
        )
    lat.insert(0, "<p>Percentiles with 95% percentile-bootstrap CIs (lo / hi).</p>")
    plots = _figure(
        lambda ax: analysis.plot_latency_ecdf(t, ax=ax), (8, 4.2), "model_response ECDF"
    ) + _figure(lambda ax: analysis.plot_latency_box(t, ax=ax), (8, 4.2), "model_response box")
    sections = [
        ("sessions", "Sessions", sessions),
        ("latency", "Latency", "".join(lat)),
        ("plots", "Latency plots", plots),
    ]
    if "trial" in t.sessions.columns and t.sessions["trial"].notna().any():
        try:
            pk = _table(analysis.pass_at_k_table(t), index=True)
        except (KeyError, ValueError) as e:
            pk = f"<p class='note'>pass@k not computable: {_esc(e)}</p>"
        sections.append(("passk", "pass@k", pk))
    n = len(t.run_dirs)
    return f"hydralab batch report — {root.resolve().name} ({n} conversations)", sections


# ---------------------------------------------------------------------------- entry point
def write_report(
    path: str | Path, *, out: str | Path | None = None, max_audio_mb: float = MAX_AUDIO_MB
) -> Path:
    """Write one self-contained HTML report of a run or a batch; return its path.

    Args:
        path: A run directory (a record directory holding ``run.json``, or a run root whose
            ``records/`` holds one) or a batch directory (``batch.json``, or several
            conversations below it).
        out: Where to write (default ``<path>/report.html``).
        max_audio_mb: Most base64 audio to embed for a single run; players past it are left
            out and the page says so.

    Raises:
        FileNotFoundError: When ``path`` does not exist or holds no run (no ``run.json``).
    """
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such directory")
    dirs = analysis.find_runs(p)
    if not dirs:
        raise FileNotFoundError(
            f"{p}: no runs found (no run.json at or below it); pass a run's record directory, "
            "a run root with records/, or a batch directory"
        )
    notes: list[str] = []
    if len(dirs) == 1 and not (p / "batch.json").is_file():
        budget = _AudioBudget(int(max_audio_mb * 1_000_000))
        title, sections = _run_sections(dirs[0], budget)
        if budget.capped:
            notes.append(
                f"Audio capped: {budget.capped} player(s) left out to keep the embedded audio "
                f"under {max_audio_mb:g} MB."
            )
    else:
        title, sections = _batch_sections(p)
    target = Path(out) if out is not None else p / REPORT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_page(title, sections, notes), encoding="utf-8")
    return target
