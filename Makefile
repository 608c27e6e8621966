# Shortcuts for the commands in README.md and docs/deployment.md. `make venv` once, then the others.
# Variables can be overridden: `make run CLIP_MODEL_DIR=/path/to/clip-vit-large-patch14 WEB_CONCURRENCY=4`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip options, e.g. PIP_FLAGS="--extra-index-url https://download.pytorch.org/whl/cpu" for the CPU torch.
PIP_FLAGS ?=
CLIP_MODEL_DIR ?= models/vit-l-14
STANDIN_DIR ?= models/vit-l-14
STANDIN_ARCH ?= vit-l-14
BENCH_ARGS ?= --clients 1,4 --requests 40 --rounds 4
IMAGE ?= clipsvc
GPU_IMAGE ?= clipsvc-gpu
# Options for scripts/docker-check: --build-arg NAME=VALUE (the Dockerfile's), --wheels DIR, --network host, ...
# e.g. DOCKER_CHECK_ARGS="--wheels /opt/wheels --network host" where the PyTorch index is out of reach.
DOCKER_CHECK_ARGS ?=
# What `make test-all` sets, as .ci/run does: these tests fail rather than skip when their tool is missing.
REQUIRED := CLIPSVC_REQUIRE_NEWMAN=1 CLIPSVC_REQUIRE_CLIP_CLIENT=1 CLIPSVC_REQUIRE_BROWSER=1 CLIPSVC_REQUIRE_KUBECTL=1

.PHONY: venv run test test-all bench standin lint docker docker-gpu docker-check

# A virtualenv with the runtime and test dependencies (requirements-dev.txt includes requirements.txt).
venv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -r requirements-dev.txt

# Serve on port $PORT (default 8081); write a stand-in model first with `make standin` if you have no real one.
run:
	. $(BIN)/activate && CLIP_MODEL_DIR=$(CLIP_MODEL_DIR) gunicorn -c gunicorn.conf.py wsgi:app

# The README's test command, as CI's .ci/run runs it.
test:
	. $(BIN)/activate && ruff check . && python -m pytest

# The whole suite as .ci/run runs it, the tests that otherwise skip required: newman from package-lock.json (needs
# node and npm), clip-as-service's client in its own environment, the browser test (needs chromium and chromedriver
# installed). After `make venv` (or the README's test command). The Docker image check still skips without an engine.
test-all:
	npm ci --include=dev --no-audit --no-fund
	$(PYTHON) -m venv .venv-clip-client
	.venv-clip-client/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-clip-client.txt
	. $(BIN)/activate && export $(REQUIRED) && ruff check . && python -m pytest

# The service against transformers alone on a ViT-B/32 stand-in; BENCH_ARGS for more (bench/perf.py --help).
bench:
	. $(BIN)/activate && python bench/perf.py --arch vit-b-32 $(BENCH_ARGS)

# A ViT-L/14 stand-in (true shapes, random weights: meaningless vectors) where `make run` looks by default.
standin:
	. $(BIN)/activate && python -m clipsvc.standin $(STANDIN_DIR) --arch $(STANDIN_ARCH)

lint:
	. $(BIN)/activate && ruff check . && hadolint Dockerfile Dockerfile.gpu

docker:
	docker build -t $(IMAGE) .

docker-gpu:
	docker build -f Dockerfile.gpu -t $(GPU_IMAGE) .

# Build the CPU image, run it as the README says on a tiny stand-in model, and check it (scripts/docker-check --help).
docker-check:
	. $(BIN)/activate && scripts/docker-check --image $(IMAGE) $(DOCKER_CHECK_ARGS)
