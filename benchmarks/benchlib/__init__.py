"""The pieces of ``benchmarks/bridge_bench.py`` (issue 16: performance of the bridge).

None of these modules imports hydralab at module level: the harness measures whichever
hydralab checkout ``--hydralab PATH`` names, in processes whose ``sys.path`` starts with it.

- :mod:`benchlib.frames` — pre-encoded frames: the fake caller's Twilio ``media`` frames (one tone
  per conversation, so the fake model can tell conversations apart through the bridge), the
  fake model's 48 kHz ``response.output_audio.delta`` frames, a small μ-law encoder;
- :mod:`benchlib.stats` — percentiles, pacing (deviation from a 20 ms grid, drift), latency
  matching;
- :mod:`benchlib.fake_model` — a lightweight Hydra-shaped model server (the handshake
  :class:`hydralab.client.HydraClient` expects, real-time responses);
- :mod:`benchlib.fake_caller` — N Twilio Media Streams callers in one process;
- :mod:`benchlib.relay` — the bare websockets relay (the baseline);
- :mod:`benchlib.bridge_proc` — the process under test: the bridge (``serve_bridge``) or the
  relay, plus an event-loop lag probe;
- :mod:`benchlib.procs` — child processes (spawn, command lines on stdin, CPU/RSS from
  ``/proc``) and :func:`benchlib.procs.launch_bridges`;
- :mod:`benchlib.cmdloop` — the JSON-lines command loop the child processes run;
- :mod:`benchlib.load` — one load run (model, process(es) under test, callers) and the
  analysis of its stamps (items 2–5);
- :mod:`benchlib.micro` — per-frame micro-benchmarks of the audio path (item 1);
- :mod:`benchlib.startup` — import time and ``run_record`` time to the first frame (item 6);
- :mod:`benchlib.profile_call` — one offline call under a profiler (item 7), attributed by
  :mod:`benchlib.attrib`;
- :mod:`benchlib.report` — the Markdown tables and the ``--compare`` headline metrics.
"""
