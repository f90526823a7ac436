# Set-up, demo, tests and benchmarks. Every target builds .venv first if it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench lint clean

$(BIN)/trellic: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Pin torch: on these machines 2.13.0 is a local CPU wheel; an unpinned torch pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,plot]'
	touch $@

setup: $(BIN)/trellic

# One Kodak image coded by the default model with rounding, RDOQ and the 4-state trellis, each at
# the lambda_t compress uses by default (printed).
IMAGE ?= $(or $(TRELLIC_DATA),../shared/data)/kodak/kodim23.png

demo: setup
	mkdir -p out
	for q in usq rdoq tcq4; do \
		$(BIN)/trellic compress $(IMAGE) out/demo-$$q.trl --quantizer $$q --force -v && \
		$(BIN)/trellic decompress out/demo-$$q.trl out/demo-$$q.png --force --reference $(IMAGE) \
		|| exit 1; \
	done

test: setup
	$(BIN)/python -m pytest -q -n 2

bench: setup
	$(BIN)/python bench/codec_speed.py

lint: setup
	$(BIN)/ruff check trellic tests bench

clean:
	rm -rf $(VENV) out
