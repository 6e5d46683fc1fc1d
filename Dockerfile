# syntax=docker/dockerfile:1
# Orpheus streaming TTS gateway.
#
#   docker build -t orpheus-gateway .                                 # CPU torch (default)
#   docker build --build-arg TORCH_VARIANT=cuda -t orpheus-gateway:cuda .
#   docker run --rm -p 8000:8000 -e TTS_DEMO=1 orpheus-gateway       # offline demo (noise)
#   docker build --target stress -t orpheus-gateway:stress .          # the stress test
#
# TORCH_VARIANT: "cpu" takes PyTorch's CPU-only wheels (an image several GiB smaller);
# "cuda" takes PyPI's default Linux build, which bundles its CUDA runtime (the host only
# needs the NVIDIA driver and container toolkit); any other value names a wheel index of
# download.pytorch.org (e.g. cu128) for a specific CUDA version.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first and pinned: the package does not declare it (a resolver would pull the CUDA
# build), and snac, which does, then finds it already satisfied.
RUN case "$TORCH_VARIANT" in \
        cuda) pip install "torch==${TORCH_VERSION}" ;; \
        *) pip install "torch==${TORCH_VERSION}" \
               --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" ;; \
    esac
WORKDIR /src
# README.md is the package's declared readme: the build needs it.
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install . \
    && python -c "import app, snac, torch, av; print('torch', torch.__version__)"

# The stress test (stress-test.yaml builds this target; `docker build .` skips it): the
# build stage's packages plus stress_test and its [stress] extra. It runs as root so it can
# write its results into a bind-mounted folder whatever that folder's owner.
FROM build AS stress
COPY stress_test ./stress_test
RUN pip install ".[stress]" \
    && python -m stress_test --help > /dev/null
WORKDIR /work
ENTRYPOINT ["python", "-m", "stress_test"]
CMD ["--help"]

FROM ${PYTHON_IMAGE}
# Created before VOLUME so that fresh named volumes inherit the non-root owner.
RUN useradd --create-home --uid 10001 --user-group gateway \
    && mkdir -p /data/cache \
    && chown -R gateway:gateway /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data \
    CACHE_DIR=/data/cache \
    HF_HOME=/data/cache/huggingface
VOLUME ["/data", "/data/cache"]
USER gateway
WORKDIR /home/gateway
EXPOSE 8000
# Python rather than curl: the slim image has no curl. urlopen raises on any non-2xx, and
# /health only answers once the models are loaded, hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "app"]
