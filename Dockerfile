# syntax=docker/dockerfile:1
# Watchword: build a wheel, then install it into a slim runtime that runs as a non-root user.
#
#   docker build -t watchword .
#   docker run -d -p 50051:50051 -v watchword-data:/var/lib/watchword watchword
#   docker logs <container> 2>&1 | grep WATCHWORD_ADMIN_TOKEN     # printed once, on first start

# ---- builder: the project's wheel and the wheels of the locked dependencies ----
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Exactly the versions of requirements/serve.lock, hash-checked (the lock holds setuptools too, so the
# project builds without fetching an unpinned build backend).
COPY requirements/serve.lock requirements/otel-proto.lock ./requirements/
RUN pip install --require-hashes -r requirements/serve.lock \
    && pip wheel --require-hashes -r requirements/serve.lock --wheel-dir /wheels
# The package is under server/ (generated stubs, migrations and the default catalogue included);
# README.md is the package's long description, named in pyproject.toml.
COPY pyproject.toml README.md ./
COPY server ./server
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels/project .

# ---- runtime ----
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Install from the builder's wheels only: no compiler, no sources, no network needed here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/src/requirements,target=/requirements \
    pip install --no-index --find-links=/wheels --require-hashes -r /requirements/serve.lock \
    && pip install --no-index --find-links=/wheels --no-deps --force-reinstall --require-hashes -r /requirements/otel-proto.lock \
    && pip install --no-index --no-deps /wheels/project/watchword-*.whl
RUN groupadd --gid 10001 watchword \
    && useradd --uid 10001 --gid watchword --home-dir /var/lib/watchword \
       --no-create-home --shell /usr/sbin/nologin watchword \
    && install -d -o watchword -g watchword -m 0700 /var/lib/watchword
# Listen on the container's interfaces; the metrics endpoint has no authentication: publish 9464 only to
# the network Prometheus scrapes from.
ENV WATCHWORD_HOST=0.0.0.0 WATCHWORD_HTTP_HOST=0.0.0.0 WATCHWORD_METRICS_HOST=0.0.0.0 \
    WATCHWORD_EXT_AUTHZ_HTTP_HOST=0.0.0.0 WATCHWORD_DATA_DIR=/var/lib/watchword
WORKDIR /var/lib/watchword
USER 10001:10001
# gRPC, the OAuth HTTP endpoints (token, JWKS, metadata), Prometheus metrics. Envoy's HTTP ext_authz
# front door (E4) is off unless WATCHWORD_EXT_AUTHZ_HTTP_PORT is set (publish that port too), and
# WATCHWORD_WORKERS=0 runs one worker process per core the container may use.
EXPOSE 50051 8080 9464
# gRPC health check of the whole server over plaintext on the configured port (replace it when TLS is on).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; r = g.HealthStub(grpc.insecure_channel('127.0.0.1:' + os.environ.get('WATCHWORD_PORT', '50051'))).Check(h.HealthCheckRequest(), timeout=3); sys.exit(r.status != h.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["watchword"]
CMD ["serve"]
