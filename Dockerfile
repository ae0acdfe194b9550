# The rehabgate image: the gatekeeper and the notifier (and every other
# `rehabgate` command) in one image; compose.yaml picks the command.
#
# - Dependencies come only from requirements.lock (runtime only, every package
#   pinned with its hashes; `make lock` refreshes it): nothing is resolved here.
# - The project is built as a wheel with the lock's setuptools (no build
#   isolation, so nothing else is fetched) and installed without dependencies.
# - It runs as the non-root user `rehabgate` (uid 10001) on a root-owned virtual
#   environment; nothing is installed when a container starts.
#
# tests/integration/test_container_image.py runs this file's RUN and CMD lines
# in a fresh virtual environment as a non-root user (no Docker engine needed):
# keep paths in the ARG/ENV variables below and the commands plain `sh`.
# Pin the base by digest with --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG VENV=/opt/rehabgate
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.lock ./
RUN python -m venv "$VENV" \
 && "$VENV/bin/python" -m pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY services/ services/
RUN "$VENV/bin/python" -m pip wheel --no-deps --no-build-isolation --wheel-dir wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG VENV=/opt/rehabgate
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=builder ${VENV} ${VENV}
COPY --from=builder /build/wheels /tmp/wheels
RUN "$VENV/bin/python" -m pip install --no-deps --no-index /tmp/wheels/rehabgate-*.whl \
 && "$VENV/bin/python" -m pip check \
 && rm -rf /tmp/wheels
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/rehabgate \
    --shell /usr/sbin/nologin rehabgate
ENV PATH="${VENV}/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REHABGATE_HTTP_HOST=0.0.0.0
USER 10001:10001
WORKDIR /home/rehabgate
# The gatekeeper (physio pages, health, metrics) and the notifier (health, metrics).
EXPOSE 8080 8081
CMD ["rehabgate", "--help"]
