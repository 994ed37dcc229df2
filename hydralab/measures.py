"""Barge-in and turn-taking measures of one record directory, read from its files alone.

Nothing is re-run: the caller's own log (``user_simulator_events.jsonl``) gives what the caller
heard and said, on the caller's clock; the bridge's files (``events.jsonl``, ``run.json``) give
what the bridge did (the ``barge_in`` it logged, the Twilio ``clear`` it sent, what it played).
Every value is a difference of two named anchors, all epoch milliseconds on the same host clock.

Anchors:
    ``call_start``: the caller's ``connection_state`` / ``connected`` event in
        ``user_simulator_events.jsonl`` (its ``timestamp``): the caller's socket to the bridge
        is open and its first frame (Twilio ``connected``) goes out. Fallback
        ``bridge_connected``: the ``t_ms`` of the first Twilio frame the bridge received in
        ``events.jsonl`` (``connected``/``start``), a few ms later.
    ``assistant_audio_start`` / ``assistant_audio_end``: the caller's ``audio_start`` /
        ``audio_end`` for ``user == "assistant"`` (``audio_timestamp``): the first and the last
        audible sample (-45 dBFS) of an assistant turn as it reached the caller. A heard turn is
        one segment from its first to its last audible sample (a silent gap inside it counts as
        heard).
    ``caller_audio_start`` / ``caller_audio_end``: the same for ``user == "simulated_user"``:
        the caller's first and last audible sample of an utterance, as it sent them.
    ``bridge_first_played``: ``run.json`` ``turns[i].first_played_epoch_ms``: the bridge sent
        the turn's first audible frame to the caller.
    ``bridge_played_end``: ``first_played_epoch_ms + played_ms`` of the turn the bridge cut
        (its played samples, assumed back to back): where the bridge stopped playing it.
    ``bridge_barge_in``: the ``t_ms`` of the bridge's ``barge_in`` row in ``events.jsonl`` (the
        model's ``speech_started`` reached the bridge while a turn played; unplayed audio dropped).
    ``bridge_clear``: the ``t_ms`` of the Twilio ``clear`` the bridge sent the caller then.

Measures:
    ``time_to_greeting_ms``: ``call_start`` -> the first ``assistant_audio_start`` (the first
        assistant audio the caller heard). Fallback end anchor ``bridge_first_played`` of
        turn 0. ``None`` with a reason when the caller spoke before any assistant audio or an
        anchor is missing.
    A barge-in: the caller's utterance starts while an assistant segment it hears is playing,
        at least ``min_overlap_ms`` (one 20 ms frame) before that segment's end:
        ``assistant_audio_start <= caller_audio_start <= assistant_audio_end - min_overlap_ms``.
        When several heard segments contain it, the one that started last.
    ``yield_ms``: ``caller_audio_start`` -> the end of the interrupted assistant audio: how long
        the model kept talking, as the caller heard it, after the caller cut in. End anchor
        ``assistant_audio_end`` of that segment; when the caller's log has none (it ends while
        the assistant plays), ``bridge_played_end``, then ``bridge_clear``; the anchor used is
        named in ``yield_anchor``. The same as EVA's ``turn_taking`` ``yield_ms`` when the
        caller's log is whole.
    ``overlap_ms``: how long both were audible at once: ``caller_audio_start`` ->
        ``min(caller_audio_end, <yield's end anchor>)``, at least 0. Audio the assistant
        starts while the caller still speaks (an agent barge-in, or audio heard after the
        ``clear``) belongs to another segment and is not counted here.
    ``bridge_yield_ms``: ``caller_audio_start`` -> ``bridge_clear``: the bridge's own reaction
        (the model's speech detection plus the bridge), ``None`` without a ``clear`` (the
        bridge did not cut, or spoke EVA's dialect, which sends none).

A run without ``user_simulator_events.jsonl`` (killed before its end files) is measured from
the bridge alone: barge-ins are its ``barge_in`` rows (``why == "speech_started"``), the caller's
utterance the last one (``run.json`` ``user_utterances`` or the Twilio ``user_speech_start`` /
``user_speech_stop`` stamps in ``events.jsonl``) that started before it, and ``yield_ms`` ends
at ``bridge_played_end`` or ``bridge_clear``; rows say ``source: "bridge"``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydralab.scoring import (
    EVENTS_FILE,
    SIMULATOR_EVENTS_FILE,
    ScoringError,
    _jsonl_rows,
    _simulator_events_path,
    turn_timeline,
)

#: Default least overlap (ms) of a caller start with the assistant audio to count as a barge-in:
#: one 20 ms frame, so a reply that starts as the assistant's last frame ends is not one.
MIN_OVERLAP_MS = 20.0

_CALLER, _ASSISTANT = "simulated_user", "assistant"

#: Named definitions of every measure (the module docstring has the anchors in full).
DEFINITIONS: dict[str, str] = {
    "time_to_greeting_ms": (
        "call_start (the caller's connection_state connected; fallback the bridge's first "
        "Twilio frame received) -> the first assistant audio_start the caller logged (fallback "
        "run.json turn 0 first_played_epoch_ms)"
    ),
    "yield_ms": (
        "caller audio_start of a barge-in -> the end of the interrupted assistant audio the "
        "caller heard (assistant audio_end; fallback bridge_played_end, then bridge_clear); "
        "the anchor used is yield_anchor"
    ),
    "overlap_ms": (
        "caller audio_start -> min(caller audio_end, the yield's end anchor): both audible at once"
    ),
    "bridge_yield_ms": "caller audio_start -> the Twilio clear the bridge sent (events.jsonl)",
}


class MeasureError(ScoringError):
    """A record directory with nothing to measure (missing directory or files)."""


# ---------------------------------------------------------------------------------------------
# Reading the files
# ---------------------------------------------------------------------------------------------


@dataclass
class _Sources:
    """What a record directory holds, each part ``None`` when its file is absent or unusable."""

    record_dir: Path
    simulator: list[dict[str, Any]] | None = None
    audit: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    problems: list[str] = field(default_factory=list)


def _read_json_object(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({exc})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name}: not a JSON object")
        return None
    return data


def _read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]] | None:
    try:
        return _jsonl_rows(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({exc})")
        return None


def _load(record_dir: Path | str) -> _Sources:
    """Read a record directory's files; raise when there is nothing to measure from."""
    path = Path(record_dir)
    if not path.is_dir():
        raise MeasureError(f"{path}: no such record directory")
    src = _Sources(record_dir=path)
    sim_path = _simulator_events_path(path)
    if sim_path is not None:
        src.simulator = _read_jsonl(sim_path, src.problems)
    else:
        src.problems.append(f"no {SIMULATOR_EVENTS_FILE}: measured from the bridge's files")
    if (path / EVENTS_FILE).is_file():
        src.events = _read_jsonl(path / EVENTS_FILE, src.problems)
    if src.simulator is None and src.events is None:
        raise MeasureError(
            f"{path}: nothing to measure: neither {SIMULATOR_EVENTS_FILE} (what the caller heard)"
            f" nor {EVENTS_FILE} (the bridge's log) is there"
        )
    src.run = _read_json_object(path / "run.json", src.problems)
    src.audit = _read_json_object(path / "audit_log.json", src.problems)
    return src


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _turn_rows(run: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    turns = (run or {}).get("turns")
    return [t for t in turns if isinstance(t, Mapping)] if isinstance(turns, list) else []


# ---------------------------------------------------------------------------------------------
# The bridge's view (events.jsonl, run.json)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BridgeCut:
    t_ms: float
    turn: int | None
    why: str


@dataclass
class _BridgeLog:
    connected_ms: float | None = None  # the first Twilio frame the bridge received
    cuts: list[_BridgeCut] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    speech: list[tuple[float, float | None]] = field(default_factory=list)  # caller start, stop


def _stamp(frame: Mapping[str, Any], fallback: float) -> float:
    """The caller's ``timestamp_ms`` on a Twilio speech frame (a string), else ``fallback``."""
    raw = str(frame.get("timestamp_ms") or "")
    return float(raw) if raw.isdigit() else fallback


def _bridge_log(rows: Iterable[Mapping[str, Any]] | None) -> _BridgeLog:
    out = _BridgeLog()
    for row in rows or []:
        frame, t = row.get("frame"), _number(row.get("t_ms"))
        if not isinstance(frame, Mapping) or t is None:
            continue
        kind = frame.get("type") or frame.get("event")
        src, direction = row.get("src"), row.get("dir")
        if src == "twilio" and direction == "in":
            if out.connected_ms is None and kind in ("connected", "start"):
                out.connected_ms = t
            if kind == "user_speech_start":
                out.speech.append((_stamp(frame, t), None))
            elif kind == "user_speech_stop" and out.speech and out.speech[-1][1] is None:
                out.speech[-1] = (out.speech[-1][0], _stamp(frame, t))
        elif src == "twilio" and direction == "out" and kind == "clear":
            out.clears.append(t)
        elif src == "bridge" and kind == "barge_in":
            turn = frame.get("turn")
            why = frame.get("why")
            out.cuts.append(
                _BridgeCut(
                    t_ms=t,
                    turn=turn if isinstance(turn, int) and not isinstance(turn, bool) else None,
                    why=str(why) if why is not None else "speech_started",
                )
            )
    return out


def _played_end(turns: Sequence[Mapping[str, Any]], index: int | None) -> float | None:
    """``bridge_played_end`` of assistant turn ``index``: first played + ``played_ms``."""
    for row in turns:
        if row.get("index") == index:
            first, played = _number(row.get("first_played_epoch_ms")), _number(row.get("played_ms"))
            return first + played if first is not None and played is not None else None
    return None


def _turn_playing_at(turns: Sequence[Mapping[str, Any]], t_ms: float) -> int | None:
    """The bridge's assistant turn that started playing last at or before ``t_ms``."""
    best: tuple[float, int] | None = None
    for row in turns:
        first, index = _number(row.get("first_played_epoch_ms")), row.get("index")
        if first is None or not isinstance(index, int) or first > t_ms:
            continue
        if best is None or first >= best[0]:
            best = (first, index)
    return None if best is None else best[1]


def _first_in(values: Iterable[float], lo: float, hi: float) -> float | None:
    inside = [v for v in values if lo <= v < hi]
    return min(inside) if inside else None


# ---------------------------------------------------------------------------------------------
# Barge-ins
# ---------------------------------------------------------------------------------------------


def _audio_ends(events: Iterable[Mapping[str, Any]], role: str) -> set[float]:
    """The ``audio_timestamp`` (s) of every ``audio_end`` the caller logged for ``role``."""
    out: set[float] = set()
    for e in events:
        if (e.get("event_type") or e.get("type")) == "audio_end" and e.get("user") == role:
            stamp = _number(e.get("audio_timestamp"))
            if stamp is not None:
                out.add(stamp)
    return out


def _yield_end(
    heard_end_ms: float | None, played_end_ms: float | None, clear_ms: float | None
) -> tuple[float | None, str | None]:
    for value, name in (
        (heard_end_ms, "assistant_audio_end"),
        (played_end_ms, "bridge_played_end"),
        (clear_ms, "bridge_clear"),
    ):
        if value is not None:
            return value, name
    return None, None


def _measured(
    row: dict[str, Any],
    start_s: float,
    stop_s: float | None,
    end_s: float | None,
    anchor: str | None,
    *,
    caller_log: bool = True,
) -> dict[str, Any]:
    """Fill ``yield_ms`` / ``overlap_ms`` of ``row`` from its anchors (epoch seconds).

    Differences are taken in seconds, then scaled, as EVA's ``turn_taking`` does.
    """
    row["yield_anchor"] = anchor
    if end_s is None:
        row["yield_ms"] = row["overlap_ms"] = None
        heard = (
            "the caller's log ends while the assistant audio plays (no audio_end)"
            if caller_log
            else "no caller log"
        )
        row["reason"] = f"{heard} and the bridge recorded no cut (no played_ms, no clear)"
        return row
    row["yield_ms"] = _ms(max(0.0, end_s - start_s) * 1000.0)
    both_until = end_s if stop_s is None else min(stop_s, end_s)
    row["overlap_ms"] = _ms(max(0.0, both_until - start_s) * 1000.0)
    row["reason"] = None
    return row


def _s(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _caller_rows(src: _Sources, min_overlap_ms: float) -> list[dict[str, Any]]:
    """Barge-ins as the caller heard them (``user_simulator_events.jsonl``)."""
    events = src.simulator or []
    timeline = turn_timeline(events, src.audit)
    users = sorted(
        (start, end, turn)
        for turn, segments in timeline.user_audio.items()
        if segments
        for start, end in segments
    )
    heard = sorted(
        (start, end)
        for segments in timeline.assistant_audio.values()
        if segments
        for start, end in segments
    )
    closed_assistant = _audio_ends(events, _ASSISTANT)
    closed_caller = _audio_ends(events, _CALLER)
    bridge = _bridge_log(src.events)
    turns = _turn_rows(src.run)
    rows: list[dict[str, Any]] = []
    for i, (u_start, u_end, turn) in enumerate(users):
        inside = [
            (a_start, a_end)
            for a_start, a_end in heard
            if a_start <= u_start and (a_end - u_start) * 1000.0 >= min_overlap_ms
        ]
        if not inside:
            continue
        a_start, a_end = max(inside)
        start_ms = u_start * 1000.0
        next_ms = users[i + 1][0] * 1000.0 if i + 1 < len(users) else math.inf
        lo = math.floor(start_ms)  # the bridge stamps whole milliseconds
        cut = next(
            (c for c in bridge.cuts if c.why == "speech_started" and lo <= c.t_ms < next_ms), None
        )
        clear = _first_in(bridge.clears, lo, next_ms)
        assistant_turn = cut.turn if cut is not None and cut.turn is not None else None
        if assistant_turn is None:
            assistant_turn = _turn_playing_at(turns, start_ms)
        played_end = _played_end(turns, assistant_turn)
        heard_end = a_end if a_end in closed_assistant else None
        stop = u_end if u_end in closed_caller else None
        end, anchor = _yield_end(heard_end, _s(played_end), _s(clear))
        row: dict[str, Any] = {
            "source": "caller",
            "turn": turn,
            "assistant_turn": assistant_turn,
            "caller_start_epoch_ms": _ms(start_ms),
            "bridge_cut": cut is not None,
            "bridge_yield_ms": (
                _ms((clear / 1000.0 - u_start) * 1000.0) if clear is not None else None
            ),
            "anchors": {
                "caller_audio_start": _ms(start_ms),
                "caller_audio_end": _ms(stop * 1000.0) if stop is not None else None,
                "assistant_audio_start": _ms(a_start * 1000.0),
                "assistant_audio_end": _ms(heard_end * 1000.0) if heard_end is not None else None,
                "bridge_barge_in": cut.t_ms if cut is not None else None,
                "bridge_clear": clear,
                "bridge_played_end": _ms(played_end),
            },
        }
        rows.append(_measured(row, u_start, stop, end, anchor))
    return rows


def _caller_utterances(src: _Sources, bridge: _BridgeLog) -> list[tuple[float, float | None]]:
    """The caller's utterances (start, stop epoch ms) as the bridge's files have them."""
    rows = (src.run or {}).get("user_utterances")
    out: list[tuple[float, float | None]] = []
    if isinstance(rows, list):
        for u in rows:
            if isinstance(u, Mapping) and (start := _number(u.get("start_epoch_ms"))) is not None:
                out.append((start, _number(u.get("stop_epoch_ms"))))
    return sorted(out or bridge.speech)


def _bridge_rows(src: _Sources) -> list[dict[str, Any]]:
    """Barge-ins as the bridge logged them (no caller log): its ``speech_started`` cuts."""
    bridge = _bridge_log(src.events)
    utterances = _caller_utterances(src, bridge)
    turns = _turn_rows(src.run)
    rows: list[dict[str, Any]] = []
    for cut in bridge.cuts:
        if cut.why != "speech_started":
            continue
        before = [u for u in utterances if u[0] <= cut.t_ms + 1.0]
        row: dict[str, Any] = {
            "source": "bridge",
            "turn": None,
            "assistant_turn": cut.turn,
            "caller_start_epoch_ms": None,
            "bridge_cut": True,
            "bridge_yield_ms": None,
            "anchors": {
                "caller_audio_start": None,
                "caller_audio_end": None,
                "assistant_audio_start": None,
                "assistant_audio_end": None,
                "bridge_barge_in": cut.t_ms,
                "bridge_clear": _first_in(bridge.clears, cut.t_ms, math.inf),
                "bridge_played_end": _ms(_played_end(turns, cut.turn)),
            },
        }
        if not before:
            row.update(yield_ms=None, overlap_ms=None, yield_anchor=None)
            row["reason"] = "no caller utterance recorded before the bridge's barge_in"
            rows.append(row)
            continue
        start_ms, stop_ms = before[-1]
        anchors = row["anchors"]
        anchors["caller_audio_start"], anchors["caller_audio_end"] = start_ms, stop_ms
        row["caller_start_epoch_ms"] = start_ms
        clear = anchors["bridge_clear"]
        row["bridge_yield_ms"] = _ms(clear - start_ms) if clear is not None else None
        end, anchor = _yield_end(None, _s(anchors["bridge_played_end"]), _s(clear))
        rows.append(_measured(row, start_ms / 1000.0, _s(stop_ms), end, anchor, caller_log=False))
    return rows


def barge_in_rows(
    record_dir: Path | str, *, min_overlap_ms: float = MIN_OVERLAP_MS
) -> list[dict[str, Any]]:
    """One row per barge-in by the caller (it started speaking while an assistant turn played).

    See the module docstring for the anchors. From what the caller heard
    (``user_simulator_events.jsonl``) when the run has it, else from the bridge's files.

    Args:
        record_dir: A record directory (``runs/<run_id>/records/<record_id>/``).
        min_overlap_ms: How far before the end of the assistant audio the caller must start for
            it to count as a barge-in.

    Returns:
        Rows in call order, each with ``source`` (``"caller"`` or ``"bridge"``), ``turn``
        (EVA's turn the caller's utterance opened, as :func:`hydralab.scoring.turn_timeline`
        numbers them; ``None`` from the bridge alone), ``assistant_turn`` (the interrupted
        assistant turn's index in ``run.json`` ``turns``), ``caller_start_epoch_ms``,
        ``yield_ms``, ``yield_anchor``, ``overlap_ms``, ``bridge_yield_ms``, ``bridge_cut``
        (the bridge logged a ``barge_in``), ``anchors`` (every anchor's epoch ms, ``None`` when
        absent) and ``reason`` (why ``yield_ms`` is ``None``, else ``None``). Empty without
        barge-ins.

    Raises:
        MeasureError: ``record_dir`` is not a directory, or holds neither
            ``user_simulator_events.jsonl`` nor ``events.jsonl``.
    """
    src = _load(record_dir)
    return _rows(src, min_overlap_ms)


def _rows(src: _Sources, min_overlap_ms: float) -> list[dict[str, Any]]:
    if src.simulator is not None:
        return _caller_rows(src, min_overlap_ms)
    return _bridge_rows(src)


# ---------------------------------------------------------------------------------------------
# Per conversation
# ---------------------------------------------------------------------------------------------


def _first_event_ms(events: Iterable[Mapping[str, Any]], kind: str, role: str) -> float | None:
    """The earliest ``audio_timestamp`` (epoch ms) of the caller's ``kind`` events for ``role``."""
    stamps = [
        s
        for e in events
        if (e.get("event_type") or e.get("type")) == kind and e.get("user") == role
        if (s := _number(e.get("audio_timestamp"))) is not None
    ]
    return min(stamps) * 1000.0 if stamps else None


def _connected_ms(events: Iterable[Mapping[str, Any]]) -> float | None:
    for e in events:
        data = e.get("data")
        kind = e.get("type") or e.get("event_type")
        connected = isinstance(data, Mapping) and data.get("state") == "connected"
        if kind == "connection_state" and connected:
            return _number(e.get("timestamp"))
    return None


def _time_to_greeting(src: _Sources) -> dict[str, Any]:
    events = src.simulator or []
    start, start_anchor = _connected_ms(events), "call_start"
    if start is None:
        start, start_anchor = _bridge_log(src.events).connected_ms, "bridge_connected"
    heard, end_anchor = _first_event_ms(events, "audio_start", _ASSISTANT), "assistant_audio_start"
    caller_first = _first_event_ms(events, "audio_start", _CALLER)
    if heard is None:
        turns = _turn_rows(src.run)
        greeting = next((t for t in turns if t.get("index") == 0), None)
        if greeting is not None:
            heard = _number(greeting.get("first_played_epoch_ms"))
            end_anchor = "bridge_first_played"
    out: dict[str, Any] = {
        "time_to_greeting_ms": None,
        "time_to_greeting_anchors": {
            "start": start_anchor if start is not None else None,
            "start_epoch_ms": start,
            "end": end_anchor if heard is not None else None,
            "end_epoch_ms": _ms(heard),
        },
        "time_to_greeting_reason": None,
    }
    if start is None:
        out["time_to_greeting_reason"] = (
            "no call start: no connection_state connected in the caller's log and no Twilio"
            " frame in events.jsonl"
        )
    elif heard is None:
        out["time_to_greeting_reason"] = (
            "no first assistant audio: no assistant audio_start in the caller's log and no"
            " first_played_epoch_ms of turn 0 in run.json"
        )
    elif caller_first is not None and caller_first < heard:
        out["time_to_greeting_reason"] = "the caller spoke before any assistant audio"
    else:
        out["time_to_greeting_ms"] = _ms(heard - start)
    return out


def _summary(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return _ms(statistics.fmean(values)), _ms(max(values))


def conversation_measures(
    record_dir: Path | str, *, min_overlap_ms: float = MIN_OVERLAP_MS
) -> dict[str, Any]:
    """Time to greeting and the barge-in summary of one conversation, from its files.

    See the module docstring for the anchors; :func:`barge_in_rows` for the rows.

    Args:
        record_dir: A record directory (``runs/<run_id>/records/<record_id>/``).
        min_overlap_ms: As for :func:`barge_in_rows`.

    Returns:
        ``record_dir``, ``source`` (``"caller"``: the caller's log; ``"bridge"``: the bridge's
        files alone), ``time_to_greeting_ms`` with ``time_to_greeting_anchors`` (start and end
        anchor names and epoch ms) and ``time_to_greeting_reason`` (why it is ``None``),
        ``barge_ins`` (count), ``barge_ins_cut_by_bridge``, ``mean_yield_ms``,
        ``max_yield_ms``, ``mean_overlap_ms``, ``max_overlap_ms``, ``mean_bridge_yield_ms``
        (``None`` without barge-ins with a value; ``yield_n`` / ``overlap_n`` say how many
        rows had one), ``barge_in_rows``, ``definitions`` (:data:`DEFINITIONS`) and
        ``problems`` (files absent or unreadable; empty for a whole run).

    Raises:
        MeasureError: ``record_dir`` is not a directory, or holds neither
            ``user_simulator_events.jsonl`` nor ``events.jsonl``.
    """
    src = _load(record_dir)
    rows = _rows(src, min_overlap_ms)
    yields = [float(r["yield_ms"]) for r in rows if r["yield_ms"] is not None]
    overlaps = [float(r["overlap_ms"]) for r in rows if r["overlap_ms"] is not None]
    bridge_yields = [float(r["bridge_yield_ms"]) for r in rows if r["bridge_yield_ms"] is not None]
    mean_yield, max_yield = _summary(yields)
    mean_overlap, max_overlap = _summary(overlaps)
    return {
        "record_dir": str(src.record_dir),
        "source": "caller" if src.simulator is not None else "bridge",
        **_time_to_greeting(src),
        "barge_ins": len(rows),
        "barge_ins_cut_by_bridge": sum(1 for r in rows if r["bridge_cut"]),
        "mean_yield_ms": mean_yield,
        "max_yield_ms": max_yield,
        "yield_n": len(yields),
        "mean_overlap_ms": mean_overlap,
        "max_overlap_ms": max_overlap,
        "overlap_n": len(overlaps),
        "mean_bridge_yield_ms": _summary(bridge_yields)[0],
        "barge_in_rows": rows,
        "definitions": dict(DEFINITIONS),
        "problems": list(src.problems),
    }
