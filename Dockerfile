# nbhelp: the chat bot, its status page and its sandboxed /run kernels in one image.
#
#   docker build -t nbhelp .
#   docker run --rm -p 8080:8080 -v nbhelp-data:/data --env-file .env \
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     --security-opt systempaths=unconfined nbhelp
#
# The three security options let bubblewrap (the /run sandbox) create its namespaces and mount
# a fresh /proc inside the container; never run it --privileged. compose.yaml sets them.
# See docs/deploy.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bubblewrap: the /run sandbox; util-linux's unshare/setpriv and mount are in the base image.
# Versions come from the Debian release the base image pins, with its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

# The bot runs as an unprivileged user; its database lives on the /data volume.
RUN groupadd --system --gid 10001 nbhelp \
    && useradd --system --uid 10001 --gid nbhelp --home-dir /app --shell /usr/sbin/nologin nbhelp \
    && mkdir -p /data \
    && chown nbhelp:nbhelp /data

WORKDIR /app
# Pinned dependencies first (a layer that changes only when requirements.txt does), then the
# project itself with every extra (their dependencies are all in requirements.txt).
COPY requirements.txt ./
RUN pip install --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY knowledge ./knowledge
# hadolint ignore=DL3013
RUN pip install --no-deps ".[kernels,telegram,discord,web]" \
    && python -c "import bot.web.app, bot.kernels, telegram, discord, jinja2, prometheus_client"

USER 10001:10001
# The web port: NBHELP_WEB__PORT, else $PORT (set by Heroku-like hosts), else 8080.
ENV NBHELP_DB=/data/nbhelp.db \
    NBHELP_OUT_DIR=/data/out \
    NBHELP_WEB__HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; p = os.environ.get('NBHELP_WEB__PORT') or os.environ.get('PORT') or '8080'; u.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=4)"]

# The web process: status page, API, metrics and (with tokens set) the chat adapters.
CMD ["python", "-m", "bot", "web"]
