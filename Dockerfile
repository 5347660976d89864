# syntax=docker/dockerfile:1
# The multicluster daemon (and the kubectl-multicluster plugin) in a slim, non-root image.
#   docker build -t multicluster:0.1.0 .
#   mkdir -p conf/api && openssl rand -hex 32 > conf/api/token && openssl rand -hex 32 > conf/api/adminToken
#   docker run --rm -p 127.0.0.1:31888:31888 -v "$PWD/conf:/etc/multicluster:ro" -v mc-data:/var/lib/multicluster \
#     multicluster:0.1.0 --config /etc/multicluster/config.yaml --bind 0.0.0.0 \
#     --token-file /etc/multicluster/api/token --admin-token-file /etc/multicluster/api/adminToken \
#     --sqlite-path /var/lib/multicluster/mc.db
# (Kubernetes: manifests/deploy.yaml or manifests/chart, with MySQL/MariaDB; docs/deploy.md.)
# Fixes to the Go original's image: no build inputs that are gitignored, no root user, EXPOSE and HEALTHCHECK
# present, config and secrets mounted at run time instead of baked in. The API listens on every address of the
# container, so the default command requires the bearer tokens (files, never arguments or environment).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------- builder
# Builds wheels for the project and every dependency, then installs them into a virtualenv that the runtime stage
# copies whole. Every dependency ships manylinux wheels for amd64 and arm64, so no compiler is needed.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/multicluster \
    WHEELS=/wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY multicluster ./multicluster
COPY plugin ./plugin
# tests/deploy/test_image.py runs this exact command (with VIRTUAL_ENV and WHEELS pointing into a temp dir).
# install-command
RUN python -m venv "$VIRTUAL_ENV" \
 && python -m pip wheel --wheel-dir "$WHEELS" . \
 && "$VIRTUAL_ENV/bin/python" -m pip install --no-index --find-links "$WHEELS" multicluster \
 && "$VIRTUAL_ENV/bin/python" -m pip uninstall --yes pip setuptools

# ---------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="multicluster" \
      org.opencontainers.image.description="Mirror Kubernetes objects of many clusters into SQL; query API and delivery controller" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 multicluster \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin multicluster \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/multicluster
COPY --from=builder /opt/multicluster /opt/multicluster
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the Deployment (bytecode was compiled at install).
# HOME=/tmp and /var/lib/multicluster: the only writable places (emptyDirs in the Deployment); the state dir holds
# joined clusters' kubeconfigs (its default, next to the config file, is a read-only mount).
ENV PATH=/opt/multicluster/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MULTICLUSTER_STATE_DIR=/var/lib/multicluster/state
USER 10001:10001
WORKDIR /tmp
EXPOSE 31888
# No curl in slim images: probe with the interpreter. /healthz never needs the bearer token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MULTICLUSTER_PORT', '31888'), timeout=4)"]
ENTRYPOINT ["multicluster", "run"]
CMD ["--config", "/etc/multicluster/config.yaml", "--bind", "0.0.0.0", "--token-file", "/etc/multicluster/api/token", "--admin-token-file", "/etc/multicluster/api/adminToken"]
