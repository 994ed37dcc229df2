"""Offline STT word error rate on records' caller lines: clean vs the phone path.

Run: ``.venv/bin/python benchmarks/stt_wer.py [--data-dir DIR ...] [--verbose] [--lw 9.5]``

For every record the caller's lines are synthesized exactly as the scripted caller does
(:func:`hydralab.caller_core.prepare_audio`: eSpeak NG ``CALLER_VOICE`` at 8 kHz, line noise,
quiet head/tail frames trimmed, μ-law) and transcribed by :class:`LocalTranscriber` built from
the record's agent text (``runner._domain_text``: instructions and tool names, never the lines):

* ``phone``: what the bridge hands the transcriber: 200 ms of line noise (pre-roll) + the
  utterance's μ-law frames, decoded and streamed 8 → 16 kHz through ``StreamResampler``;
* ``clean``: the same line synthesized straight at 16 kHz (no μ-law, no band limit).

WER is corpus-level (word edits / reference words) against the intended written line, both
normalized by ``normalize_for_wer`` (lowercase, punctuation dropped, numbers and codes as
spoken words). Needs the ``speech`` extra (eSpeak NG).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, before numpy loads its BLAS

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydralab.audio import StreamResampler, ulaw_decode  # noqa: E402
from hydralab.caller_core import CallerConfig, prepare_audio  # noqa: E402
from hydralab.records import list_records, load_record  # noqa: E402
from hydralab.runner import _domain_text  # noqa: E402
from hydralab.script import Script, script_from_record  # noqa: E402
from hydralab.speech.stt import LocalTranscriber, transcript_wer  # noqa: E402
from hydralab.speech.tts import CALLER_VOICE, Synthesizer  # noqa: E402

PREROLL_FRAMES = 10  # the bridge's 200 ms


def phone_utterances(script: Script) -> list[np.ndarray]:
    """16 kHz PCM as the bridge buffers it for each user line."""
    config = CallerConfig()
    synth = Synthesizer(voice=config.voice, rate_wpm=config.rate_wpm)
    audio = prepare_audio(script, config=config, synthesizer=synth)
    out = []
    for utt in audio.utterances:
        pcm8 = ulaw_decode(b"".join(audio.noise_frames[:PREROLL_FRAMES] + utt.frames))
        up = StreamResampler(8000, out_rate_hz=16000)
        out.append(
            np.concatenate([up.process(pcm8[i : i + 160]) for i in range(0, len(pcm8), 160)])
        )
    return out


def clean_utterances(script: Script) -> list[np.ndarray]:
    """The same lines synthesized directly at 16 kHz."""
    synth = Synthesizer(voice=CALLER_VOICE, rate_wpm=165)
    return [
        synth.synthesize(t.spoken, sample_rate_hz=16000, noise_dbfs=-50.0, seed=i)
        for i, t in enumerate(script.user_turns)
    ]


async def measure(data_dir: Path | None, *, lw: float | None, verbose: bool) -> None:
    label = str(data_dir) if data_dir else "hydralab's own records"
    pairs: dict[str, list[tuple[str, str | None]]] = {"clean": [], "phone": []}
    stt_ms: list[float] = []
    for rid in list_records(data_dir):
        rec = load_record(rid, data_dir=data_dir)
        script = script_from_record(rec)
        options = {"lw": lw} if lw is not None else None
        tr = LocalTranscriber(_domain_text(rec), decoder_options=options)
        await tr.start()
        for path, audio in (
            ("clean", clean_utterances(script)),
            ("phone", phone_utterances(script)),
        ):
            for turn, pcm in zip(script.user_turns, audio, strict=True):
                t = await tr.transcribe(pcm, sample_rate_hz=16000)
                stt_ms.append(t.duration_ms)
                pairs[path].append((turn.text, t.text if t.ok else None))
                if verbose:
                    w = transcript_wer([(turn.text, t.text if t.ok else None)])["wer"]
                    print(f"  [{rid} {path}] WER {w:.2f} | {turn.text}\n{'':>20}-> {t.text}")
        await tr.aclose()
    for path, p in pairs.items():
        r = transcript_wer(p)
        print(
            f"{label:<24} {path:<5} WER {r['wer']:.3f} ({r['errors']}/{r['words']} words, "
            f"{r['utterances']} lines, {r['untranscribed']} untranscribed)"
        )
    print(f"{'':<24} mean {np.mean(stt_ms):.0f} ms per utterance")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data-dir", action="append", default=None, help="records folder(s); default: ours"
    )
    ap.add_argument("--lw", type=float, default=None, help="override the LM weight")
    ap.add_argument("--verbose", action="store_true", help="print every line")
    args = ap.parse_args()
    t0 = time.perf_counter()
    for d in args.data_dir or [None]:
        asyncio.run(measure(Path(d) if d else None, lw=args.lw, verbose=args.verbose))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
