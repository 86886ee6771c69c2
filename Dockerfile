# One image for all four sp4n services (intake, routing, sla, notify) and the `sp4n` CLI.
#
#   docker build -t sp4n:0.1.0 .
#   docker run --rm sp4n:0.1.0 sp4n migrate
#   docker run --rm -p 8000:8000 sp4n:0.1.0 sp4n run intake
#
# Plain Dockerfile syntax (no BuildKit-only features), so it also builds with the legacy
# builder used by docker-compose v1.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtualenv holding the pinned runtime dependencies and the sp4n package ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
# Only [project].dependencies: never the `test` extra.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -r /tmp/requirements.txt

COPY shared ./shared
COPY services ./services
RUN pip install --no-deps . \
 && pip check \
 && python -c "import shared.service, services.cli"

# --- runtime: slim base + the virtualenv, run as an unprivileged user -----------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sp4n" \
      org.opencontainers.image.description="Event backbone for SP4N-LAPOR! complaint handling: intake, routing, SLA, notify" \
      org.opencontainers.image.version="0.1.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 sp4n \
 && useradd --system --uid 10001 --gid sp4n --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin sp4n

# Owned by root and not writable by the service user.
COPY --from=build /opt/venv /opt/venv

# Mount points of the per-service credential volumes (docker-compose.yml): a new named
# volume takes this ownership, so `sp4n bootstrap` (user 10001) can write its env files.
RUN for d in migrate intake routing sla notify; do mkdir -p /var/lib/sp4n/credentials/$d; done \
 && chown -R 10001:10001 /var/lib/sp4n && chmod -R 700 /var/lib/sp4n

WORKDIR /app
USER 10001:10001

# intake 8000, routing 8001, sla 8002, notify 8003 (SP4N_<SERVICE>_PORT).
EXPOSE 8000 8001 8002 8003

# The service is chosen by the command: `sp4n migrate` or `sp4n run intake|routing|sla|notify`.
# `sp4n run <service>` execs `python -m services.<service>`, so the service is PID 1 and
# receives SIGTERM directly (graceful shutdown: SP4N_GRACEFUL_TIMEOUT_S, default 15 s).
# Readiness/liveness checks are defined by the orchestrator (the port differs per service).
CMD ["sp4n", "--help"]
