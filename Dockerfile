# The signaling server as an image: Daphne on $PORT (10000 unless set), as
# scripts/serve runs it. Migrations are not run here; run
# `python manage.py migrate --noinput` once per release (docker-compose.yml
# has a one-shot service for it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=10000

WORKDIR /app

# Dependencies first: this layer is rebuilt only when they change. The lock
# (scripts/lock) pins every package of the closure with its hashes; each
# installs from a wheel, so no compiler is needed.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY manage.py ./
COPY signaling ./signaling
COPY signaling_site ./signaling_site

# Static files (the admin's and the web client's) are collected into the
# image, where WhiteNoise serves them. Settings refuse to load without a
# secret key; this one exists only for this build step.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-used-at-run-time \
    python manage.py collectstatic --noinput --verbosity 0

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin signaling
USER signaling

EXPOSE 10000

# Liveness (/livez: the process answers), not readiness (/healthz fails
# while Redis or the database is down, and restarting cannot mend that).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/livez', timeout=4)"

# exec: Daphne replaces the shell, so `docker stop` (SIGTERM) reaches it and
# every client is told to reconnect (close code 4003) before it exits.
# --websocket_timeout -1: Daphne would close every socket after 24 hours.
CMD ["sh", "-c", "exec daphne -b 0.0.0.0 -p \"$PORT\" --websocket_timeout -1 --ping-interval 15 --ping-timeout 15 signaling_site.asgi:application"]
