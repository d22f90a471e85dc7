# callsheet worker image: `docker run` runs a pass every 5 minutes until stopped.
# Build:  docker build -t callsheet .
# Run:    see README.md ("Run it on a schedule") or scripts/compose.yaml.

FROM python:3.12-slim AS build
WORKDIR /src
# The pinned, hash-checked packages first (a layer that changes only with the lock), then the
# project itself without resolving anything again.
COPY requirements.lock ./
RUN python -m venv /opt/callsheet \
 && /opt/callsheet/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/callsheet/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY connectors ./connectors
RUN /opt/callsheet/bin/pip install --no-cache-dir --no-deps . \
 && /opt/callsheet/bin/pip check

FROM python:3.12-slim
# Non-root user; its home holds nothing of value. Config, roster, token and state live in
# /config and /state, which are volumes.
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin callsheet \
 && mkdir -p /config /state \
 && chown callsheet:callsheet /state \
 && chmod 0700 /state
COPY --from=build /opt/callsheet /opt/callsheet
COPY scripts/authorize_google.py /opt/callsheet/scripts/authorize_google.py
ENV PATH="/opt/callsheet/bin:${PATH}" \
    CALLSHEET_CONFIG=/config/config.toml \
    PYTHONUNBUFFERED=1
USER callsheet
WORKDIR /state
VOLUME ["/state", "/config"]
# Unhealthy when the last good pass is older than three intervals.
HEALTHCHECK --interval=5m --timeout=30s --start-period=2m --retries=1 \
  CMD ["callsheet", "check", "--health"]
ENTRYPOINT ["callsheet"]
CMD ["run", "--every", "5m"]
