# hydralab — the README commands: `make demo`, `make test` and `make lab`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := speech,notebooks,dev,ray
STAMP  := $(VENV)/.installed

.PHONY: demo test lab venv lint typecheck bench bench-resample clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

## One offline conversation of the default record (caller -> bridge -> Hydra emulator).
demo: $(STAMP)
	$(BIN)/hydralab run --out runs

## The whole suite: lint, types, unit + end-to-end tests, notebooks (nbval).
## Tests run on 3 workers, one test file per worker at a time (most calls are simulated in
## virtual time; the real-socket ones mostly wait); then, alone, the two files that load every
## core (a local Ray cluster; two serve worker processes with 12 callers), so that they never
## skew the timing of the real-socket calls beside them; then the notebooks, side by side.
HEAVY_TESTS := tests/test_ray_batch.py tests/test_serve_workers.py
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -n 3 --dist loadfile tests $(addprefix --ignore=,$(HEAVY_TESTS))
	$(BIN)/python -m pytest $(HEAVY_TESTS)
	$(BIN)/python -m pytest -n 3 --dist loadfile notebooks

## JupyterLab on notebooks/ (the venv with the notebooks extra, as `make test` sets it up),
## listening on 127.0.0.1 only.
lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 notebooks/

lint: $(STAMP)
	$(BIN)/ruff check hydralab tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy hydralab

## Performance of the bridge (issue 16): one run, ~9 minutes (benchmarks/README.md). BENCH_ARGS
## passes options, e.g. `make bench BENCH_ARGS="--quick"` (~2 minutes), or beside the kept run of
## the tree before the optimisation, without overwriting the kept files:
## BENCH_ARGS="--compare benchmarks/results/bridge_bench_before.json --json /tmp/after.json".
## The resampler comparison: `make bench-resample`.
bench: $(STAMP)
	$(BIN)/python benchmarks/bridge_bench.py $(BENCH_ARGS)

bench-resample: $(STAMP)
	$(BIN)/python benchmarks/resample_bench.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
