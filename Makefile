# `make demo` builds the quickstart mixture; `make test` runs lint, schema check and tests.
# Both create (or reuse) .venv and install everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-ray lint bench bench-write bench-minhash bench-scale eval-minhash eval-diversity schemas clean eval-cot eval-reasoning

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/curate build pipelines/quickstart.toml

test: $(STAMP)
	$(BIN)/ruff check curate tests benchmarks
	$(BIN)/python -m pytest

# Only the ray executor's tests (a local Ray with 2 CPUs; the dev extra installs ray, `make test` runs them too).
test-ray: $(STAMP)
	$(BIN)/python -m pytest tests/test_ray.py

lint: $(STAMP)
	$(BIN)/ruff check curate tests benchmarks
	$(BIN)/ruff format --check curate tests benchmarks

schemas: $(STAMP)
	$(BIN)/python -m curate.schema

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_build.py

# Writing 1M records to every output format vs pyarrow.parquet.write_table (needs no ../shared).
bench-write: $(STAMP)
	$(BIN)/python benchmarks/bench_write.py

# These two read ../shared/data (development data, not shipped); see benchmarks/README.md.
bench-minhash: $(STAMP)
	$(BIN)/python benchmarks/bench_minhash.py --records 100000 --repeats 1 --big 1000000

# The full pipeline at 100k/300k/1M records (local -j1, -j2, Ray on 2 CPUs, and -j1 pinned to one CPU as
# context for the -j1/-j2 ratio); reads ../shared/data. Takes long.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --sizes 100000,300000,1000000 --repeats 3,3,2 --runs w1,w2,ray,w1cpu

eval-minhash: $(STAMP)
	$(BIN)/python benchmarks/eval_minhash_quality.py --shared ../shared/data

eval-cot: $(STAMP)
	$(BIN)/python benchmarks/eval_cot.py --shared ../shared/data

eval-diversity: $(STAMP)
	$(BIN)/python benchmarks/eval_diversity.py --shared ../shared/data

eval-reasoning: $(STAMP)
	$(BIN)/python benchmarks/eval_reasoning_depth.py --shared ../shared/data

clean:
	rm -rf pipelines/out pipelines/.curate .pytest_cache .ruff_cache
