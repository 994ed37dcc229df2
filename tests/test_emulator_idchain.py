"""The emulator chains the reference trace's ids onto the live tools' ids.

A call's ``function_call_output`` is walked beside the script call's ``expected_response`` (the
trace's) and every later call's arguments, and the written text of later speech, carry the live
id (:class:`hydralab.tools.idchain.IdChain`). Driven on the sans-I/O core in virtual time, with
a stand-in renderer for the assistant's speech (no eSpeak, no sockets).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from test_emulator_core import Driver, S

from hydralab.emulator.core import EmulatorConfig, EmulatorSession, SpeechCache
from hydralab.protocol.hydra import ConversationItemCreate, ResponseCreate
from hydralab.script import AssistantSteps, CallTools, Script, Speak, ToolCall
from hydralab.speech.tts import SynthesizedSpeech
from hydralab.tools.idchain import IdChain

TRACE_ID = "INC0048271"
LIVE_ID = "INC4951eb12a732"
CREATE = ToolCall(
    "create_incident_ticket",
    {"employee_id": "EMP037285", "urgency": "medium"},
    expected_response={"status": "success", "ticket_number": TRACE_ID},
)
ASSIGN = ToolCall(
    "assign_sla_tier",
    {"ticket_number": TRACE_ID, "sla_tier": "tier_2"},
    expected_response={"status": "success", "ticket_number": TRACE_ID, "sla_tier": "tier_2"},
)
SPOKEN = "Your ticket is I N C, zero zero four, eight two seven one."
WRITTEN = f"Reference {TRACE_ID} is open."


def _fake_speech(text: str) -> SynthesizedSpeech:
    return SynthesizedSpeech(pcm=np.full(48 * 300, 1000, np.int16), sample_rate_hz=48000)


def _script(*steps: Any) -> Script:
    """Everything happens in the greeting turn: no caller audio is needed to reach it."""
    return Script(greeting="Hello.", user_turns=(), assistant_turns=(AssistantSteps(steps),))


def _session(script: Script, **kwargs: Any) -> Driver:
    session = EmulatorSession(
        script,
        config=EmulatorConfig(output_rate_hz=48000),
        speech=SpeechCache(sample_rate_hz=48000, synthesize=_fake_speech),
        model="hydra-v1.1",
        **kwargs,
    )
    d = Driver(session)
    d.open()
    d.configure(generate_initial_response=True)
    return d


def _calls_done(d: Driver, since: int = 0) -> list[dict[str, Any]]:
    return [f for _, f in d.frames[since:] if f["type"] == "response.function_call_arguments.done"]


def _transcript(d: Driver, since: int = 0) -> str:
    return "".join(
        f["delta"]
        for _, f in d.frames[since:]
        if f["type"] == "response.output_audio_transcript.delta"
    )


def _answer(d: Driver, call_id: str, output: str) -> None:
    d.recv(ConversationItemCreate.function_call_output(call_id, output))
    d.recv(ResponseCreate())


def test_second_call_gets_the_live_id_of_the_first() -> None:
    d = _session(
        _script(Speak("Hello."), CallTools((CREATE,)), CallTools((ASSIGN,)), Speak(SPOKEN))
    )
    d.run_until_type("response.done")
    (create,) = _calls_done(d)
    assert create["name"] == "create_incident_ticket"
    assert json.loads(create["arguments"]) == CREATE.arguments

    live = {"status": "success", "ticket_number": LIVE_ID, "message": f"Ticket created: {LIVE_ID}"}
    mark = len(d.frames)
    _answer(d, create["call_id"], json.dumps(live))
    (learned,) = [g for g in d.s.log if g.kind == "id_chain_learned"]
    assert learned.detail == f"{TRACE_ID} -> {LIVE_ID}" and learned.turn_index == 0
    assert d.s.id_chain.mapping == {TRACE_ID: LIVE_ID}
    assert "id_chain_learned" not in [g.kind for g in d.s.flags]  # not client misbehaviour

    d.run_until_type("response.done")
    (assign,) = _calls_done(d, mark)
    assert json.loads(assign["arguments"]) == {"ticket_number": LIVE_ID, "sla_tier": "tier_2"}
    # the script itself is never changed
    assert ASSIGN.arguments["ticket_number"] == TRACE_ID

    mark = len(d.frames)
    _answer(d, assign["call_id"], json.dumps({"status": "success", "ticket_number": LIVE_ID}))
    d.run_until_type("response.done")
    assert _transcript(d, mark) == SPOKEN  # an id spelled out for speech is left alone
    assert [g.kind for g in d.s.log].count("id_chain_learned") == 1


def test_written_ids_in_speech_are_chained() -> None:
    d = _session(_script(CallTools((CREATE,)), Speak(WRITTEN)))
    d.run_until_type("response.done")
    (create,) = _calls_done(d)
    mark = len(d.frames)
    _answer(d, create["call_id"], {"ticket_number": LIVE_ID})  # type: ignore[arg-type]
    d.run_until_type("response.done")
    assert _transcript(d, mark) == f"Reference {LIVE_ID} is open."


def test_nothing_learned_without_an_expected_response_or_json() -> None:
    bare = ToolCall(CREATE.name, CREATE.arguments)  # e.g. a call recovered from agent text
    d = _session(_script(CallTools((bare,)), CallTools((ASSIGN,)), Speak("Done.")))
    d.run_until_type("response.done")
    (create,) = _calls_done(d)
    mark = len(d.frames)
    _answer(d, create["call_id"], json.dumps({"ticket_number": LIVE_ID}))
    d.run_until_type("response.done")
    (assign,) = _calls_done(d, mark)
    assert json.loads(assign["arguments"])["ticket_number"] == TRACE_ID
    assert "id_chain_learned" not in d.s.kinds() and not d.s.id_chain

    d = _session(_script(CallTools((CREATE,)), Speak("Done.")))
    d.run_until_type("response.done")
    (create,) = _calls_done(d)
    _answer(d, create["call_id"], "ticket created, not JSON")
    d.run_for(5 * S)
    assert "id_chain_learned" not in d.s.kinds() and not d.s.id_chain


def test_a_shared_chain_carries_across_sessions() -> None:
    chain = IdChain()
    chain.learn({"ticket_number": TRACE_ID}, {"ticket_number": LIVE_ID})
    d = _session(_script(CallTools((ASSIGN,)), Speak("Done.")), id_chain=chain)
    assert d.s.id_chain is chain
    d.run_until_type("response.done")
    (assign,) = _calls_done(d)
    assert json.loads(assign["arguments"])["ticket_number"] == LIVE_ID
