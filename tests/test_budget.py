"""The ``session.configure`` byte budget: exact sizes, step order, clean cuts, EVA domains."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from needs import needs_speech

from hydralab.client import HydraClient, HydraConfig
from hydralab.emulator import Emulator
from hydralab.protocol.budget import (
    CONFIGURE_CEILING_BYTES,
    GREETING_STEER_PREFIX,
    BudgetResult,
    ConfigureTooLargeError,
    configure_bytes,
    default_dumps_bytes,
    first_sentence,
    fit_configure,
    greeting_steer,
    plan_configure,
)
from hydralab.protocol.hydra import EVENT_ID_LEN, SessionConfigure
from hydralab.records import build_instructions, load_agent_config, load_record
from hydralab.runner import run_record
from hydralab.script import AssistantSteps, Script, Speak
from hydralab.tools import declarations

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
needs_eva = pytest.mark.skipif(
    not (EVA_DIR / "configs" / "agents").is_dir(), reason="shared EVA checkout not present"
)
STEER = greeting_steer("Hello! How can I help you today?")
GEN = {"generate_initial_response": True}


def wire_len(session: dict[str, Any]) -> int:
    """Independent reference: the frame as the client serializes it, in UTF-8 bytes."""
    frame = {"type": "session.configure", "event_id": "e" * EVENT_ID_LEN, "session": session}
    return len(json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def tool(name: str, desc: str, **params: str) -> dict[str, Any]:
    props = {k: {"type": "string", "description": v} for k, v in params.items()}
    return {
        "type": "function",
        "name": name,
        "description": desc,
        "parameters": {"type": "object", "properties": props, "required": list(params)[:1]},
    }


def body_of(r: BudgetResult, steer: str = STEER) -> str:
    text = r.session["instructions"]
    assert text.endswith(steer)
    return str(text[: len(text) - len(steer)]).rstrip()


# ---------------------------------------------------------------- exact bytes


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii",
        "it’s — café é ü 漢字 😀 done",
        'quotes " and \\ backslash, newline\nand tab\t and \x01 control',
        "",
    ],
)
def test_configure_bytes_is_byte_exact(text: str) -> None:
    s = {"instructions": text, "tools": [tool("t", text, a=text)], "voice": "émilie"}
    sent = SessionConfigure(session=s, event_id="e" * EVENT_ID_LEN).dumps().encode("utf-8")
    assert configure_bytes(s) == len(sent) == wire_len(s)


def test_escapes_and_utf8_counted_as_sent() -> None:
    base = configure_bytes({"instructions": ""})
    for ch, wire in [("é", 2), ("’", 3), ("—", 3), ("😀", 4), ("\n", 2), ('"', 2), ("\\", 2)]:
        assert configure_bytes({"instructions": ch}) - base == wire, ch
    # json.dumps defaults (what the PR measured) escape non-ASCII to \uXXXX: 6 bytes, 12 for 😀.
    s = {"instructions": "’😀"}
    assert (
        default_dumps_bytes(s) - configure_bytes(s) == (6 - 3) + (12 - 4) + 2 + 4
    )  # two ", ", four ": " (the client's event_id is one more key)


def test_fit_bytes_match_serialization_with_non_ascii() -> None:
    instr = 'Café policy — it’s “strict”.\n\nSay "hi" 😀.\n\n' * 50
    tools = [
        tool(f"t{i}", f"t{i}: Does thing {i} — fast’ly. More text.", a="é" * 40) for i in range(5)
    ]
    for ceiling in (100_000, 6_000, 2_000, 700):
        r = fit_configure(instr, tools, greeting_steer=STEER, ceiling_bytes=ceiling)
        assert r.bytes == configure_bytes(r.session) == wire_len(r.session)
        assert r.fits == (r.bytes <= ceiling)


@needs_speech
async def test_client_sends_exactly_the_budgeted_frame() -> None:
    script = Script(
        greeting="Hi.", user_turns=(), assistant_turns=(AssistantSteps((Speak("Hi."),)),)
    )
    r = plan_configure(
        'Be brief — it’s a café 😀.\n\nSay "yes".',
        [tool("get_x", "get_x: Gets x.", a="An é param.")],
        greeting_steer=STEER,
        other_fields={"generate_initial_response": False},
    )
    async with Emulator(script) as emu:
        cfg = HydraConfig(
            url=emu.url, model="hydra-v1.1", instructions="ignored", session=r.session
        )
        async with HydraClient(cfg, api_key="k") as client:
            assert client.configure_bytes == r.bytes
        assert emu.sessions[0].configure_bytes == r.bytes
        sent = next(f for f in emu.sessions[0].frames_in if f.get("type") == "session.configure")
        assert sent["session"]["instructions"] == r.session["instructions"]


# ---------------------------------------------------------------- steps


def big_tools(n: int = 12) -> list[dict[str, Any]]:
    long = "This parameter is described at length, with clauses, caveats and examples. " * 3
    return [
        tool(
            f"tool_{i}",
            f"tool_{i}: Does the {i}th thing for the caller, carefully and completely, with "
            "every check that the policy requires before it changes anything. Second sentence.",
            code=long,
            reason="Why. " + long,
        )
        for i in range(n)
    ]


def test_nothing_done_when_it_fits() -> None:
    tools = big_tools(2)
    r = fit_configure("Short policy.", tools, greeting_steer=STEER)
    assert [s.step for s in r.steps] == ["minify"]
    assert r.steps[0].bytes_before > r.steps[0].bytes_after == r.bytes
    assert r.fits and r.standard and not r.tools_compacted and r.instructions_cut_chars == 0
    assert r.session["tools"] == tools
    assert r.session["instructions"] == "Short policy.\n\n" + STEER


def test_steps_run_in_order_and_only_as_far_as_needed() -> None:
    tools = big_tools()
    text = "Policy. " * 20
    full = fit_configure(text, tools, greeting_steer=STEER, ceiling_bytes=10**6)
    order = [
        "minify",
        "drop_name_prefix",
        "param_descriptions_120",
        "tool_descriptions_120",
        "param_descriptions_60",
        "tool_descriptions_60",
        "drop_param_descriptions",
        "drop_tool_descriptions",
        "cut_instructions",
    ]
    seen = []
    for ceiling in range(full.bytes, 500, -23):
        r = fit_configure(text, tools, greeting_steer=STEER, ceiling_bytes=ceiling)
        names = [s.step for s in r.steps]
        assert names == order[: len(names)]
        for a, b in zip(r.steps, r.steps[1:], strict=False):
            assert a.bytes_after == b.bytes_before and b.bytes_after <= b.bytes_before
        assert r.steps[-1].bytes_after == r.bytes
        if r.fits and len(names) > 1:  # stopped at the first step that fits
            assert r.steps[-2].bytes_after > ceiling >= r.steps[-1].bytes_after
        seen.append(names[-1])
    assert set(seen) >= set(order[1:])  # every step was reached at some ceiling


def test_prefix_drop_is_standard_and_compaction_keeps_schema() -> None:
    tools = big_tools()
    ceiling = fit_configure("P.", tools, greeting_steer=STEER).bytes - 10
    r = fit_configure("P.", tools, greeting_steer=STEER, ceiling_bytes=ceiling)
    assert [s.step for s in r.steps] == ["minify", "drop_name_prefix"]
    assert r.fits and r.standard and not r.tools_compacted
    assert r.session["tools"][0]["description"].startswith("Does the 0th thing")
    tiny = fit_configure("P.", tools, greeting_steer=STEER, ceiling_bytes=2_500)
    assert tiny.tools_compacted and not tiny.standard
    for before, after in zip(tools, tiny.session["tools"], strict=True):
        assert "description" not in after
        assert after["name"] == before["name"]
        assert after["parameters"]["required"] == before["parameters"]["required"]
        for k, p in after["parameters"]["properties"].items():
            assert p == {"type": before["parameters"]["properties"][k]["type"]}
    assert tools[0]["description"].startswith("tool_0: ")  # input never mutated


def test_enums_and_items_survive_compaction() -> None:
    t = {
        "type": "function",
        "name": "pick",
        "description": "Pick one.",
        "parameters": {
            "type": "object",
            "properties": {
                "cabin": {"type": "string", "description": "Cabin.", "enum": ["a", "b"]},
                "ids": {"type": "array", "description": "IDs.", "items": {"type": "string"}},
            },
            "required": ["cabin"],
        },
    }
    r = fit_configure("x", [t], greeting_steer="", ceiling_bytes=10)
    props = r.session["tools"][0]["parameters"]["properties"]
    assert props == {
        "cabin": {"type": "string", "enum": ["a", "b"]},
        "ids": {"type": "array", "items": {"type": "string"}},
    }
    assert r.session["tools"][0]["parameters"]["required"] == ["cabin"]
    assert not r.fits and r.reason


def test_first_sentence() -> None:
    assert (
        first_sentence("Add a bag (eg. ['X']). Then more.", max_chars=120)
        == "Add a bag (eg. ['X'])."
    )
    assert first_sentence("Ask J. Smith first. Then.", max_chars=120) == "Ask J. Smith first."
    s = first_sentence("word " * 40, max_chars=60)
    assert len(s) <= 60 and s.endswith("word…")
    assert first_sentence("Multi\n  line   text", max_chars=120) == "Multi line text"


# ---------------------------------------------------------------- instruction cuts

POLICY = """## Authentication
Ask for the code and the last name. Verify both before anything else.

## Changes
A voluntary change costs seventy-five dollars. Business and First pay no fee.

The fare difference is added when the new fare is higher. Tell the caller the total first.

## Refunds
Refundable fares are refunded in full. Non-refundable fares become a travel credit, e.g. for
the fare minus the fee. Always confirm before you cancel anything at all."""


def cut(instructions: str, ceiling: int, steer: str = STEER) -> BudgetResult:
    return fit_configure(instructions, [], greeting_steer=steer, ceiling_bytes=ceiling)


def test_cut_at_section_boundary_keeps_steer() -> None:
    full = cut(POLICY, 10**6).bytes
    r = cut(POLICY, full - 200)
    assert r.fits and not r.standard and r.cut_at in ("section", "paragraph")
    body = body_of(r)
    assert POLICY.startswith(body) and body.endswith(".")
    assert POLICY[len(body) :].startswith("\n\n")
    assert r.session["instructions"] == body + "\n\n" + STEER
    assert r.instructions_cut_chars == len(POLICY) - len(body)
    assert r.steps[-1].step == "cut_instructions"


def test_cut_never_ends_on_a_heading() -> None:
    full = cut(POLICY, 10**6).bytes
    for ceiling in range(full, 300, -7):
        r = cut(POLICY, ceiling)
        body = body_of(r)
        assert POLICY.startswith(body)
        if body:
            last = body.splitlines()[-1]
            assert not last.startswith("#")
            assert body.endswith((".", "!", "?")), body[-40:]


def test_cut_falls_back_to_a_sentence_boundary() -> None:
    para = " ".join(f"Sentence number {i} says something, e.g. about fees." for i in range(60))
    full = cut(para, 10**6).bytes
    r = cut(para, full - 300)
    body = body_of(r)
    assert r.fits and r.cut_at == "sentence"
    assert para.startswith(body) and body.endswith("about fees.")
    assert para[len(body)] == " "


def test_cut_everything_but_the_steer() -> None:
    r = cut("One long sentence without any end " * 20, configure_bytes({"instructions": STEER}) + 5)
    assert r.fits and r.cut_at == "all" and r.session["instructions"] == STEER


def test_steer_already_in_instructions_is_kept_in_place() -> None:
    text = POLICY + "\n\n" + STEER
    assert cut(text, 10**6).session["instructions"] == text
    r = cut(text, cut(text, 10**6).bytes - 150)
    assert r.session["instructions"].endswith("\n\n" + STEER)
    assert r.session["instructions"].count(GREETING_STEER_PREFIX) == 1


def test_no_fit_is_reported_never_silent() -> None:
    r = fit_configure(POLICY, big_tools(), greeting_steer=STEER, ceiling_bytes=200)
    assert not r.fits and r.bytes > 200 and r.reason and "200" in r.reason
    assert r.session["instructions"] == STEER


# ---------------------------------------------------------------- policy


def test_plan_standard_refuses_with_clear_message() -> None:
    tools = big_tools()
    with pytest.raises(ConfigureTooLargeError) as info:
        plan_configure(POLICY, tools, greeting_steer=STEER, ceiling_bytes=3_000)
    msg = str(info.value)
    assert "3,000" in msg and "mode='compacted'" in msg and "silently drops" in msg
    assert f"{info.value.result.bytes:,}" in msg
    assert info.value.compacted is not None and info.value.compacted.fits
    r = plan_configure(POLICY, tools, greeting_steer=STEER, ceiling_bytes=3_000, mode="compacted")
    assert r.fits and not r.standard and r.mode == "compacted"
    assert r.to_dict()["label"] == "non-standard (compacted)"
    with pytest.raises(ConfigureTooLargeError, match="even compacted"):
        plan_configure(POLICY, tools, greeting_steer=STEER, ceiling_bytes=100, mode="compacted")
    with pytest.raises(ValueError, match="unknown configure mode"):
        plan_configure(POLICY, tools, greeting_steer=STEER, mode="lossy")  # type: ignore[arg-type]


def test_to_dict_is_json_and_complete() -> None:
    r = plan_configure(POLICY, big_tools(2), greeting_steer=STEER, other_fields=GEN)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["bytes"] == r.bytes and d["ceiling_bytes"] == CONFIGURE_CEILING_BYTES
    assert d["standard"] and d["fits"] and d["mode"] == "standard"
    assert d["steps"][0]["step"] == "minify" and len(d["frame_sha256"]) == 64
    assert d["instructions_bytes"] + d["tools_bytes"] < d["bytes"]


async def test_run_record_refuses_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(ConfigureTooLargeError, match="mode='compacted'"):
        await run_record(out_dir=tmp_path, configure_ceiling_bytes=5_000, transcriber=None)
    assert not any(tmp_path.iterdir())


def test_own_default_record_fits_standard() -> None:
    rec = load_record()
    r = plan_configure(
        build_instructions(rec),
        declarations(rec.agent),
        greeting_steer=greeting_steer(rec.greeting),
        other_fields=GEN,
    )
    assert r.standard and r.fits and r.session["instructions"] == build_instructions(rec)


# ---------------------------------------------------------------- EVA domains


def eva_config(domain: str) -> tuple[str, list[dict[str, Any]], str]:
    """EVA's realtime prompt (rendered with airline's first record date), tools, steer."""
    prompts = yaml.safe_load((EVA_DIR / "configs/prompts/simulation.yaml").read_text("utf-8"))
    agent = load_agent_config(EVA_DIR / f"configs/agents/{domain}_agent.yaml")
    date = "2026-03-17 10:45 CST"
    dataset = EVA_DIR / "data" / "airline_dataset.json"
    if dataset.is_file():
        date = json.loads(dataset.read_text("utf-8"))[0]["current_date_time"]
    prompt = prompts["realtime_agent"]["system_prompt"].format(
        agent_personality=agent.raw["description"],
        agent_instructions=agent.raw["instructions"],
        datetime=date,
    )
    greetings = yaml.safe_load(
        (EVA_DIR / "configs/agents/initial_messages.yaml").read_text("utf-8")
    )
    return prompt, declarations(agent), greeting_steer(greetings["en"])


@needs_eva
def test_eva_airline_is_sent_unchanged() -> None:
    prompt, tools, steer = eva_config("airline")
    assert len(tools) == 15
    r = plan_configure(prompt, tools, greeting_steer=steer, other_fields=GEN)
    assert r.fits and r.standard and r.mode == "standard"
    assert r.session == {"instructions": prompt.rstrip() + "\n\n" + steer, "tools": tools, **GEN}
    assert [s.step for s in r.steps] == ["minify"]
    # (+34 / +32 bytes since the client puts an 18-character event_id on session.configure)
    assert (r.default_dumps_bytes, r.bytes) == (23_032, 22_437)


# domain: (standard bytes, step sizes after each compaction step, final bytes, chars cut)
EVA_MEASURED = {
    "itsm": (73_210, [70_222, 62_249, 61_343, 60_504, 50_938, 46_784], 31_890, 14_631),
    "medical_hr": (64_815, [56_069, 51_760, 50_914, 49_679, 42_192, 38_728], 31_808, 6_744),
}


@needs_eva
@pytest.mark.parametrize("domain", sorted(EVA_MEASURED))
def test_eva_large_domains_refused_standard_fit_compacted(domain: str) -> None:
    prompt, tools, steer = eva_config(domain)
    standard_bytes, tool_steps, final_bytes, cut_chars = EVA_MEASURED[domain]
    with pytest.raises(ConfigureTooLargeError) as info:
        plan_configure(prompt, tools, greeting_steer=steer, other_fields=GEN)
    assert info.value.result.bytes == standard_bytes
    assert f"{standard_bytes:,} bytes" in str(info.value) and "mode='compacted'" in str(info.value)

    r = plan_configure(prompt, tools, greeting_steer=steer, other_fields=GEN, mode="compacted")
    names = [s.step for s in r.steps]
    assert names[-1] == "cut_instructions" and names[-2] == "drop_tool_descriptions"
    assert [s.bytes_after for s in r.steps[2:-1]] == tool_steps
    # Full instructions cannot fit even with every tool description dropped:
    assert tool_steps[-1] > CONFIGURE_CEILING_BYTES
    assert (r.bytes, r.instructions_cut_chars) == (final_bytes, cut_chars)
    assert r.fits and not r.standard and r.tools_compacted and r.cut_at == "paragraph"
    body = body_of(r, steer)
    assert prompt.startswith(body) and body.endswith(".")
    assert [t["name"] for t in r.session["tools"]] == [t["name"] for t in tools]


# ---------------------------------------------------------------- property

words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
    min_size=1,
    max_size=12,
)
sentence = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(words, min_size=1, max_size=8),
    st.sampled_from([".", "!", "?", "", ":"]),
)
paragraph = st.builds(" ".join, st.lists(sentence, min_size=1, max_size=5))
block = st.one_of(paragraph, st.builds(lambda p: "## " + p, words))
instructions = st.one_of(
    st.builds("\n\n".join, st.lists(block, max_size=12)),
    st.builds("\n".join, st.lists(block, max_size=12)),
    st.text(max_size=400),
)
tools_st = st.lists(
    st.builds(
        lambda name, desc, params: tool(name, desc, **params),
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
        st.one_of(paragraph, st.text(max_size=80)),
        st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), paragraph, max_size=3),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=instructions,
    tools=tools_st,
    greeting=st.one_of(st.just(""), words),
    ceiling=st.integers(50, 4_000),
    allow=st.booleans(),
)
def test_never_silently_over(
    text: str, tools: list[dict[str, Any]], greeting: str, ceiling: int, allow: bool
) -> None:
    steer = greeting_steer(greeting) if greeting else ""
    r = fit_configure(
        text, tools, greeting_steer=steer, ceiling_bytes=ceiling, allow_compaction=allow
    )
    assert r.bytes == configure_bytes(r.session) == wire_len(r.session)
    assert r.fits == (r.bytes <= ceiling)
    assert r.fits or (r.reason and f"{ceiling:,}" in r.reason)
    assert r.standard == (r.instructions_cut_chars == 0 and not r.tools_compacted)
    out = r.session["instructions"]
    if steer:
        assert out.endswith(steer)
        body = out[: len(out) - len(steer)].rstrip()
        assert text.rstrip().startswith(body)
        if body and r.instructions_cut_chars:
            assert not re.search(r"(^|\n)[ \t]*#{1,6}[ \t][^\n]*$", body)  # no dangling heading
    if not allow:
        assert r.standard and out.startswith(text.rstrip())
    assert [t["name"] for t in r.session.get("tools", [])] == [t["name"] for t in tools]
