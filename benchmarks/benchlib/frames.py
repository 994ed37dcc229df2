"""Pre-encoded frames for the fake caller and the fake model (no per-frame JSON building).

The caller of conversation ``i`` sends a tone at :func:`tone_hz` ``(i, n)``: through the bridge
the fake model only sees 16 kHz PCM, and tells its connections apart by that tone's frequency
(:func:`identify_tone`). Through the bare relay it sees the caller's own frames and reads the
``streamSid`` (``bench-<i>``) of the ``start`` frame instead.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import numpy.typing as npt

FRAME_MS = 20
CALLER_RATE_HZ = 8000
MODEL_IN_RATE_HZ = 16000
MODEL_OUT_RATE_HZ = 48000
CALLER_CYCLE_FRAMES = 50  # one second of frames, cycled (tones are whole Hz: seamless)
TONE_BASE_HZ = 200.0
TONE_AMPLITUDE = 8000
MODEL_TONE_HZ = 450.0  # 9 periods in 20 ms at 48 kHz: every delta is the same samples
ID_FRAMES = 8  # 16 kHz appends the fake model collects before naming a connection's caller

MEDIA_PREFIX = '{"event":"media"'
DELTA_PREFIX = '{"type":"response.output_audio.delta"'


def stream_sid(i: int) -> str:
    return f"bench-{i}"


def tone_step_hz(n_total: int) -> float:
    """Spacing of the callers' tones: 20 Hz, less when there are more than 128 callers (all
    tones stay below 2.8 kHz, inside the telephone band)."""
    return min(20.0, 2600.0 / max(1, n_total - 1))


def tone_hz(i: int, n_total: int) -> float:
    return TONE_BASE_HZ + i * tone_step_hz(n_total)


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """G.711 μ-law (the textbook segment/mantissa form), for the fake caller's frames."""
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return code.astype(np.uint8).tobytes()


def tone(freq_hz: float, n: int, rate_hz: int, amplitude: int = TONE_AMPLITUDE) -> npt.NDArray:
    t = np.arange(n) / rate_hz
    return np.rint(amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def connected_frame() -> str:
    return '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def start_frame(i: int) -> str:
    sid = stream_sid(i)
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "streamSid": sid,
                "callSid": f"CAbench{i}",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": sid,
        },
        separators=(",", ":"),
    )


def caller_media_frames(i: int, n_total: int) -> list[str]:
    """One second of conversation ``i``'s 20 ms Twilio ``media`` frames, ready to send."""
    per = CALLER_RATE_HZ * FRAME_MS // 1000
    pcm = tone(tone_hz(i, n_total), per * CALLER_CYCLE_FRAMES, CALLER_RATE_HZ)
    sid = stream_sid(i)
    out = []
    for k in range(CALLER_CYCLE_FRAMES):
        payload = base64.b64encode(ulaw_encode(pcm[k * per : (k + 1) * per])).decode("ascii")
        out.append(
            f'{MEDIA_PREFIX},"streamSid":"{sid}","media":{{"track":"inbound",'
            f'"payload":"{payload}"}}}}'
        )
    return out


def model_delta_payload(delta_ms: int) -> str:
    """Base64 of ``delta_ms`` of the model's 48 kHz PCM16 voice (the same for every delta)."""
    n = MODEL_OUT_RATE_HZ * delta_ms // 1000
    pcm = tone(MODEL_TONE_HZ, n, MODEL_OUT_RATE_HZ)
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode("ascii")


def delta_frame(response_id: str, item_id: str, payload: str) -> str:
    """``response.output_audio.delta`` (hydra-ws.yaml: type, response_id, item_id,
    output_index, content_index, delta)."""
    return (
        f'{DELTA_PREFIX},"response_id":"{response_id}","item_id":"{item_id}",'
        f'"output_index":0,"content_index":0,"delta":"{payload}"}}'
    )


def identify_tone(pcm16k: npt.NDArray[np.int16], n_total: int) -> int:
    """The caller whose tone dominates ``pcm16k`` (16 kHz)."""
    x = pcm16k.astype(np.float64)
    x = x * np.hanning(x.size)
    nfft = 1 << 15
    spec = np.abs(np.fft.rfft(x, nfft))
    lo = int(0.8 * TONE_BASE_HZ * nfft / MODEL_IN_RATE_HZ)
    peak = lo + int(np.argmax(spec[lo:]))
    f = peak * MODEL_IN_RATE_HZ / nfft
    i = round((f - TONE_BASE_HZ) / tone_step_hz(n_total))
    return max(0, min(n_total - 1, i))
