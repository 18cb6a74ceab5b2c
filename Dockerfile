# syntax=docker/dockerfile:1
#
# The Shrink image: API, workers, migrations and the admin CLI are all `shrink <command>`.
#
# CPU (default):
#   docker build -t shrink:latest .
# GPU (CUDA base; PyPI's Linux torch wheel is the CUDA build and brings its own CUDA libraries;
# onnxruntime's CUDA build, whose CUDA and TensorRT providers run the `gpu` queue's benchmarks):
#   docker build -t shrink-gpu:latest \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://pypi.org/simple \
#     --build-arg ONNXRUNTIME_GPU_VERSION=1.31.1 .
#
# The base must be Debian or Ubuntu. python:3.11-slim ships Python; the CUDA bases ship none, so
# the `base` stage installs the distribution's python3 (3.12 on Ubuntu 24.04; pyproject.toml
# accepts 3.11 and 3.12).

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive
# tini is PID 1: it forwards SIGTERM to the one process it starts (so Celery's warm shutdown
# runs, and a Python PID 1 such as `shrink migrate` stops on `docker stop`) and reaps orphans
# left by the engine's sandboxed children.
RUN set -eux; \
    apt-get update; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends python3 python3-venv; \
    fi; \
    apt-get install -y --no-install-recommends tini; \
    rm -rf /var/lib/apt/lists/*


FROM base AS build
# CPU torch by default: PyPI's torch==2.13.0 for Linux is the CUDA build (several GiB of nvidia-*
# wheels). Keep TORCH_VERSION equal to the pin in pyproject.toml (tests/ops checks it).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall torch.
# torch comes first from its own index; the pinned dependencies then find it satisfied
# (2.13.0+cpu satisfies ==2.13.0), and everything else comes from PyPI.
COPY pyproject.toml README.md requirements-nodeps.txt ./
RUN pip install "torch==${TORCH_VERSION}" --extra-index-url "${TORCH_INDEX_URL}" \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt --extra-index-url "${TORCH_INDEX_URL}"
# --no-deps: see the comment in requirements-nodeps.txt (onnx2torch declares torchvision, and
# PyPI's torchvision does not import beside the CPU torch).
RUN pip install --no-deps -r requirements-nodeps.txt
# The CPU image must stay CPU-only: a CUDA torch would have pulled nvidia-* wheels.
RUN set -eu; \
    case "${TORCH_INDEX_URL}" in \
      */cpu) if pip list --format=freeze | grep -i '^nvidia-'; then \
               echo "CUDA packages in the CPU image" >&2; exit 1; fi ;; \
    esac; \
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# The GPU image runs onnxruntime's CUDA build (onnxruntime-gpu): the CPU build has no CUDA
# provider, and a `cuda` benchmark would be refused. Both install the module `onnxruntime`, so
# the CPU build goes first. Empty (the default): the CPU build stays.
ARG ONNXRUNTIME_GPU_VERSION=
RUN set -eu; \
    if [ -n "${ONNXRUNTIME_GPU_VERSION}" ]; then \
        pip uninstall -y onnxruntime; \
        pip install "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"; \
        python -c "import onnxruntime as o; p = o.get_available_providers(); assert 'CUDAExecutionProvider' in p, p; print(p)"; \
    fi

# The code. Editable, so that the package root stays /app, where alembic.ini and migrations/
# live (they are not part of the Python packages).
COPY . .
RUN pip install --no-deps -e . \
    && python -m compileall -q api core worker engine


FROM base AS runtime
# UID 10001: clear of the distributions' own users (ubuntu is 1000); deploy/k8s runs as it.
RUN groupadd --gid 10001 shrink \
    && useradd --uid 10001 --gid shrink --home-dir /home/shrink \
        --create-home --shell /usr/sbin/nologin shrink \
    && mkdir -p /var/lib/shrink \
    && chown shrink:shrink /var/lib/shrink
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# SHRINK_DATA_DIR holds the work folders of jobs (mount a volume or an emptyDir there); caches
# go to /tmp so that the root filesystem can be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    SHRINK_DATA_DIR=/var/lib/shrink \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["shrink", "api", "--host", "0.0.0.0", "--port", "8000"]
