"""The ``rules`` caller: offline, deterministic, it answers what it is asked.

No network and no model: each turn it reads what it heard and, in this order,

1. the greeting → the record's starting utterance;
2. nothing heard (silence, or STT found nothing) → asks to repeat (three in a row → goodbye);
3. a closing ("anything else", "have a great day", ...) → says goodbye and ends the call
   (EVA's ``end_call``);
4. a request for items of the record's ``information_required`` → gives exactly those values,
   codes spelled as a caller spells them (``"Z K 3 F F W"``), dates and money as said;
5. a yes/no offer ("would you like me to ...", "shall I ...") → checks what it can check
   mechanically against the goal's ``must_have_criteria`` (money amounts: the heard price must
   not exceed the criteria's; dates: a heard date must be one the criteria name) and confirms
   or declines with the reason;
6. otherwise, when the turn is one of the reference conversation's (a heard text close to one
   of the trace's agent lines) → that line's reference answer;
7. otherwise → asks to repeat.

The item names of ``information_required`` are the record's own (``"Booking confirmation
number"``, ``"employee_id"``); a question asks for an item when it names it (the key's words,
or a common synonym: "booking code", "record locator", "ID", "last four"). What the caller
answered, and why, is in each :class:`~hydralab.policy.Reply` (``slots``, ``reason``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hydralab.policy import Exchange, Heard, Reply
from hydralab.records import Record
from hydralab.script import Script, slots_in
from hydralab.speech.text import spoken_form

__all__ = ["RulesCaller"]

_WORD = re.compile(r"[a-z0-9]+")
_CLOSING = (
    "anything else",
    "have a great",
    "have a good",
    "have a nice",
    "have a wonderful",
    "goodbye",
    "good bye",
    "thank you for calling",
    "thanks for calling",
    "take care",
)
_ASKING = (
    "may i have",
    "can i have",
    "could i have",
    "could you",
    "can you",
    "would you",
    "please provide",
    "please tell",
    "please give",
    "please confirm",
    "please spell",
    "tell me",
    "give me",
    "what is",
    "what's",
    "whats",
    "which",
    "repeat",
    "confirm your",
    "verify",
    "need your",
    "need the",
    "need a",
    "provide",
)
_OFFER = (
    "would you like",
    "shall i",
    "should i",
    "do you want",
    "can i go ahead",
    "may i go ahead",
    "do i have your",
    "is that okay",
    "is that ok",
    "does that work",
    "would that work",
    "go ahead and",
    "want me to",
    "like me to",
    "proceed",
)
#: Words of an item name that say nothing about which item it is.
_GENERIC = frozenset(
    {"the", "a", "of", "your", "if", "asked", "number", "name", "details", "info", "usd", "local"}
)
#: Spoken names of items beyond their own words (question word -> item words it implies).
_SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "confirmation": ("booking code", "booking reference", "record locator", "reference number"),
    "employee": ("employee id", "staff id", "badge"),
    "phone": ("phone number", "telephone", "callback number", "last four"),
    "four": ("last four", "last 4"),
    "birth": ("date of birth", "birthday", "birth date", "dob"),
    "email": ("email address", "e-mail"),
    "npi": ("npi", "provider number", "national provider"),
    "otp": ("code we sent", "verification code", "one-time", "one time", "otp"),
    "pin": ("pin",),
    "facility": ("facility code", "facility"),
    "building": ("building", "where should", "deliver"),
    "floor": ("floor",),
    "first": ("first name",),
    "last": ("last name", "surname", "family name"),
}
#: A goodbye however the STT spelled it ("goodbye", "good by", "bye").
_BYE = re.compile(r"\b(?:good ?bye|good by|bye)\b")
#: Single words that name one item on their own.
_STRONG_WORDS = frozenset({"npi", "pin", "otp", "dob", "email", "surname", "badge"})
_MONEY = re.compile(r"\$\s?(\d[\d,]*(?:\.\d+)?)|(\d[\d,]*(?:\.\d+)?)\s*dollars?")
#: A read-back to confirm ("March 25th, correct?").
_CONFIRM = ("correct", "is that right", "that right", "did i get that", "just to be sure")
_SORRY = (
    "Sorry, I didn't catch that. Could you say it again?",
    "I'm sorry, could you repeat that?",
    "Sorry, what was that?",
)
_GOODBYE = "No, that's everything. Thank you, goodbye."


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _item_words(key: str) -> list[str]:
    return [w for w in _words(key.replace("_", " ")) if w not in _GENERIC]


def _leaf_text(value: Any) -> str | None:
    """A value a caller can say in one breath (strings, numbers; a dict's first choice)."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Mapping):
        for key in ("first_choice", "value", "name"):
            if key in value and _leaf_text(value[key]) is not None:
                return _leaf_text(value[key])
    return None


def _amounts(text: str) -> list[float]:
    out = []
    for m in _MONEY.finditer(text.lower()):
        raw = (m.group(1) or m.group(2) or "").replace(",", "")
        try:
            out.append(float(raw))
        except ValueError:
            continue
    return out


class RulesCaller:
    """The offline ``rules`` policy for one call of ``record``.

    Args:
        record: The record (its resolved ``user_goal`` and starting utterance).
        script: The reference conversation (default: none; the record's trace gives it when
            loaded with :func:`hydralab.script.script_from_record`): its agent lines let the
            caller recognise a reference turn and answer as the reference user did.
        seed: Seeds the wording of "say again" (deterministic per seed).
    """

    name = "rules"

    def __init__(self, record: Record, *, script: Script | None = None, seed: int = 0) -> None:
        self.record = record
        goal = record.user_goal if isinstance(record.user_goal, Mapping) else {}
        info = goal.get("information_required")
        self.information: dict[str, Any] = dict(info) if isinstance(info, Mapping) else {}
        tree = goal.get("decision_tree")
        musts = tree.get("must_have_criteria") if isinstance(tree, Mapping) else None
        self.criteria: list[str] = [str(c) for c in musts] if isinstance(musts, list) else []
        self.script = script
        self._rng = random.Random(f"{seed}:rules")
        self._unheard = 0

    # ------------------------------------------------------------------ the policy
    def decide(self, heard: Heard, history: Sequence[Exchange]) -> Reply:
        text = heard.text.strip()
        low = " ".join(_words(text))
        if heard.index == 0:
            return Reply(self.record.starting_utterance, reason="opening")
        if not low:
            self._unheard += 1
            if self._unheard >= 3:
                return Reply("I can't hear you. I'll call back later, goodbye.", end_call=True,
                             reason="goodbye: nothing heard three times")  # fmt: skip
            return Reply(self._rng.choice(_SORRY), reason="repeat: nothing heard")
        self._unheard = 0
        reference = self._reference_reply(low, min_score=0.6)
        if reference is not None:
            return reference
        slots = self.asked_items(low)
        asking = any(cue in low for cue in _ASKING) or text.rstrip().endswith("?")
        if slots and asking:
            return self._give(slots)
        if any(cue in low for cue in _CONFIRM):
            return self._confirm(text)
        if any(cue in low for cue in _OFFER):
            return self._answer_offer(text)
        if any(cue in low for cue in _CLOSING) or _BYE.search(low):
            return Reply(_GOODBYE, end_call=True, reason="goodbye")
        reference = self._reference_reply(low, min_score=0.35)
        if reference is not None:
            return reference
        if slots:
            return self._give(slots)
        return Reply(self._rng.choice(_SORRY), reason="repeat: not understood")

    # ------------------------------------------------------------------ parts
    def asked_items(self, heard: str) -> tuple[str, ...]:
        """The ``information_required`` keys ``heard`` names, in the record's order."""
        low = f" {' '.join(_words(heard))} "
        found: list[str] = []
        for key, value in self.information.items():
            if _leaf_text(value) is None:
                continue
            full = _words(key.replace("_", " "))
            distinct = _item_words(key)
            if not distinct:
                continue
            phrases = [" ".join(full), " ".join(full[-2:])]
            if len(distinct) > 1:
                phrases.append(" ".join(distinct))
            phrases += [" ".join(_words(syn)) for w in distinct for syn in _SYNONYMS.get(w, ())]
            # a single word alone ("first", "phone") is too weak a cue; two words or a synonym
            if any(len(p.split()) > 1 or p in _STRONG_WORDS for p in phrases if f" {p} " in low):
                found.append(key)
        return tuple(found)

    def _give(self, keys: Sequence[str]) -> Reply:
        parts, spoken = [], []
        for key in keys:
            value = _leaf_text(self.information[key])
            if value is None:
                continue
            label = " ".join(_words(key.replace("_", " ")))
            parts.append(f"my {label} is {value}")
            spoken.append(f"my {label} is {spoken_form(value)}")
        sentence, said = "; ".join(parts), "; ".join(spoken)
        return Reply(
            sentence[:1].upper() + sentence[1:] + ".",
            spoken=said[:1].upper() + said[1:] + ".",
            slots=tuple(keys),
            reason="asked: " + ", ".join(keys),
        )

    def _confirm(self, heard: str) -> Reply:
        """A read-back: confirm it, restating the items it read back (so the agent hears them
        again); an amount over the criteria's limit is corrected instead."""
        offer = self._answer_offer(heard)
        if offer.reason.startswith("decline"):
            return offer
        keys = [k for k in slots_in(heard, self.information) if _leaf_text(self.information[k])]
        if not keys:
            return Reply("Yes, that's right.", reason="confirm")
        given = self._give(keys)
        return Reply(
            "Yes, that's right. " + given.text,
            spoken="Yes, that's right. " + (given.spoken or given.text),
            slots=given.slots,
            reason="confirm: " + ", ".join(keys),
        )

    def _answer_offer(self, heard: str) -> Reply:
        offered = _amounts(heard)
        limits = [a for c in self.criteria for a in _amounts(c)]
        if offered and limits and max(offered) > max(limits) + 0.005:
            return Reply(
                f"No, that's more than I can pay. I need it to be ${max(limits):g} or less.",
                reason=f"decline: ${max(offered):g} over ${max(limits):g}",
            )
        return Reply("Yes, please go ahead.", reason="confirm")

    def _reference_reply(self, heard: str, *, min_score: float) -> Reply | None:
        """The reference user's answer when ``heard`` is one of the reference agent lines;
        the reference's last agent line (nothing follows it) → hang up."""
        if self.script is None:
            return None
        said = set(_words(heard))
        best, best_score = None, 0.0
        for i, turn in enumerate(self.script.assistant_turns):
            words = set(_words(turn.text))
            if i == 0 or not words:
                continue
            score = len(said & words) / len(said | words)
            if score > best_score:
                best, best_score = i, score
        if best is None or best_score < min_score:
            return None
        if best >= len(self.script.user_turns):
            return Reply("", end_call=True, reason=f"goodbye: reference turn {best} ends the call")
        return Reply(self.script.user_turns[best].text, reason=f"script: turn {best}")
