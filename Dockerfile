# clipsvc: CLIP image and text embeddings over HTTP (Flask + gunicorn), CPU image.
#
#   docker build -t clipsvc .
#   docker run -v /path/to/host/model:/model -p 8081:8081 clipsvc
#
# Give `docker stop` at least CLIP_GRACEFUL_TIMEOUT (e.g. `docker stop -t 70`): its default is 10 s.
# Behind a mirror or without a network, the build arguments below change where the build looks, not what it
# builds: docs/deployment.md has the `docker build --build-arg ...` lines.

# Both stages' base; a registry mirror's copy of it: --build-arg BASE_IMAGE=mirror.example.com/python:3.11-slim-bookworm
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- builder: resolve and install the pinned dependencies into a self-contained venv.
FROM ${BASE_IMAGE} AS builder

# Where pip looks. PIP_INDEX_URL: PyPI or its mirror. TORCH_INDEX_URL: the index of torch's CPU wheels
# (torch==2.13.0 is matched by 2.13.0+cpu); without it PyPI's build pulls several GB of CUDA libraries; empty
# when wheels/ holds the torch wheel. wheels/ (empty in the repo) is searched too (--find-links), and
# PIP_NO_INDEX=1 makes it the only source, for an air-gapped build. The check after the install fails the build
# on a CUDA torch. pip precompiles the venv's .pyc files here, so the runtime's PYTHONDONTWRITEBYTECODE costs
# nothing. None of this reaches the final stage.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_NO_INDEX=0
ENV PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL} \
    PIP_NO_INDEX=${PIP_NO_INDEX} \
    PIP_FIND_LINKS=/wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY wheels/ /wheels/
COPY requirements.txt .
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt \
    && /opt/venv/bin/python -c "import torch, sys; sys.exit(torch.version.cuda is not None)"

# ---- runtime: the venv and the app only; no compilers, no pip caches, no wheels, no tests.
FROM ${BASE_IMAGE}

# Every setting with its default from clipsvc/settings.py, so `docker inspect` shows them all.
# CLIP_TORCH_THREADS is left unset on purpose: by default each forward pass takes cores ÷ busy workers.
# CLIP_API_KEYS and CLIP_API_KEYS_FILE are empty, as by default (no key needed): give keys at run time, best as a
# mounted secret file (SECURITY.md), so that no key is in the image or in `docker inspect`.
# hadolint ignore=DL3064
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PORT=8081 \
    CLIP_MODEL_DIR=/model \
    CLIP_MODEL_CACHE_DIR=/tmp/clipsvc-models \
    WEB_CONCURRENCY=2 \
    CLIP_DEVICE=auto \
    CLIP_CPU_ENGINE=openvino \
    CLIP_CPU_PACKED_WEIGHTS=on \
    CLIP_PRECISION=auto \
    CLIP_PRECISION_MIN_COSINE="" \
    CLIP_TEXT_CACHE_SIZE=4096 \
    CLIP_MAX_REQUEST_MB=64 \
    CLIP_MAX_IMAGE_MB=20 \
    CLIP_MAX_IMAGE_PIXELS=40000000 \
    CLIP_MAX_TEXT_WORDS=50 \
    CLIP_MAX_ITEMS=64 \
    CLIP_WORKER_TIMEOUT=300 \
    CLIP_GRACEFUL_TIMEOUT=60 \
    CLIP_MAX_REQUESTS=10000 \
    CLIP_MAX_REQUESTS_JITTER=1000 \
    CLIP_BATCHING=auto \
    CLIP_MAX_BATCH=64 \
    CLIP_BATCH_WAIT_MS=5 \
    CLIP_THREADS=8 \
    CLIP_HEADER_TIMEOUT_S=5 \
    CLIP_CLIENT_TIMEOUT_S=20 \
    CLIP_CLIENT_MIN_RATE=500 \
    CLIP_FETCH_ALLOW_HOSTS="" \
    CLIP_FETCH_TIMEOUT_S=5 \
    CLIP_LOG_LEVEL=info \
    CLIP_TRUSTED_PROXIES="" \
    CLIP_CORS_ORIGINS="" \
    CLIP_API_KEYS="" \
    CLIP_API_KEYS_FILE=""

RUN groupadd --system --gid 10001 clipsvc \
    && useradd --system --uid 10001 --gid clipsvc --create-home --home-dir /home/clipsvc \
       --shell /usr/sbin/nologin clipsvc \
    && mkdir -p /model /tmp/clipsvc-models \
    && chown clipsvc:clipsvc /tmp/clipsvc-models

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY clipsvc/ ./clipsvc/
COPY wsgi.py gunicorn.conf.py ./

USER 10001:10001

EXPOSE 8081
VOLUME /model

# GET http://127.0.0.1:${PORT}/readyz (urllib: slim images have no curl); any non-200 raises, exit 1.
# Ready once a worker has loaded the model; ViT-L/14 on CPU takes a while, hence the start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT') or 8081}/readyz\", timeout=5)"]

# Exec form: clipsvc.server.start refuses a bad setting with one JSON line (gunicorn itself would die on a
# WEB_CONCURRENCY that is not a number with a traceback, before reading its config), then execs
# `gunicorn -c gunicorn.conf.py wsgi:app`, which is PID 1 and gets SIGTERM directly for a graceful shutdown.
CMD ["python", "-m", "clipsvc.server.start", "-c", "gunicorn.conf.py", "wsgi:app"]
