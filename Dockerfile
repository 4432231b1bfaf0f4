# syntax=docker/dockerfile:1
# One image for the proxy, the collector and the migration job of the stack:
# docker-compose.yml runs it as `pgpulse proxy`, `pgpulse collect` or `pgpulse migrate`.
#
#   docker build -t pgpulse:local .
#
# Two stages: the first builds pgpulse's wheel and installs it (not editable) into a
# virtualenv (pip, build tools, caches stay there); the second holds only that
# virtualenv and pg_dump/pg_restore. The migrations ship inside the package, so no
# source tree is needed at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The console's chart library, from npm at build time (never committed): only the
# lock file's production dependencies (npm ci --omit=dev), copied into the package
# before the wheel is built, so the proxy of the stack serves the console too.
FROM node:20-bookworm-slim AS console
WORKDIR /console
COPY proxy/console/package.json proxy/console/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pgpulse ./pgpulse
COPY collector ./collector
COPY proxy ./proxy
COPY etl ./etl
COPY --from=console /console/node_modules ./proxy/console/node_modules
RUN python -m venv /opt/pgpulse \
 && /opt/pgpulse/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/pgpulse/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels /src \
 && /opt/pgpulse/bin/pip install --no-cache-dir /tmp/wheels/pgpulse-*.whl \
 # The embedded PostgreSQL (pgserver, ~35 MB) is for running without DATABASE_URL;
 # in the stack DATABASE_URL is always set and pgpulse never imports it.
 && /opt/pgpulse/bin/pip uninstall --yes pgserver \
 && find /opt/pgpulse -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ARG PG_MAJOR=16
# pg_dump and pg_restore of the server's major version, for `pgpulse backup` and
# `pgpulse restore` (Debian's own client is older): from the PostgreSQL project's
# apt repository, set up by the script postgresql-common ships.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
 && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/pgpulse --shell /usr/sbin/nologin pgpulse \
 && install -d -o pgpulse -g pgpulse /var/lib/pgpulse

COPY --from=build /opt/pgpulse /opt/pgpulse

ENV PATH=/opt/pgpulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PGPULSE_DATA_DIR=/var/lib/pgpulse

# Writable, and holds no .env: settings come from the environment only.
WORKDIR /var/lib/pgpulse
USER pgpulse
EXPOSE 8085
CMD ["pgpulse", "proxy"]
