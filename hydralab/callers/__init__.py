"""Caller policies and personas.

- :mod:`hydralab.callers.personas`: EVA's persona names with hydralab's timing per persona
  (think time, speaking rate, barge-ins, mid-line pauses) and EVA's behaviour text loaded at
  run time from an EVA checkout.
- :mod:`hydralab.callers.llm`: the ``llm`` policy (an OpenAI-compatible chat-completions
  model prompted like EVA's user simulator).

- :mod:`hydralab.callers.rules`: the offline ``rules`` policy (answers what it is asked from
  the record's ``information_required``).

``scripted`` is the caller core's own path (the script's lines in order; no policy object).
"""

from hydralab.callers.llm import (
    END_CALL_TOOL,
    HYDRALAB_TEMPLATE,
    LlmCaller,
    LlmCallerConfig,
    LlmCallerConfigError,
    build_messages,
    load_eva_user_prompt,
)
from hydralab.callers.personas import (
    PERSONA_NAMES,
    PERSONAS,
    Persona,
    PersonaError,
    PersonaTiming,
    load_eva_behaviors,
    load_persona,
    persona_caller_config,
)
from hydralab.callers.rules import RulesCaller

__all__ = [
    "END_CALL_TOOL",
    "HYDRALAB_TEMPLATE",
    "PERSONAS",
    "PERSONA_NAMES",
    "LlmCaller",
    "LlmCallerConfig",
    "LlmCallerConfigError",
    "Persona",
    "PersonaError",
    "PersonaTiming",
    "RulesCaller",
    "build_messages",
    "load_eva_behaviors",
    "load_eva_user_prompt",
    "load_persona",
    "persona_caller_config",
]
