# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOT_DB_PATH=/data/bot.sqlite3

# The user and the database folder never change: the first layers, built once.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /data \
    && chown bot /data

WORKDIR /app

# The dependencies, in a layer of their own: rebuilt only when pyproject.toml or
# requirements.lock change, not on every code change. Only the runtime dependencies
# (pyproject's [project] dependencies, not the test extra), at the lock's versions.
COPY pyproject.toml requirements.lock ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' >/tmp/runtime.txt \
    && pip install -c requirements.lock -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt

# The code, installed without touching the dependencies; `pip check` fails the build if the
# layer above no longer satisfies pyproject.toml.
COPY README.md LICENSE ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install --no-deps . \
    && pip check

USER 10001
VOLUME ["/data"]
# Prometheus metrics (/metrics) and /healthz, when BOT_METRICS__PORT=9464 (see compose.yaml).
EXPOSE 9464

# Unhealthy when the configuration is unusable or the running bot stopped writing its
# heartbeat (it does so every 30 s while connected).
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot", "health"]

ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
