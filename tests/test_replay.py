"""The Hydra frame replayer (:mod:`hydralab.replay`), fixtures, and ``--hydra-url``.

Core tests drive :class:`ReplaySession` in virtual time; server tests use real sockets on
127.0.0.1; the end-to-end test runs ``python -m hydralab run --model hydra --hydra-url`` against a
:class:`ReplayServer` scripted as the documented Hydra flow.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hydralab.batch import run_batch
from hydralab.client import HYDRA_URL
from hydralab.records import DEFAULT_DATA_DIR
from hydralab.replay import (
    Close,
    Closing,
    Expect,
    Fixture,
    FixtureError,
    Outgoing,
    ReplayServer,
    ReplaySession,
    Send,
    SendAudio,
    Sleep,
    Step,
    WaitAudio,
    WaitSpeechEnd,
    WaitSpeechStart,
    fixture_header,
    load_fixture,
    parse_fixture,
    steps_from_fixture,
    write_fixture,
)
from hydralab.runner import HYDRA_URL_ENV, check_hydra_url, resolve_hydra_url, run_record

MS = 1_000_000  # ns
RATE = 16_000
CANARY = "sk-canary-" + secrets.token_hex(12)
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- helpers


def _pcm(ms: float, dbfs: float | None, *, seed: int = 0) -> npt.NDArray[np.int16]:
    """``ms`` of 16 kHz PCM16: a 300 Hz tone at ``dbfs`` RMS, or digital silence (None)."""
    n = round(ms * RATE / 1000)
    if dbfs is None:
        return np.zeros(n, dtype=np.int16)
    amp = 32768.0 * 10 ** (dbfs / 20) * np.sqrt(2)
    t = np.arange(n) / RATE
    return np.round(amp * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def _append(pcm: npt.NDArray[np.int16]) -> str:
    audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


class _Feeder:
    """Streams audio into a session in 20 ms appends, advancing virtual time with it."""

    def __init__(self, session: ReplaySession) -> None:
        self.session = session
        self.now = 0
        self.sent: list[tuple[float, Any]] = []  # (audio ms at send, frame)
        session_out = session.open(now_ns=self.now)
        self._collect(session_out)

    def _collect(self, outs: list[Any]) -> None:
        for o in outs:
            frame = json.loads(o.text) if isinstance(o, Outgoing) else o
            self.sent.append((self.session.audio_ms, frame))

    def audio(self, pcm: npt.NDArray[np.int16]) -> None:
        for i in range(0, pcm.size, 320):
            self.now += 20 * MS
            self._collect(self.session.advance(now_ns=self.now))
            self._collect(self.session.receive(_append(pcm[i : i + 320]), now_ns=self.now))

    def frame(self, frame: dict[str, Any]) -> None:
        self._collect(self.session.receive(json.dumps(frame), now_ns=self.now))

    def types(self) -> list[str]:
        return [f["type"] if isinstance(f, dict) else type(f).__name__ for _, f in self.sent]


def _texts(outs: list[Any]) -> list[str]:
    return [o.text for o in outs if isinstance(o, Outgoing)]


# ---------------------------------------------------------------------------- core


def test_send_dict_as_json_and_str_verbatim() -> None:
    s = ReplaySession([Send({"type": "session.created", "session_id": "é"}), Send("{not json")])
    out = s.open(now_ns=0)
    assert _texts(out) == ['{"type":"session.created","session_id":"é"}', "{not json"]
    assert s.done and s.next_deadline_ns() is None


def test_expect_waits_and_consumes_client_frames_in_order() -> None:
    steps: list[Step] = [
        Expect("session.configure"),
        Send({"type": "session.configured"}),
        Expect("conversation.item.create"),
        Expect("response.create"),
        Send({"type": "response.created"}),
        Expect("conversation.item.create"),
        Send({"type": "late"}),
    ]
    s = ReplaySession(steps)
    assert s.open(now_ns=0) == []
    assert s.receive('{"type":"response.create"}', now_ns=1) == []  # not what step 0 wants
    assert _texts(s.receive('{"type":"session.configure"}', now_ns=2)) == [
        '{"type":"session.configured"}'
    ]
    # the response.create before the configure was skipped by the first match: it does not count
    out = s.receive('{"type":"conversation.item.create","item":{"call_id":"c1"}}', now_ns=3)
    assert out == [] and s.position == 3
    assert _texts(s.receive('{"type":"response.create"}', now_ns=4)) == [
        '{"type":"response.created"}'
    ]
    assert s.position == 5
    assert [r.frame["type"] for r in s.received] == [
        "response.create",
        "session.configure",
        "conversation.item.create",
        "response.create",
    ]
    assert [r.t_ns for r in s.received] == [1, 2, 3, 4]


def test_wait_audio_counts_audio_received_after_the_step_starts() -> None:
    s = ReplaySession([Expect("go"), WaitAudio(100), Send({"type": "heard"})])
    f = _Feeder(s)
    f.audio(_pcm(200, -60))  # before the step: does not count
    f.frame({"type": "go"})
    f.audio(_pcm(80, -60))
    assert f.types() == []
    f.audio(_pcm(60, -60))
    assert f.sent == [(300.0, {"type": "heard"})]  # the first 20 ms frame that reaches 100 ms


def test_wait_audio_with_odd_sized_appends() -> None:
    s = ReplaySession([WaitAudio(10), Send({"type": "x"})])
    s.open(now_ns=0)
    pcm = _pcm(20, -60).astype("<i2").tobytes()
    # 161 bytes then the rest: the odd byte is carried, 10 ms = 160 samples = 320 bytes
    assert s.receive(_append_raw(pcm[:161]), now_ns=1) == []
    assert _texts(s.receive(_append_raw(pcm[161:]), now_ns=2)) == ['{"type":"x"}']
    assert s.audio_ms == 20.0


def _append_raw(data: bytes) -> str:
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}
    )


def test_speech_start_and_end_from_energy_detector_with_templated_times() -> None:
    steps: list[Step] = [
        WaitSpeechStart(),
        Send({"type": "input_audio_buffer.speech_started", "audio_start_ms": "{speech_start_ms}"}),
        WaitSpeechEnd(silence_ms=300),
        Send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": "{speech_end_ms}"}),
    ]
    f = _Feeder(ReplaySession(steps))
    f.audio(_pcm(500, -50))  # line noise below -45 dBFS: not speech
    assert f.sent == []
    f.audio(_pcm(1000, -20))  # speech from 500 ms
    f.audio(_pcm(100, -60))  # a short pause: not the end
    f.audio(_pcm(200, -20))
    f.audio(_pcm(600, -60))
    (t_start, started), (t_stop, stopped) = f.sent
    assert started == {"type": "input_audio_buffer.speech_started", "audio_start_ms": 500}
    assert t_start == 560.0  # min_speech_ms (60) of voice
    assert stopped == {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1800}
    assert t_stop == 2100.0  # the end of speech + 300 ms of silence


def test_speech_before_its_step_is_not_missed_and_end_alone_waits_for_a_start() -> None:
    steps: list[Step] = [
        Expect("ready"),
        WaitSpeechEnd(silence_ms=200),
        Send({"type": "stopped", "start": "{speech_start_ms}", "end": "{speech_end_ms}"}),
        WaitSpeechEnd(silence_ms=200),
        Send({"type": "stopped again", "start": "{speech_start_ms}"}),
    ]
    f = _Feeder(ReplaySession(steps))
    f.audio(_pcm(100, None))
    f.audio(_pcm(400, -20))  # the caller talks while the server is still busy
    f.audio(_pcm(300, None))
    assert f.sent == []
    f.frame({"type": "ready"})
    assert f.sent == [(800.0, {"type": "stopped", "start": 100, "end": 500})]
    f.audio(_pcm(400, None))  # no new speech: the second end waits
    assert len(f.sent) == 1
    f.audio(_pcm(200, -20))
    f.audio(_pcm(200, None))
    assert f.sent[1] == (1600.0, {"type": "stopped again", "start": 1200})


def test_sleep_uses_the_deadline() -> None:
    s = ReplaySession([Send({"type": "a"}), Sleep(250), Send({"type": "b"})])
    assert _texts(s.open(now_ns=1_000)) == ['{"type":"a"}']
    assert s.next_deadline_ns() == 1_000 + 250 * MS
    assert s.advance(now_ns=1_000 + 249 * MS) == []
    assert _texts(s.advance(now_ns=1_000 + 250 * MS)) == ['{"type":"b"}']
    assert s.next_deadline_ns() is None


def test_close_ends_the_script_and_ignores_later_frames() -> None:
    s = ReplaySession([Close(1013, "busy"), Send({"type": "never"})])
    assert s.open(now_ns=0) == [Closing(1013, "busy")]
    assert s.closed == Closing(1013, "busy") and s.done
    assert s.receive('{"type":"x"}', now_ns=1) == []
    assert ReplaySession([Close(None)]).open(now_ns=0) == [Closing(None, "")]


def test_send_audio_tone_in_chunks_at_the_given_rate_and_pace() -> None:
    step = SendAudio("{rid}", ms=250, rate_hz=24_000, item_id="it_{n}", interval_ms=40)
    s = ReplaySession([step, Send({"type": "done"})], variables={"rid": "resp_1", "n": 7})
    out = s.open(now_ns=0)
    assert len(out) == 1  # paced: one delta now, the next at the deadline
    t = 0
    while not s.done:
        deadline = s.next_deadline_ns()
        assert deadline == t + 40 * MS
        t = deadline
        out += s.advance(now_ns=t)
    frames = [json.loads(x) for x in _texts(out)]
    deltas, done = frames[:-1], frames[-1]
    assert done == {"type": "done"} and len(deltas) == 3  # 100 + 100 + 50 ms
    assert {(d["response_id"], d["item_id"], d["output_index"]) for d in deltas} == {
        ("resp_1", "it_7", 0)
    }
    pcm = np.concatenate(
        [np.frombuffer(base64.b64decode(d["delta"]), dtype="<i2") for d in deltas]
    ).astype(np.float64)
    assert pcm.size == 6000  # 250 ms at 24 kHz
    assert 20 * np.log10(np.sqrt(np.mean(pcm**2)) / 32768) == pytest.approx(-20.0, abs=0.1)


def test_send_audio_of_given_pcm_all_at_once() -> None:
    pcm = np.arange(-500, 500, dtype=np.int16)
    s = ReplaySession([SendAudio("r", pcm=pcm, rate_hz=16_000, chunk_ms=20)])
    deltas = [json.loads(x) for x in _texts(s.open(now_ns=0))]
    assert len(deltas) == 4 and "item_id" not in deltas[0]
    got = b"".join(base64.b64decode(d["delta"]) for d in deltas)
    assert np.array_equal(np.frombuffer(got, dtype="<i2"), pcm)
    raw = SendAudio("r", pcm=pcm.astype("<i2").tobytes() + b"\x01")
    assert np.array_equal(raw.samples(), pcm)


def test_templating_ids_types_and_unknown_names() -> None:
    steps: list[Step] = [
        Expect("conversation.item.create"),
        Send(
            {
                "type": "x",
                "call": "{call_id}",
                "last": "{last.item.output}",
                "event": "ev-{last.event_id}-{session_index}",
                "audio": "{audio_ms}",
                "mine": ["{who}", {"deep": "{who}!"}],
                "keep": "{nope} {last.missing.path} {not valid}",
                "json": '{"a": 1}',
            }
        ),
    ]
    s = ReplaySession(steps, session_index=2, variables={"who": 42})
    s.open(now_ns=0)
    s.receive(_append(_pcm(40, None)), now_ns=1)
    item = {"type": "function_call_output", "call_id": "call_9", "output": "{}"}
    out = s.receive(
        json.dumps({"type": "conversation.item.create", "event_id": "e1", "item": item}), now_ns=2
    )
    assert json.loads(_texts(out)[0]) == {
        "type": "x",
        "call": "call_9",
        "last": "{}",
        "event": "ev-e1-2",
        "audio": 40,
        "mine": [42, {"deep": "42!"}],
        "keep": "{nope} {last.missing.path} {not valid}",
        "json": '{"a": 1}',
    }


def test_step_timeout_fails_the_session_with_1011() -> None:
    s = ReplaySession([Send({"type": "a"}), Expect("never")], step_timeout_ms=500)
    s.open(now_ns=0)
    assert s.next_deadline_ns() == 500 * MS
    assert s.advance(now_ns=499 * MS) == []
    assert s.advance(now_ns=500 * MS) == [Closing(1011, "replay timeout")]
    assert s.error is not None and "Expect never" in s.error


def test_non_json_and_binary_client_frames_are_recorded() -> None:
    s = ReplaySession([Expect("x")])
    s.open(now_ns=0)
    s.receive("nope", now_ns=1)
    s.receive(b"\x00\x01", now_ns=2)
    s.receive("[1]", now_ns=3)
    assert [r.frame["type"] for r in s.received] == ["<unparseable>", "<binary>", "<unparseable>"]


def test_unknown_step_is_refused() -> None:
    with pytest.raises(TypeError):
        ReplaySession([{"type": "x"}])  # type: ignore[list-item]


# ---------------------------------------------------------------------------- fixtures


HEADER = fixture_header(
    scenario="handshake",
    model="hydra-v1.1",
    url=f"wss://api.smallest.ai/waves/v1/s2s?model=hydra-v1.1&api_key={CANARY}",
    created="2026-08-21T10:00:00+00:00",
)


def _audio_rec(t: float, ms: float) -> dict[str, Any]:
    pcm = _pcm(ms, -60).astype("<i2").tobytes()
    frame = {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
    return {"t_ms": t, "dir": "out", "frame": frame}


RECORDS: list[dict[str, Any]] = [
    {"t_ms": 80.0, "dir": "in", "frame": {"type": "session.created", "session_id": "s1"}},
    {"t_ms": 81.5, "dir": "out", "frame": {"type": "session.configure", "session": {}}},
    {"t_ms": 140.0, "dir": "in", "frame": {"type": "session.configured", "session": {}}},
    _audio_rec(160.0, 20),
    {"t_ms": 170.0, "dir": "in", "frame": {"type": "response.created", "response": {"id": "r"}}},
    *[_audio_rec(180.0 + 20 * i, 20) for i in range(10)],
    {
        "t_ms": 390.0,
        "dir": "out",
        "frame": {"type": "input_audio_buffer.append", "audio": "<640 bytes>"},
    },
    {"t_ms": 400.0, "dir": "in", "frame": {"type": "input_audio_buffer.speech_started"}},
    {"t_ms": 420.0, "dir": "in", "frame": "not json at all"},
    {"t_ms": 500.0, "dir": "close", "code": 1000, "reason": "bye"},
]


def test_fixture_round_trip_and_header(tmp_path: Path) -> None:
    assert HEADER["url"] == "wss://api.smallest.ai/waves/v1/s2s"
    other = fixture_header(scenario="s", model="m", url=f"wss://u:{CANARY}@h:8/p#f")
    assert other["url"] == "wss://h:8/p" and other["created"].endswith("+00:00")
    assert HEADER["kind"] == "hydralab.frames" and HEADER["version"] == 1
    path = write_fixture(tmp_path / "f.jsonl", HEADER, RECORDS, secrets=[CANARY])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(RECORDS)
    fx = load_fixture(path)
    assert fx.header == HEADER and list(fx.records) == RECORDS and fx.path == path
    assert fx.scenario == "handshake"


def test_steps_from_fixture() -> None:
    fx = Fixture(HEADER, tuple(RECORDS))
    assert steps_from_fixture(fx) == [
        Send({"type": "session.created", "session_id": "s1"}),
        Expect("session.configure"),
        Sleep(58.5),  # 140 - 81.5
        Send({"type": "session.configured", "session": {}}),
        Sleep(30.0),  # 20 ms of audio in the gap: below min_audio_wait_ms, a time gap
        Send({"type": "response.created", "response": {"id": "r"}}),
        WaitAudio(220.0),  # 10 x 20 ms + the elided 640 bytes: the server waited for audio
        Send({"type": "input_audio_buffer.speech_started"}),
        Sleep(20.0),
        Send("not json at all"),
        Sleep(80.0),
        Close(1000, "bye"),
    ]
    fast = steps_from_fixture(fx, time_scale=0.5, audio_waits=False)
    assert [s for s in fast if isinstance(s, Sleep | WaitAudio)] == [
        Sleep(29.25),
        Sleep(15.0),
        Sleep(115.0),
        Sleep(10.0),
        Sleep(40.0),
    ]
    assert not any(isinstance(s, Sleep) for s in steps_from_fixture(fx, time_scale=0))


@pytest.mark.parametrize(
    ("lines", "line_no", "message"),
    [
        (["{not json"], 1, "not JSON"),
        (['{"kind": "other", "version": 1}'], 1, "header kind"),
        ([{**HEADER, "version": 2}], 1, "unsupported fixture version"),
        ([{**HEADER, "version": True}], 1, "unsupported fixture version"),
        ([{**HEADER, "scenario": 3}], 1, "'scenario' must be a string"),
        ([{**HEADER, "created": "yesterday"}], 1, "ISO 8601"),
        ([{**HEADER, "url": "wss://h/p?api_key=abc123"}], 1, "not redacted"),
        ([HEADER, RECORDS[0], "[1, 2]"], 3, "must be a JSON object"),
        ([HEADER, {"t_ms": -1, "dir": "in", "frame": {}}], 2, "t_ms must be a number"),
        ([HEADER, {"t_ms": "1", "dir": "in", "frame": {}}], 2, "t_ms must be a number"),
        ([HEADER, {"t_ms": 1, "dir": "sideways", "frame": {}}], 2, "dir must be"),
        ([HEADER, {"t_ms": 1, "dir": "out", "frame": "text"}], 2, "frame must be a JSON object"),
        ([HEADER, {"t_ms": 1, "dir": "in"}], 2, "frame must be a JSON object"),
        ([HEADER, "", {"t_ms": 1, "dir": "close", "code": "x", "reason": ""}], 3, "close code"),
        ([HEADER, {"t_ms": 1, "dir": "close", "code": None}], 2, "close reason"),
    ],
)
def test_load_fixture_errors_name_the_line(
    tmp_path: Path, lines: list[Any], line_no: int, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FixtureError, match=message) as info:
        load_fixture(path)
    assert f"{path}:{line_no}:" in str(info.value)


def test_empty_fixture_is_an_error() -> None:
    with pytest.raises(FixtureError, match="empty fixture"):
        parse_fixture("\n\n", source="x.jsonl")


def test_write_fixture_refuses_a_secret_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.jsonl"
    leaky = [*RECORDS[:2], {"t_ms": 1.0, "dir": "in", "frame": {"type": "x", "note": CANARY}}]
    with pytest.raises(FixtureError, match="contains a secret") as info:
        write_fixture(path, HEADER, leaky, secrets=[CANARY])
    assert CANARY not in str(info.value) and "line 4" in str(info.value)
    assert not path.exists() and not list(tmp_path.iterdir())
    # a key with characters JSON escapes is still found
    odd = 'k"ey\\' + secrets.token_hex(4)
    with pytest.raises(FixtureError, match="contains a secret"):
        write_fixture(path, {**HEADER, "note": odd}, [], secrets=[odd])
    # default: the environment's SMALLEST_API_KEY
    monkeypatch.setenv("SMALLEST_API_KEY", CANARY)
    with pytest.raises(FixtureError, match="contains a secret"):
        write_fixture(path, HEADER, leaky)
    with pytest.raises(FixtureError, match="not redacted"):
        write_fixture(path, {**HEADER, "url": f"wss://h/s2s?api_key={CANARY}"}, [])
    assert not path.exists()
    write_fixture(path, HEADER, RECORDS)
    assert CANARY not in path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- server


async def test_server_successive_scripts_path_key_and_received() -> None:
    first: list[Step] = [
        Send({"type": "error", "error": {"code": "server_full"}}),
        Close(1013, "at capacity"),
    ]
    second: list[Step] = [
        Send({"type": "session.created", "session_id": "{sid}"}),
        Expect("session.configure"),
        Send({"type": "session.configured", "session": {}}),
    ]
    async with ReplayServer(
        [first, second], expected_api_key=CANARY, variables={"sid": "s-2"}
    ) as srv:
        assert srv.url == f"ws://127.0.0.1:{srv.port}/waves/v1/s2s"
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{srv.port}/elsewhere?api_key={CANARY}")
        assert info.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as info:
            await connect(f"{srv.url}?model=hydra-v1.1&api_key=wrong")
        assert info.value.response.status_code == 401
        assert srv.sessions == 0
        async with connect(f"{srv.url}?model=hydra-v1.1&api_key={CANARY}") as ws:
            assert json.loads(await ws.recv())["type"] == "error"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1013 and ws.close_reason == "at capacity"
        async with connect(f"{srv.url}?model=hydra&api_key={CANARY}") as ws:
            assert json.loads(await ws.recv()) == {"type": "session.created", "session_id": "s-2"}
            await ws.send('{"type":"session.configure","session":{}}')
            assert json.loads(await ws.recv())["type"] == "session.configured"
        assert srv.sessions == 2
        assert [c.model for c in srv.connections] == ["hydra-v1.1", "hydra"]
        assert all(c.has_api_key and c.path == "/waves/v1/s2s" for c in srv.connections)
        assert CANARY not in repr(srv.connections)
        assert [r.frame["type"] for r in srv.received] == ["session.configure"]
        assert srv.received[0].session == 1


async def test_server_abort_without_close_frame() -> None:
    async with (
        ReplayServer([Send({"type": "a"}), Close(None)]) as srv,
        connect(srv.url) as ws,
    ):
        assert json.loads(await ws.recv()) == {"type": "a"}
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1006


async def test_server_replays_a_fixture_to_a_client(tmp_path: Path) -> None:
    path = write_fixture(tmp_path / "f.jsonl", HEADER, RECORDS, secrets=[CANARY])
    async with ReplayServer(path, time_scale=0.0) as srv, connect(srv.url) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send('{"type":"session.configure","session":{}}')
        got = [json.loads(await ws.recv())["type"] for _ in range(2)]
        assert got == ["session.configured", "response.created"]
        t0 = time.monotonic()
        for _ in range(11):  # 220 ms of input audio releases speech_started
            await ws.send(_append(_pcm(20, -60)))
        assert json.loads(await ws.recv())["type"] == "input_audio_buffer.speech_started"
        assert await ws.recv() == "not json at all"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000 and ws.close_reason == "bye"
        assert time.monotonic() - t0 < 2.0


async def test_cli_replay_serves_a_fixture_until_interrupted(tmp_path: Path) -> None:
    path = write_fixture(tmp_path / "f.jsonl", HEADER, RECORDS, secrets=[CANARY])
    env = {**os.environ, "SMALLEST_API_KEY": CANARY}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hydralab",
        "replay",
        str(path),
        "--port",
        "0",
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "hydra replayer listening on ws://127.0.0.1:" in line, line
        url = line.split(" on ", 1)[1].split()[0]
        assert url.endswith("/waves/v1/s2s")
        async with connect(f"{url}?model=hydra-v1.1&api_key={CANARY}") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130
    assert CANARY not in line + out.decode() + err.decode()


# ---------------------------------------------------------------------------- --hydra-url


def test_hydra_url_precedence_argument_env_default() -> None:
    env = {HYDRA_URL_ENV: "wss://staging.example/waves/v1/s2s"}
    assert resolve_hydra_url("ws://127.0.0.1:9/s2s", environ=env) == "ws://127.0.0.1:9/s2s"
    assert resolve_hydra_url(None, environ=env) == "wss://staging.example/waves/v1/s2s"
    assert resolve_hydra_url(" ", environ=env) == "wss://staging.example/waves/v1/s2s"
    assert resolve_hydra_url(None, environ={}) == HYDRA_URL
    assert resolve_hydra_url(None, environ={HYDRA_URL_ENV: "  "}) == HYDRA_URL


def test_hydra_url_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HYDRA_URL_ENV, "wss://onprem.internal:8443/waves/v1/s2s")
    assert resolve_hydra_url() == "wss://onprem.internal:8443/waves/v1/s2s"
    monkeypatch.setenv(HYDRA_URL_ENV, "https://onprem.internal/")
    with pytest.raises(ValueError, match=r"^HYDRA_URL: .*ws:// or wss://"):
        resolve_hydra_url()
    assert resolve_hydra_url("wss://h/x") == "wss://h/x"  # the argument wins, env not read


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.smallest.ai/waves/v1/s2s", "ws:// or wss://"),
        ("api.smallest.ai/waves/v1/s2s", "ws:// or wss://"),
        ("wss:///waves/v1/s2s", "no host"),
        ("ws://127.0.0.1:99999/s2s", "not a valid URL"),
        (f"wss://user:{CANARY}@h/s2s", "credentials"),
        (f"wss://h/s2s?api_key={CANARY}", "no query or fragment"),
        ("wss://h/s2s?", "no query or fragment"),
        ("wss://h/s2s#frag", "no query or fragment"),
    ],
    ids=["http", "no-scheme", "no-host", "bad-port", "credentials", "query", "empty-query", "frag"],
)
def test_bad_hydra_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        check_hydra_url(url)
    assert CANARY not in str(info.value)


async def test_run_record_checks_the_url_before_any_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMALLEST_API_KEY", CANARY)
    with pytest.raises(ValueError, match="ws:// or wss://"):
        await run_record(None, model="hydra", hydra_url="ftp://x/y", out_dir=tmp_path)
    monkeypatch.setenv(HYDRA_URL_ENV, "not a url")
    with pytest.raises(ValueError, match=r"^HYDRA_URL: "):
        await run_record(None, model="hydra", out_dir=tmp_path)
    with pytest.raises(ValueError, match="model 'hydra' only"):
        await run_record(None, model="emulator", hydra_url="ws://h/x", out_dir=tmp_path)
    with pytest.raises(ValueError, match="model 'hydra' only"):
        await run_batch(None, model="emulator", hydra_url="ws://h/x", out_dir=tmp_path)
    with pytest.raises(ValueError, match="no query"):
        await run_batch(None, model="hydra", hydra_url="ws://h/x?a=1", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_hydra_url_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hydralab.cli import main

    monkeypatch.setenv("SMALLEST_API_KEY", CANARY)
    url = f"https://h/s2s?api_key={CANARY}"
    rc = main(["run", "--model", "hydra", "--hydra-url", url, "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert err.startswith("hydralab: error: hydra_url: a Hydra endpoint must be a ws:// or wss://")
    assert CANARY not in out + err


# ---------------------------------------------------------------------------- end to end


OUT_RATE = 24_000


def _response(k: int) -> list[Step]:
    """One documented assistant response: created, item added, 300 ms of tone, done."""
    rid, iid = f"resp_{k}", f"item_a{k}"
    msg = {
        "id": iid,
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [{"type": "output_audio"}],
    }
    done_msg = {**msg, "status": "completed"}
    usage = {"input_tokens": 120, "output_tokens": 8, "total_tokens": 128}
    return [
        Send({"type": "response.created", "event_id": f"sv_rc{k}", "response": {"id": rid}}),
        Send({"type": "conversation.item.added", "event_id": f"sv_ia{k}", "item": msg}),
        SendAudio(rid, ms=300, rate_hz=OUT_RATE, item_id=iid),
        Send(
            {
                "type": "response.output_audio.done",
                "event_id": f"sv_ad{k}",
                "response_id": rid,
                "item_id": iid,
                "output_index": 0,
                "content_index": 0,
            }
        ),
        Send({"type": "conversation.item.done", "event_id": f"sv_id{k}", "item": done_msg}),
        Send(
            {
                "type": "response.done",
                "event_id": f"sv_rd{k}",
                "response": {
                    "id": rid,
                    "status": "completed",
                    "output": [done_msg],
                    "usage": usage,
                },
            }
        ),
    ]


def _documented_flow(user_turns: int) -> list[Step]:
    """Handshake, the greeting, then per caller utterance the documented per-turn sequence."""
    steps: list[Step] = [
        Send({"type": "session.created", "event_id": "sv_1", "session_id": "sess_replay"}),
        Expect("session.configure"),
        Send(
            {
                "type": "session.configured",
                "event_id": "sv_2",
                "session": {"voice": "sterling", "output_audio_sample_rate": OUT_RATE},
            }
        ),
        *_response(0),
    ]
    for k in range(1, user_turns + 1):
        item = {"id": f"item_u{k}", "type": "message", "role": "user", "status": "in_progress"}
        steps += [
            WaitSpeechStart(),
            Send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "event_id": f"sv_ss{k}",
                    "audio_start_ms": "{speech_start_ms}",
                    "item_id": f"item_u{k}",
                }
            ),
            Send({"type": "conversation.item.added", "event_id": f"sv_ua{k}", "item": item}),
            WaitSpeechEnd(silence_ms=500),
            Send(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "event_id": f"sv_st{k}",
                    "audio_end_ms": "{speech_end_ms}",
                    "item_id": f"item_u{k}",
                }
            ),
            Send(
                {
                    "type": "conversation.item.done",
                    "event_id": f"sv_ud{k}",
                    "item": {**item, "status": "completed"},
                }
            ),
            Sleep(150),
            *_response(k),
        ]
    return steps


def _tiny_data_dir(root: Path) -> Path:
    """hydralab's airline data with HL-AIR-001 cut to two short caller lines."""
    data = root / "data"
    shutil.copytree(DEFAULT_DATA_DIR / "airline", data / "airline")
    dataset = data / "airline" / "airline_dataset.json"
    rec = next(r for r in json.loads(dataset.read_text()) if r["id"] == "HL-AIR-001")
    rec["ground_truth"]["expected_trace"]["trace"] = [
        {"event_type": "user_utterance", "utterance": "Hi, I need to change my flight."},
        {"event_type": "agent_utterance", "utterance": "Sure."},
        {"event_type": "user_utterance", "utterance": "Thanks, goodbye."},
        {"event_type": "agent_utterance", "utterance": "Goodbye."},
    ]
    dataset.write_text(json.dumps([rec]), encoding="utf-8")
    return data


@pytest.mark.e2e
async def test_cli_run_against_a_replayer(tmp_path: Path) -> None:
    data = _tiny_data_dir(tmp_path)
    out_dir = tmp_path / "runs"
    env = {
        **os.environ,
        "SMALLEST_API_KEY": CANARY,
        HYDRA_URL_ENV: "ws://127.0.0.1:9/not-this-one",  # the argument wins
    }
    t0 = time.monotonic()
    async with ReplayServer(
        _documented_flow(2), expected_api_key=CANARY, step_timeout_ms=30_000
    ) as srv:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hydralab",
            "run",
            "HL-AIR-001",
            "--model",
            "hydra",
            "--hydra-url",
            srv.url,
            "--stt",
            "none",
            "--out",
            str(out_dir),
            "--run-id",
            "replay",
            "--data-dir",
            str(data),
            env=env,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_b, err_b = await asyncio.wait_for(proc.communicate(), 120)
    wall_s = time.monotonic() - t0
    out, err = out_b.decode(), err_b.decode()
    print(f"e2e wall time: {wall_s:.1f} s")
    assert proc.returncode == 0, out + err

    # the replayer saw the key (it refuses others) and played every step of one session
    assert srv.sessions == 1 and srv.connections[0].model == "hydra-v1.1"
    replay = srv.replays[0]
    assert replay.error is None and replay.done
    redacted = f"{srv.url}?model=hydra-v1.1&api_key=***"

    run_dir = out_dir / "replay" / "records" / "HL-AIR-001"
    assert run_dir.is_dir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["hydra"]["url"] == redacted and run["hydra"]["session_id"] == "sess_replay"
    assert run["hydra"]["output_rate_hz"] == OUT_RATE
    assert run["ended_reason"] == "goodbye" and run["error"] is None
    assert [t["status"] for t in run["turns"]] == ["completed"] * 3
    assert all(t["model_response_ms"] >= 140 for t in run["turns"][1:])
    config = json.loads((out_dir / "replay" / "config.json").read_text())
    assert config["hydralab"]["hydra_url"] == redacted
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    endpoint = [e["frame"] for e in events if e["frame"].get("type") == "hydra_endpoint"]
    assert endpoint == [{"type": "hydra_endpoint", "model": "hydra", "url": redacted}]
    assert f"hydra endpoint: {redacted}" in out

    # the key is nowhere: no file of the run, not stdout, not stderr
    assert CANARY not in out and CANARY not in err
    files = [p for p in (out_dir).rglob("*") if p.is_file()]
    assert len(files) > 10
    for p in files:
        assert CANARY.encode() not in p.read_bytes(), p
