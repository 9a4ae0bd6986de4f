# One image for every role: the command selects it (`mitwirkung serve registration|notification|proposals`,
# `mitwirkung setup`, `mitwirkung migrate`); see infra/docker-compose.yml and docs/deploy-compose.md.
#
# The base is pinned to an exact release. Pin its digest as well where the image is built (a registry
# must be asked for it, which this project's machines cannot):
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm   ->  sha256:…
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:… -t mitwirkung:0.1.0 .
# tests/deploy/test_dockerfile.py checks the rules this file keeps.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: the locked dependencies and the project's wheel, in a virtual environment -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Only what the lock names, each file checked against its hash, only prebuilt wheels (no compiler).
COPY requirements.lock requirements-build.lock /build/
RUN python -m venv /opt/mitwirkung \
 && /opt/mitwirkung/bin/pip install --require-hashes --no-deps --only-binary=:all: -r /build/requirements.lock \
 && python -m venv /opt/builder \
 && /opt/builder/bin/pip install --require-hashes --no-deps --only-binary=:all: -r /build/requirements-build.lock
COPY pyproject.toml /build/src/
COPY shared /build/src/shared
COPY services /build/src/services
# The project itself: its wheel, built without fetching anything, installed without its dependencies
# (they are the locked ones above). Then out with what only installing needs (pip, the venv's
# setuptools) and with the ReDoc bundle next to Swagger UI's files (no page of ours loads it).
RUN /opt/builder/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /build/wheels /build/src \
 && /opt/mitwirkung/bin/pip install --no-deps --no-index /build/wheels/mitwirkung-*.whl \
 && /opt/mitwirkung/bin/pip uninstall --yes setuptools pip \
 && rm /opt/mitwirkung/lib/python3.11/site-packages/fastapi_offline/static/redoc.standalone.js \
 && /opt/mitwirkung/bin/python -m compileall -q /opt/mitwirkung/lib

# --- runtime: the environment, a numeric non-root user, nothing else ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mitwirkung \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mitwirkung
COPY --from=build /opt/mitwirkung /opt/mitwirkung
ENV PATH=/opt/mitwirkung/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_JSON=true
WORKDIR /opt/mitwirkung
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# registration, notification (ingest), proposals, the notification sender (NOTIFICATION_PORT=8004).
EXPOSE 8001 8002 8003 8004
# /healthz of whichever service this container serves (standard library only: no curl in the image).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "shared.healthcheck", "/healthz"]
CMD ["mitwirkung", "serve", "registration"]
