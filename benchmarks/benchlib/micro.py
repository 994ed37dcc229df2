"""Item 1: the audio path per 20 ms frame, stage by stage, with hydralab's own functions.

Run in a subprocess whose ``sys.path`` starts with the checkout under test (``python -m
benchlib.micro --frames 2000 --repeats 7``); prints one JSON line. Each stage is timed with
``time.perf_counter_ns`` over ``--frames`` calls (a stateful stage — a resampler, a timeline,
the log file — keeps its state from call to call, as in a call), ``--repeats`` times; the
result is the median (and the minimum) of the repeats' mean µs per call. A stage whose
hydralab function does not exist in the checkout is reported with its error, not skipped
silently.

Uplink (per caller frame: 160 μ-law bytes → one 320-sample 16 kHz append) and downlink (per
20 ms frame sent to the caller; the model's deltas carry ``--delta-ms`` each, so a per-delta
stage is divided by ``delta_ms / 20``) stages, the per-chunk stateless baseline (``soxr.resample``
VHQ per chunk, padded/trimmed to the exact length, back to int16: the seed PR's way), the bare
relay (``json.loads`` + ``json.dumps`` of the frame), and the whole core
(``BridgeCore.caller_frame``; ``model_event`` + ``advance``), alone and with the shell's share
(the append's encoding and the frame log the client writes for every frame).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from benchlib import frames as fr  # noqa: E402

FRAME_NS = 20_000_000


def timeit(fn: Callable[[], Any], n: int, repeats: int, per: float = 1.0) -> dict[str, float]:
    """Median and minimum over ``repeats`` of the mean µs per call of ``fn`` (``/ per``)."""
    fn()  # warm
    means = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        means.append((time.perf_counter_ns() - t) / n / 1000.0 / per)
    return {"us": round(statistics.median(means), 3), "min_us": round(min(means), 3)}


class Micro:
    def __init__(self, n: int, repeats: int, delta_ms: int, tmp: str) -> None:
        self.n = n
        self.repeats = repeats
        self.delta_ms = delta_ms
        self.fpd = delta_ms // fr.FRAME_MS
        self.tmp = tmp
        self.results: dict[str, dict[str, Any]] = {}
        # the caller's frame, the model's delta (the bench's own pre-encoded frames)
        self.media_msg = fr.caller_media_frames(3, 8)[7]
        self.payload_b64 = json.loads(self.media_msg)["media"]["payload"]
        self.ulaw = base64.b64decode(self.payload_b64)
        self.delta_payload = fr.model_delta_payload(delta_ms)
        self.delta_msg = fr.delta_frame("resp_1", "item_1", self.delta_payload)
        rng = np.random.default_rng(0)
        pcm8 = fr.tone(700.0, 160, 8000).astype(np.int32) + rng.integers(-800, 800, 160)
        self.pcm8 = np.clip(pcm8, -32768, 32767).astype(np.int16)
        self.pcm16 = np.repeat(self.pcm8, 2)
        self.pcm48 = np.frombuffer(base64.b64decode(self.delta_payload), "<i2").astype(np.int16)

    def stage(self, key: str, what: str, make: Callable[[], Callable[[], Any]], per: float = 1.0):
        """Time the function ``make()`` returns (its set-up is not timed)."""
        try:
            fn = make()
            res: dict[str, Any] = timeit(fn, self.n, self.repeats, per)
        except Exception as exc:
            res = {"us": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
            traceback.print_exc(file=sys.stderr)
        res["what"] = what
        self.results[key] = res

    # ------------------------------------------------------------------ uplink
    def uplink(self) -> None:
        from hydralab.audio import StreamResampler, Timeline, ulaw_decode

        msg, b64, ulaw, pcm8, pcm16 = (
            self.media_msg,
            self.payload_b64,
            self.ulaw,
            self.pcm8,
            self.pcm16,
        )
        self.stage(
            "up.json_parse", "json.loads(twilio media frame)", lambda: lambda: json.loads(msg)
        )

        def parse() -> Callable[[], Any]:
            from hydralab.protocol.twilio import parse_twilio

            return lambda: parse_twilio(msg)

        self.stage("up.parse_twilio", "hydralab parse_twilio (JSON + base64 + event)", parse)
        self.stage(
            "up.b64_decode",
            "base64.b64decode(payload, validate=True)",
            lambda: lambda: base64.b64decode(b64, validate=True),
        )
        self.stage(
            "up.ulaw_decode", "hydralab ulaw_decode (160 B)", lambda: lambda: ulaw_decode(ulaw)
        )

        def rs(src: int, dst: int) -> Callable[[], Callable[[], Any]]:
            def make() -> Callable[[], Any]:
                r = StreamResampler(src, out_rate_hz=dst)
                return lambda: r.process(pcm8)

            return make

        self.stage("up.resample_16k", "StreamResampler 8k→16k (to the model)", rs(8000, 16000))
        self.stage("up.resample_48k", "StreamResampler 8k→48k (recording copy)", rs(8000, 48000))
        self.stage(
            "up.soxr_16k", "per-chunk soxr.resample 8k→16k VHQ, pad/trim", _soxr(pcm8, 8000, 16000)
        )
        self.stage(
            "up.soxr_48k", "per-chunk soxr.resample 8k→48k VHQ, pad/trim", _soxr(pcm8, 8000, 48000)
        )

        def timeline() -> Callable[[], Any]:
            tl = Timeline(t0_ns=0)
            wire = Timeline(t0_ns=0, sample_rate_hz=8000)
            pcm48 = np.repeat(pcm8, 6)
            t = [FRAME_NS]

            def step() -> None:
                t[0] += FRAME_NS
                tl.append_user(pcm48, t_ns=t[0])
                wire.append_user(pcm8, t_ns=t[0])

            return step

        self.stage("up.timeline", "Timeline.append_user 48k + 8k wire (recording)", timeline)

        enc, how = append_encoder()
        self.stage("up.append_encode", f"append base64 + JSON ({how})", lambda: lambda: enc(pcm16))

        def log() -> Callable[[], Any]:
            w = self._writer("up")
            _, logged = enc(pcm16)
            return lambda: w.log("hydra", "out", logged, time.monotonic_ns())

        self.stage("up.frame_log", "events.jsonl row for the append (RunWriter.log)", log)
        self.stage(
            "up.relay",
            "bare relay: json.loads + json.dumps of the frame",
            lambda: lambda: json.dumps(json.loads(msg)),
        )

    # ------------------------------------------------------------------ downlink
    def downlink(self) -> None:
        from hydralab.audio import StreamResampler, Timeline, ulaw_decode, ulaw_encode

        dmsg, fpd = self.delta_msg, self.fpd
        self.stage(
            "down.json_parse", "json.loads(delta frame)", lambda: lambda: json.loads(dmsg), fpd
        )

        def parse() -> Callable[[], Any]:
            from hydralab.client import parse_server_frame

            return lambda: parse_server_frame(dmsg)

        self.stage(
            "down.parse_frame", "hydralab parse_server_frame (JSON + event + elide)", parse, fpd
        )

        def b64() -> Callable[[], Any]:
            from hydralab.protocol.hydra import decode_pcm16

            p = self.delta_payload
            return lambda: decode_pcm16(p, validate=True)

        self.stage("down.b64_decode", "decode_pcm16(delta, validate=True)", b64, fpd)
        pcm48 = self.pcm48

        def rs() -> Callable[[], Any]:
            r = StreamResampler(48000, out_rate_hz=8000)
            return lambda: r.process(pcm48)

        self.stage("down.resample_8k", "StreamResampler 48k→8k", rs, fpd)
        self.stage(
            "down.soxr_8k",
            "per-chunk soxr.resample 48k→8k VHQ, pad/trim",
            _soxr(pcm48, 48000, 8000),
            fpd,
        )
        pcm8 = self.pcm8
        self.stage(
            "down.ulaw_encode",
            "hydralab ulaw_encode (160 samples)",
            lambda: lambda: ulaw_encode(pcm8),
        )
        ulaw = self.ulaw

        def media() -> Callable[[], Any]:
            from hydralab.protocol.twilio import media_frame

            return lambda: media_frame("bench-3", ulaw)

        self.stage("down.twilio_json", "media_frame (base64 + Twilio JSON)", media)

        def timeline() -> Callable[[], Any]:
            tl = Timeline(t0_ns=0)
            wire = Timeline(t0_ns=0, sample_rate_hz=8000)
            p48 = pcm48[:960]
            t = [FRAME_NS]

            def step() -> None:
                t[0] += FRAME_NS
                tl.write("assistant", p48, t_ns=t[0])
                wire.write("assistant", ulaw_decode(ulaw), t_ns=t[0])

            return step

        self.stage("down.timeline", "Timeline.write 48k + 8k wire (recording)", timeline)

        def log() -> Callable[[], Any]:
            from hydralab.client import parse_server_frame

            w = self._writer("down")
            logged = parse_server_frame(dmsg).logged
            return lambda: w.log("hydra", "in", logged, time.monotonic_ns())

        self.stage("down.frame_log", "events.jsonl row for the delta (RunWriter.log)", log, fpd)
        self.stage(
            "down.relay",
            "bare relay: json.loads + json.dumps of the delta",
            lambda: lambda: json.dumps(json.loads(dmsg)),
            fpd,
        )

    # ------------------------------------------------------------------ whole core
    def _writer(self, name: str) -> Any:
        from hydralab.clock import Clock
        from hydralab.rundir import RunWriter

        clock = Clock()
        return RunWriter(os.path.join(self.tmp, name), epoch_ms=clock.epoch_ms, t0_ns=clock.t0_ns)

    def _core(self) -> tuple[Any, int]:
        from hydralab.bridge import BridgeConfig
        from hydralab.bridge_core import BridgeCore, ModelInfo
        from hydralab.clock import Clock

        clock = Clock()
        cfg = BridgeConfig().core_config(transcribe=False)
        t = clock.t0_ns + FRAME_NS
        core = BridgeCore(cfg, clock=clock, start_ns=t)
        core.model_connected(ModelInfo(output_rate_hz=48000), t)
        core.caller_frame(fr.connected_frame(), t)
        core.caller_frame(fr.start_frame(3), t)
        return core, t

    def whole(self) -> None:
        msg, dmsg, fpd = self.media_msg, self.delta_msg, self.fpd

        def up_core(shell: bool) -> Callable[[], Callable[[], Any]]:
            def make() -> Callable[[], Any]:
                core, t0 = self._core()
                w = self._writer("core-up") if shell else None
                enc, _ = append_encoder()
                t = [t0]

                def step() -> None:
                    t[0] += FRAME_NS
                    effects = core.caller_frame(msg, t[0])
                    if w is None:
                        return
                    for e in effects:
                        pcm = getattr(e, "pcm16k", None)
                        if pcm is not None:
                            _, logged = enc(pcm)
                            w.log("hydra", "out", logged, t[0])

                return step

            return make

        self.stage("core.uplink", "BridgeCore.caller_frame (per caller frame)", up_core(False))
        self.stage(
            "core.uplink_shell",
            "caller_frame + append encode + frame log (the shell's share)",
            up_core(True),
        )

        def down_core(shell: bool) -> Callable[[], Callable[[], Any]]:
            def make() -> Callable[[], Any]:
                from hydralab.client import parse_server_frame

                core, t0 = self._core()
                created = parse_server_frame(
                    '{"type":"response.created","response":{"id":"resp_1"}}'
                )
                core.model_event(created.event, t0)
                ev = parse_server_frame(dmsg).event
                w = self._writer("core-down") if shell else None
                step_ns = self.delta_ms * 1_000_000
                t = [t0]

                def step() -> None:
                    t[0] += step_ns
                    if w is not None:
                        rx = parse_server_frame(dmsg)
                        w.log("hydra", "in", rx.logged, t[0])
                        core.model_event(rx.event, t[0])
                    else:
                        core.model_event(ev, t[0])
                    for k in range(fpd):
                        core.advance(t[0] + k * FRAME_NS)

                return step

            return make

        self.stage(
            "core.downlink",
            "BridgeCore.model_event + advance (per 20 ms frame)",
            down_core(False),
            fpd,
        )
        self.stage(
            "core.downlink_shell",
            "parse_server_frame + frame log + model_event + advance",
            down_core(True),
            fpd,
        )


def append_encoder() -> tuple[Callable[[np.ndarray], tuple[str, dict[str, Any]]], str]:
    """The client's own way to encode an append and its frame-log row: ``encode_append``
    where the tree has it, else the event, its ``event_id`` stamp and ``encode_client_event``."""
    from hydralab import client as hc

    ids = hc.SentEventIds("abcdef")
    fast = getattr(hc, "encode_append", None)
    next_id = getattr(ids, "next_id", None)
    if fast is not None and next_id is not None:

        def enc_fast(pcm: np.ndarray) -> tuple[str, dict[str, Any]]:
            return fast(next_id("input_audio_buffer.append"), pcm)  # type: ignore[no-any-return]

        return enc_fast, "encode_append"
    from hydralab.protocol.hydra import InputAudioBufferAppend

    def enc(pcm: np.ndarray) -> tuple[str, dict[str, Any]]:
        text, d = hc.encode_client_event(ids.stamp(InputAudioBufferAppend.from_pcm(pcm)))
        return text, hc.elide_frame(d)

    return enc, "encode_client_event(stamp(InputAudioBufferAppend.from_pcm))"


def _soxr(pcm: np.ndarray, src: int, dst: int) -> Callable[[], Callable[[], Any]]:
    def make() -> Callable[[], Any]:
        import soxr

        want = round(pcm.shape[0] * dst / src)

        def step() -> np.ndarray:
            y = np.asarray(soxr.resample(pcm.astype(np.float32), src, dst, quality="VHQ"))
            y = np.pad(y, (0, max(0, want - y.shape[0])))[:want]
            return np.clip(np.rint(y), -32768, 32767).astype(np.int16)

        return step

    return make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--delta-ms", type=int, default=40)
    args = p.parse_args()
    import hydralab

    with tempfile.TemporaryDirectory(prefix="bridge-bench-micro-") as tmp:
        m = Micro(args.frames, args.repeats, args.delta_ms, tmp)
        t = time.perf_counter()
        m.uplink()
        m.downlink()
        m.whole()
        wall = time.perf_counter() - t
    out = {
        "hydralab": os.path.dirname(os.path.abspath(hydralab.__file__)),
        "frames": args.frames,
        "repeats": args.repeats,
        "delta_ms": args.delta_ms,
        "wall_s": round(wall, 2),
        "stages": m.results,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
