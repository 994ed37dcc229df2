"""Caller personas: who the simulated caller is, and how it times its speech.

A :class:`Persona` has two halves:

- **Behaviour text** for an LLM caller's prompt. hydralab carries no persona text of EVA's:
  :attr:`Persona.text` is filled at run time from the user's EVA checkout
  (``<eva_dir>/configs/user_behaviors.yaml``, a mapping of persona name to behaviour text) by
  :func:`load_persona`. Without a checkout, :attr:`Persona.description` (a line in hydralab's
  own words) stands in.
- **Timing** — hydralab's own choices, not EVA's (EVA's personas are prompt text only; its
  simulators have no per-persona timing): how long the caller thinks before answering, how
  fast the TTS speaks, how often it barges into a long assistant turn and when, and how often
  it stops mid-sentence. :class:`PersonaTiming` samples them; every draw comes from the
  ``random.Random`` the caller passes, so a seeded run repeats exactly.

The persona names are EVA's (``default``, ``elderly_slow``, ``aggressive_impatient``,
``forgetful_disorganized``); a name that only the EVA checkout knows is accepted too and gets
the ``default`` timing.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hydralab.caller_core import CallerConfig

if TYPE_CHECKING:
    from hydralab.script import Script

__all__ = [
    "BEHAVIORS_FILE",
    "PERSONAS",
    "PERSONA_NAMES",
    "Persona",
    "PersonaError",
    "PersonaTiming",
    "load_eva_behaviors",
    "load_persona",
    "persona_caller_config",
]

BEHAVIORS_FILE = Path("configs") / "user_behaviors.yaml"
"""Where an EVA checkout keeps its persona texts, relative to the checkout root."""

_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MIN_PAUSE_WORDS = 4  # a line shorter than this is said in one go
_BARGE_IN_CAP = 0.8  # a barge-in lands before this fraction of the assistant turn estimate


class PersonaError(ValueError):
    """An unknown persona name, or an EVA ``user_behaviors.yaml`` that cannot be read."""


def _check_range(name: str, value: tuple[float, float], *, positive: bool = False) -> None:
    lo, hi = value
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi < lo:
        raise ValueError(f"{name} must be a (min, max) pair with 0 <= min <= max, got {value}")
    if positive and lo <= 0:
        raise ValueError(f"{name} must start above 0 ms, got {value}")


@dataclass(frozen=True)
class Persona:
    """A caller persona: behaviour (prompt text) and timing (hydralab's choices).

    Attributes:
        name: EVA's persona name (``default``, ``elderly_slow`` ...).
        description: One line in hydralab's own words; the prompt's persona when :attr:`text`
            is ``None``.
        text: EVA's behaviour text, when loaded from a checkout (:func:`load_persona`).
        source: The ``user_behaviors.yaml`` :attr:`text` came from.
        think_ms: ``(min, max)`` pause before the caller speaks once the assistant's turn has
            ended; sampled uniformly per turn.
        rate_wpm: TTS speaking rate, words per minute.
        barge_in_prob: Chance that the caller interrupts one long assistant turn.
        barge_in_after_ms: ``(min, max)`` of when it interrupts, in ms after the assistant
            turn's first audible audio.
        long_turn_ms: An assistant turn estimated at least this long can be interrupted.
        pause_prob: Chance that one of the caller's lines has a pause in the middle.
        pause_ms: ``(min, max)`` length of that pause.
    """

    name: str
    description: str
    text: str | None = None
    source: Path | None = None
    think_ms: tuple[float, float] = (400.0, 1200.0)
    rate_wpm: int = 175
    barge_in_prob: float = 0.0
    barge_in_after_ms: tuple[float, float] = (3000.0, 6000.0)
    long_turn_ms: float = 4000.0
    pause_prob: float = 0.0
    pause_ms: tuple[float, float] = (300.0, 800.0)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a persona needs a name")
        _check_range("think_ms", self.think_ms)
        _check_range("barge_in_after_ms", self.barge_in_after_ms, positive=True)
        _check_range("pause_ms", self.pause_ms)
        if not 40 <= self.rate_wpm <= 500:
            raise ValueError(f"rate_wpm must be within 40..500, got {self.rate_wpm}")
        for field_name in ("barge_in_prob", "pause_prob"):
            p = getattr(self, field_name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{field_name} must be within 0..1, got {p}")
        if not (math.isfinite(self.long_turn_ms) and self.long_turn_ms >= 0):
            raise ValueError(f"long_turn_ms must be >= 0, got {self.long_turn_ms}")

    @property
    def prompt_text(self) -> str:
        """What an LLM caller's prompt says about the persona: EVA's text, else the
        description."""
        return self.text if self.text else self.description

    @property
    def timing(self) -> PersonaTiming:
        """The persona's timing sampler."""
        return PersonaTiming(self)

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for ``run.json``."""
        return {
            "name": self.name,
            "description": self.description,
            "text_source": str(self.source) if self.text and self.source else None,
            "think_ms": list(self.think_ms),
            "rate_wpm": self.rate_wpm,
            "barge_in_prob": self.barge_in_prob,
            "barge_in_after_ms": list(self.barge_in_after_ms),
            "long_turn_ms": self.long_turn_ms,
            "pause_prob": self.pause_prob,
            "pause_ms": list(self.pause_ms),
        }


# hydralab's choices (not EVA's): EVA's personas are prompt text only. The values follow what
# each persona's name promises — slow speech and long thinking for elderly_slow, fast speech
# and frequent early barge-ins for aggressive_impatient, long searches and mid-line pauses for
# forgetful_disorganized — around a default of brisk, uninterrupted turns.
PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona(
            name="default",
            description=(
                "Direct and brief: wants the task done quickly, skips small talk and gets "
                "irritated by extra steps."
            ),
            think_ms=(300.0, 900.0),
            rate_wpm=180,
            barge_in_prob=0.05,
            barge_in_after_ms=(4000.0, 7000.0),
            long_turn_ms=6000.0,
            pause_prob=0.05,
            pause_ms=(200.0, 500.0),
        ),
        Persona(
            name="elderly_slow",
            description=(
                "An older caller who talks slowly with long pauses, takes time to follow "
                "fast speech and now and then asks the agent to say it again, more slowly."
            ),
            think_ms=(1500.0, 3500.0),
            rate_wpm=120,
            barge_in_prob=0.0,
            barge_in_after_ms=(8000.0, 12000.0),
            long_turn_ms=8000.0,
            pause_prob=0.6,
            pause_ms=(700.0, 1600.0),
        ),
        Persona(
            name="aggressive_impatient",
            description=(
                "Impatient and quick to anger: talks fast, cuts the agent off when it goes on "
                "too long and presses it to hurry up."
            ),
            think_ms=(100.0, 400.0),
            rate_wpm=210,
            barge_in_prob=0.6,
            barge_in_after_ms=(1500.0, 3500.0),
            long_turn_ms=2500.0,
            pause_prob=0.0,
            pause_ms=(150.0, 300.0),
        ),
        Persona(
            name="forgetful_disorganized",
            description=(
                "Scattered and hesitant: fills gaps with um and uh, has to look up codes and "
                "IDs mid-sentence, loses the thread and corrects themselves."
            ),
            think_ms=(1000.0, 2800.0),
            rate_wpm=160,
            barge_in_prob=0.05,
            barge_in_after_ms=(4000.0, 8000.0),
            long_turn_ms=6000.0,
            pause_prob=0.5,
            pause_ms=(800.0, 2500.0),
        ),
    )
}
PERSONA_NAMES: tuple[str, ...] = tuple(PERSONAS)


def load_eva_behaviors(eva_dir: Path | str) -> dict[str, str] | None:
    """EVA's persona texts from ``<eva_dir>/configs/user_behaviors.yaml``.

    Args:
        eva_dir: The EVA checkout root.

    Returns:
        ``{name: text}`` (texts stripped), or ``None`` when the checkout has no such file.

    Raises:
        PersonaError: The file is not YAML, or not a mapping of names to non-empty texts.
    """
    path = Path(eva_dir) / BEHAVIORS_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise PersonaError(f"{path}: malformed YAML{at}; expected 'name: text' entries") from None
    if not isinstance(data, Mapping):
        raise PersonaError(
            f"{path}: expected a mapping of persona name -> behaviour text, "
            f"got {type(data).__name__}"
        )
    texts: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
            raise PersonaError(
                f"{path}: persona {key!r} must map to a non-empty text, got {type(value).__name__}"
            )
        texts[key] = value.strip()
    return texts


def load_persona(name: str = "default", *, eva_dir: Path | str | None = None) -> Persona:
    """The persona ``name``, with EVA's behaviour text when ``eva_dir`` has it.

    Args:
        name: A persona name: one of :data:`PERSONA_NAMES`, or one that only the EVA
            checkout's ``user_behaviors.yaml`` lists (it gets the ``default`` timing).
        eva_dir: An EVA checkout root; its ``configs/user_behaviors.yaml`` is read when it
            exists (a checkout without it leaves :attr:`Persona.text` ``None``).

    Raises:
        PersonaError: ``name`` is unknown (the message lists the known names), or the EVA
            file is malformed. :class:`PersonaError` is a :class:`ValueError`.
    """
    path = Path(eva_dir) / BEHAVIORS_FILE if eva_dir is not None else None
    texts = load_eva_behaviors(eva_dir) if eva_dir is not None else None
    known = PERSONAS.get(name)
    if known is None and (texts is None or name not in texts):
        names = list(PERSONA_NAMES) + [n for n in (texts or {}) if n not in PERSONAS]
        raise PersonaError(f"unknown persona {name!r}; known: {', '.join(names)}")
    if known is None:
        known = dataclasses.replace(
            PERSONAS["default"],
            name=name,
            description=f"EVA persona {name!r} (hydralab has no timing of its own for it)",
        )
    if texts is not None and name in texts:
        return dataclasses.replace(known, text=texts[name], source=path)
    return known


@dataclass(frozen=True)
class PersonaTiming:
    """Samples a persona's timing. Pure: every draw comes from the ``rng`` passed in.

    Args:
        persona: The persona whose timing parameters are sampled.
    """

    persona: Persona

    def sample_think_ms(self, rng: random.Random) -> float:
        """Pause before the caller speaks after the assistant's turn ends (one draw)."""
        lo, hi = self.persona.think_ms
        return rng.uniform(lo, hi)

    def should_barge_in(
        self, rng: random.Random, assistant_turn_ms_estimate: float
    ) -> float | None:
        """Whether, and when, the caller interrupts this assistant turn.

        Always makes two draws (so a different estimate never shifts later draws).

        Args:
            rng: The run's seeded random source.
            assistant_turn_ms_estimate: How long the assistant turn is expected to play.

        Returns:
            ``None``: no barge-in (short turn, or the draw said no). Otherwise the ms after the
            turn's first audible audio at which the caller starts talking (> 0, and before
            80 % of the estimate). Test it with ``is not None``.
        """
        p = self.persona
        roll = rng.random()
        lo, hi = p.barge_in_after_ms
        after = rng.uniform(lo, hi)
        if assistant_turn_ms_estimate < max(p.long_turn_ms, 1.0) or roll >= p.barge_in_prob:
            return None
        return max(1.0, min(after, _BARGE_IN_CAP * assistant_turn_ms_estimate))

    def pause_split(self, text: str, rng: random.Random) -> list[str] | None:
        """Split the caller's line at a mid-sentence pause, or ``None`` to say it in one go.

        The pause goes after a comma in the middle half of the line if there is one, else at a
        word boundary drawn from the middle half. Lines under four words are never split.

        Args:
            text: The caller's line.
            rng: The run's seeded random source.

        Returns:
            ``[before, after]`` (whitespace normalised), or ``None``.
        """
        if rng.random() >= self.persona.pause_prob:
            return None
        words = text.split()
        n = len(words)
        if n < _MIN_PAUSE_WORDS:
            return None
        first, last = max(1, n // 4), min(n - 1, math.ceil(3 * n / 4))
        middle = range(first, last + 1)
        commas = [k for k in middle if re.search(r"[,;:]$", words[k - 1])]
        k = rng.choice(commas or list(middle))
        return [" ".join(words[:k]), " ".join(words[k:])]

    def sample_pause_ms(self, rng: random.Random) -> float:
        """Length of one mid-sentence pause (one draw)."""
        lo, hi = self.persona.pause_ms
        return rng.uniform(lo, hi)

    def speech_ms(self, text: str) -> float:
        """Rough speaking time of ``text`` at the persona's rate (words ÷ rate)."""
        return 60000.0 * len(text.split()) / self.persona.rate_wpm


#: Assistant turns a listening caller's persona timing is drawn for (beyond the script's).
_LISTENING_TURNS = 64
#: A listening caller's estimate of an assistant turn the script does not know, ms.
_UNKNOWN_TURN_MS = 6000.0


def persona_caller_config(
    base: CallerConfig,
    persona: Persona,
    *,
    script: Script | None = None,
    seed: int = 0,
    turns: int | None = None,
) -> CallerConfig:
    """``base`` with ``persona``'s timing drawn for one call (deterministic for ``seed``).

    Sets the speaking rate and, per turn, the think time before each user line
    (``think_ms``), the mid-line pauses (``pause_ms``, at the line's middle) and the barge-ins
    (``barge_in_after_ms``: assistant turns estimated from the script's text at the persona's
    rate; turns beyond the script are taken as long). Every draw happens whether or not it is
    used, so one setting never shifts another's draws.

    Args:
        base: The caller settings to start from (voice, noise, seed, frame size, line).
        persona: Whose timing.
        script: The reference conversation (its assistant texts give the turn estimates and
            its user lines the pause decisions); ``None`` for a listening caller without one.
        seed: Seeds the draws.
        turns: Turns to draw for (default: the script's, or 64 without a script).
    """
    rng = random.Random(f"{seed}:persona:{persona.name}")
    timing = persona.timing
    n = turns if turns is not None else (len(script.assistant_turns) if script else 0)
    n = max(n, _LISTENING_TURNS if script is None else n)
    think: dict[int, float] = {}
    pause: dict[int, float] = {}
    barge: dict[int, float] = dict(base.barge_in_after_ms)
    for i in range(n):
        think[i] = round(timing.sample_think_ms(rng), 1)
        line = script.user_turns[i].spoken if script and i < len(script.user_turns) else ""
        split = timing.pause_split(line, rng) if line else None
        pause_len = timing.sample_pause_ms(rng)
        if split is not None:
            pause[i] = round(pause_len, 1)
        estimate = (
            timing.speech_ms(script.assistant_turns[i].text)
            if script and i < len(script.assistant_turns)
            else _UNKNOWN_TURN_MS
        )
        after = timing.should_barge_in(rng, estimate)
        if after is not None and i > 0 and i not in barge:  # never over the greeting
            barge[i] = round(after, 1)
    return dataclasses.replace(
        base,
        rate_wpm=persona.rate_wpm,
        think_ms=think,
        pause_ms=pause,
        barge_in_after_ms=barge,
    )
