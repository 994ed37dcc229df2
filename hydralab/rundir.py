"""The run directory: EVA-compatible files plus hydralab's own.

``events.jsonl`` is appended line by line while the call runs and flushed to the OS at least
every :data:`EVENTS_FLUSH_MS` of the session clock (and at its end), so a crash leaves a valid
partial log missing at most that much (a flush per row, ~100 rows a second of audio frames,
cost more than the rest of the uplink's logging). The other files are written whole: the
bridge session's through :class:`RunWriter` (``audit_log.json``, ``transcript.jsonl``, the
scenario DBs...) when the session ends, on any exit path; the runner's (``run.json``,
``result.json``, ``config.json``...) through :func:`write_json` / :func:`write_jsonl`. Every
JSON write is atomic (temp file + rename) and passes through
:func:`hydralab.secrets.redact_obj` (skipped for a row whose JSON
:func:`hydralab.secrets.may_hold_secret` clears), so no API key reaches the disk. Files are
created with mode ``0o644`` less the process umask, which this module neither reads nor
changes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from hydralab.secrets import may_hold_secret, redact_obj

__all__ = ["EVENTS_FLUSH_MS", "FILE_MODE", "RunWriter", "write_json", "write_jsonl"]

EVENTS_FLUSH_MS = 100
"""Longest stretch of the session clock ``events.jsonl`` rows wait in the writer's buffer."""
_FLUSH_NS = EVENTS_FLUSH_MS * 1_000_000

FILE_MODE = 0o644
"""Mode of every file written (``os.open`` applies the process umask on top)."""


def _dump(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=str, sort_keys=sort_keys)
    if not may_hold_secret(text):  # nothing redact_obj would change: skip walking every string
        return text
    return json.dumps(
        redact_obj(obj), indent=indent, ensure_ascii=False, default=str, sort_keys=sort_keys
    )


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: it creates 0600, and fixing that afterwards needs the umask.
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, *, sort_keys: bool = False) -> Path:
    """Pretty JSON (``indent=2``, UTF-8 kept), atomically."""
    _atomic_write(path, _dump(obj, sort_keys=sort_keys) + "\n")
    return path


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """One compact JSON object per line, atomically."""
    _atomic_write(path, "".join(_dump(r, indent=None) + "\n" for r in rows))
    return path


class RunWriter:
    """Writes one conversation's directory. ``epoch_ms`` maps the session clock to wall time."""

    def __init__(
        self, directory: Path | str, *, epoch_ms: Callable[[int], int], t0_ns: int
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._epoch_ms = epoch_ms
        self._t0_ns = t0_ns
        self._lock = threading.Lock()
        fd = os.open(self.dir / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        self._events: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8")
        self._flushed_ns = t0_ns

    # ------------------------------------------------------------------ incremental log
    def log(self, src: str, direction: str, frame: dict[str, Any], t_ns: int) -> None:
        """One wire event or bridge event, stamped on the session clock."""
        row = {
            "t_ms": self._epoch_ms(t_ns),
            "rel_ms": round((t_ns - self._t0_ns) / 1e6, 3),
            "src": src,
            "dir": direction,
            "frame": frame,
        }
        line = _dump(row, indent=None) + "\n"
        with self._lock:
            if self._events is not None:
                self._events.write(line)
                self._flush_if_due(t_ns)

    def flush(self, t_ns: int) -> None:
        """Flush ``events.jsonl`` if its oldest unflushed row may be :data:`EVENTS_FLUSH_MS`
        old (the shell calls this on its ticks, so a quiet call's last rows reach the disk)."""
        with self._lock:
            self._flush_if_due(t_ns)

    def _flush_if_due(self, t_ns: int) -> None:
        """(lock held)"""
        if self._events is not None and not 0 <= t_ns - self._flushed_ns < _FLUSH_NS:
            self._events.flush()
            self._flushed_ns = t_ns

    def hydra_frame(self, direction: str, frame: dict[str, Any], t_ns: int) -> None:
        """``FrameLogger`` for :class:`~hydralab.client.HydraClient`."""
        self.log("hydra", direction, frame, t_ns)

    def close(self) -> None:
        with self._lock:
            if self._events is not None:
                self._events.close()
                self._events = None

    # ------------------------------------------------------------------ final files
    def json(self, name: str, obj: Any, *, sort_keys: bool = False) -> Path:
        return write_json(self.dir / name, obj, sort_keys=sort_keys)

    def jsonl(self, name: str, rows: Iterable[Any]) -> Path:
        return write_jsonl(self.dir / name, rows)

    def audit_log(self, transcript: list[dict[str, Any]], messages: list[dict[str, Any]]) -> Path:
        """EVA's ``audit_log.json`` (transcript sorted by timestamp) and ``transcript.jsonl``."""
        ordered = sorted(transcript, key=lambda e: int(e["timestamp"]))
        self.jsonl(
            "transcript.jsonl",
            (
                {"timestamp": e["timestamp"], "type": e["message_type"], "content": e["value"]}
                for e in ordered
                if e["message_type"] in ("user", "assistant")
            ),
        )
        return self.json(
            "audit_log.json",
            {"transcript": ordered, "llm_prompts": [], "conversation_messages": messages},
        )

    def scenario_dbs(self, initial: dict[str, Any], final: dict[str, Any]) -> None:
        self.json("initial_scenario_db.json", initial, sort_keys=True)
        self.json("final_scenario_db.json", final, sort_keys=True)
