"""Django settings, read from the environment (see the README's table)."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from signaling.presence.redis_connection import RedisConfig

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string "
            "(or set DJANGO_DEBUG=1 for local development); scripts/serve "
            "creates one in .secret_key for you."
        )
    SECRET_KEY = "insecure-development-key-only-for-DJANGO_DEBUG"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
if os.environ.get("RENDER_EXTERNAL_HOSTNAME"):
    ALLOWED_HOSTS.append(os.environ["RENDER_EXTERNAL_HOSTNAME"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "signaling",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "signaling_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "signaling_site.asgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (and a sweeping cron job) share the file: wait for
    # locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20,
        # WAL: readers (the admin) never block the session writer; NORMAL
        # sync is durable enough for rows that are rebuilt on restart.
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Behind a TLS-terminating proxy (Render, nginx) the scheme comes from here.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
if os.environ.get("RENDER_EXTERNAL_HOSTNAME"):
    CSRF_TRUSTED_ORIGINS.append(f"https://{os.environ['RENDER_EXTERNAL_HOSTNAME']}")

# Channel layer: in-memory for one process; Redis when several share users,
# given as one URL or as Sentinels (signaling/presence/redis_connection.py).
try:
    REDIS = RedisConfig.from_environment(os.environ)
except ValueError as error:
    raise ImproperlyConfigured(f"Redis settings: {error}") from None
REDIS_URL = REDIS.url
SIGNALING_CHANNEL_CAPACITY = int(env_number("SIGNALING_CHANNEL_CAPACITY", 1000))
# Whole seconds: Redis's EXPIRE takes integers.
SIGNALING_MESSAGE_EXPIRY_SECONDS = int(env_number("SIGNALING_MESSAGE_EXPIRY_SECONDS", 60))
SIGNALING_GROUP_EXPIRY_SECONDS = int(env_number("SIGNALING_GROUP_EXPIRY_SECONDS", 86400))
# Memberships are renewed well before they could expire.
SIGNALING_GROUP_REFRESH_SECONDS = env_number(
    "SIGNALING_GROUP_REFRESH_SECONDS", SIGNALING_GROUP_EXPIRY_SECONDS / 4
)
if REDIS.enabled:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 times reads out after 5 s by default, exactly
                # the layer's blocking-pop timeout: every idle read would
                # fail. Reads wait longer than any pop; connects fail fast.
                "hosts": [
                    REDIS.channel_layer_host(
                        socket_timeout=15,
                        socket_connect_timeout=2,
                        # redis-py refuses the 101st concurrent command by
                        # default; a sign-in burst needs more.
                        max_connections=1000,
                    )
                ],
                # channels-redis queues all of a process's connections in one
                # Redis key, and capacity applies to that key: it bounds a
                # whole instance's backlog, not one session's.
                "capacity": SIGNALING_CHANNEL_CAPACITY * 100,
                "expiry": SIGNALING_MESSAGE_EXPIRY_SECONDS,
                "group_expiry": SIGNALING_GROUP_EXPIRY_SECONDS,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # Channels' in-memory layer with per-message cost independent of
            # the number of connections (signaling/ws/channels_layer.py).
            "BACKEND": "signaling.ws.channels_layer.SignalingInMemoryChannelLayer",
            "CONFIG": {
                "capacity": SIGNALING_CHANNEL_CAPACITY,
                "expiry": SIGNALING_MESSAGE_EXPIRY_SECONDS,
                "group_expiry": SIGNALING_GROUP_EXPIRY_SECONDS,
            },
        }
    }

# Signaling behaviour.
SIGNALING_ALLOW_GUESTS = env_bool("SIGNALING_ALLOW_GUESTS", True)
SIGNALING_ALLOWED_ORIGINS = env_list("SIGNALING_ALLOWED_ORIGINS")
SIGNALING_ALLOW_MISSING_ORIGIN = env_bool("SIGNALING_ALLOW_MISSING_ORIGIN", True)
# Addresses, CIDR ranges or * (the socket peer is always a proxy): see
# signaling/core/forwarded.py and the README. Checked at start (apps.py).
SIGNALING_TRUSTED_PROXIES = tuple(env_list("SIGNALING_TRUSTED_PROXIES"))
SIGNALING_HEARTBEAT_SECONDS = env_number("SIGNALING_HEARTBEAT_SECONDS", 3)
# A process silent for three heartbeats is dead; its sessions are swept.
SIGNALING_PROCESS_STALE_SECONDS = env_number(
    "SIGNALING_PROCESS_STALE_SECONDS", 3 * SIGNALING_HEARTBEAT_SECONDS
)

# With Redis: a process whose liveness key is this old is dead, and its
# users count as offline.
SIGNALING_PRESENCE_TTL_SECONDS = env_number("SIGNALING_PRESENCE_TTL_SECONDS", 3)
# After Redis lost its data (restart, failover): how long a guest's name that
# the database still lists as held waits for its holder to be re-claimed,
# and how long an instance keeps trying to re-claim a session before it
# asks the client to reconnect.
SIGNALING_PRESENCE_RECOVERY_SECONDS = env_number(
    "SIGNALING_PRESENCE_RECOVERY_SECONDS", 10
)

# Session rows are written in batches this often (admin lag, not signaling).
SIGNALING_SESSION_WRITE_SECONDS = env_number("SIGNALING_SESSION_WRITE_SECONDS", 0.5)
# How long account usernames are cached (guest sign-ins skip the database).
SIGNALING_ACCOUNT_CACHE_SECONDS = env_number("SIGNALING_ACCOUNT_CACHE_SECONDS", 30)

# Abuse limits (SECURITY.md). 0 turns a cap off.
SIGNALING_FRAMES_PER_SECOND = env_number("SIGNALING_FRAMES_PER_SECOND", 50)
SIGNALING_FRAME_BURST = env_number("SIGNALING_FRAME_BURST", 200)
SIGNALING_RATE_LIMIT_CLOSE_AFTER = env_number("SIGNALING_RATE_LIMIT_CLOSE_AFTER", 50)
SIGNALING_SIGN_IN_TIMEOUT_SECONDS = env_number("SIGNALING_SIGN_IN_TIMEOUT_SECONDS", 10)
# The PeerJS server protocol (README "PeerJS apps"): WebSocket at
# {PATH}peerjs, HTTP at {PATH}{KEY}/id and {PATH}{KEY}/peers.
SIGNALING_PEERJS_PATH = "/" + os.environ.get("SIGNALING_PEERJS_PATH", "/").strip("/")
if not SIGNALING_PEERJS_PATH.endswith("/"):
    SIGNALING_PEERJS_PATH += "/"
SIGNALING_PEERJS_KEY = os.environ.get("SIGNALING_PEERJS_KEY", "peerjs")
# GET {PATH}{KEY}/peers lists every connected id (peerjs-server's
# allow_discovery); off by default, as there.
SIGNALING_PEERJS_DISCOVERY = env_bool("SIGNALING_PEERJS_DISCOVERY", False)
# peerjs-server's expire_timeout and alive_timeout (its CLI's defaults).
SIGNALING_PEERJS_EXPIRE_SECONDS = env_number("SIGNALING_PEERJS_EXPIRE_SECONDS", 5)
SIGNALING_PEERJS_ALIVE_TIMEOUT_SECONDS = env_number(
    "SIGNALING_PEERJS_ALIVE_TIMEOUT_SECONDS", 60
)
# On SIGTERM, clients are told to reconnect elsewhere in batches spread over
# at most this long (at least 100 a second: signaling/ws/shutdown.py), well
# inside the platform's grace before SIGKILL (render.yaml's
# maxShutdownDelaySeconds).
SIGNALING_DRAIN_SECONDS = env_number("SIGNALING_DRAIN_SECONDS", 30)

# Patches of Daphne, Twisted, Autobahn and CPython globals, applied only in
# a Daphne server process (signaling/speedups/): on (when the installed
# versions are the ones they were written against), off, or require
# (refuse to start on another version).
SIGNALING_SPEEDUPS = os.environ.get("SIGNALING_SPEEDUPS", "on").strip().lower()
if SIGNALING_SPEEDUPS not in {"on", "off", "require"}:
    raise ImproperlyConfigured(
        f"SIGNALING_SPEEDUPS must be on, off or require, not {SIGNALING_SPEEDUPS!r}"
    )
# The event loop Daphne's reactor runs on, with speedups on
# (signaling/speedups/twisted_uvloop.py).
SIGNALING_EVENT_LOOP = os.environ.get("SIGNALING_EVENT_LOOP", "uvloop").strip().lower()
if SIGNALING_EVENT_LOOP not in {"uvloop", "asyncio"}:
    raise ImproperlyConfigured(
        f"SIGNALING_EVENT_LOOP must be uvloop or asyncio, not {SIGNALING_EVENT_LOOP!r}"
    )
# Garbage collector (signaling/speedups/cpython_gc.py): survivors frozen out of the
# collector every N seconds (0: off), everything collected in full every M.
SIGNALING_GC_FREEZE_SECONDS = env_number("SIGNALING_GC_FREEZE_SECONDS", 1)
SIGNALING_GC_RECLAIM_SECONDS = env_number("SIGNALING_GC_RECLAIM_SECONDS", 3600)
# Per name, from anywhere: what slows guessing one name's password.
SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME = int(
    env_number("SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME", 5)
)
# Per address, against guessing across names; an address may be a
# carrier-grade NAT or a campus, so it is higher, and over it only password
# attempts for names not signed in from there lately are refused
# (signaling/ws/guards.py, SECURITY.md).
SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS = int(
    env_number("SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS", 50)
)
SIGNALING_FAILED_SIGN_IN_WINDOW_SECONDS = env_number(
    "SIGNALING_FAILED_SIGN_IN_WINDOW_SECONDS", 60
)
# One IPv4 address of a carrier-grade NAT or campus carries hundreds of
# phones; 1000 is still 5 % of an instance (SECURITY.md).
SIGNALING_MAX_CONNECTIONS_PER_ADDRESS = int(
    env_number("SIGNALING_MAX_CONNECTIONS_PER_ADDRESS", 1000)
)
SIGNALING_MAX_CONNECTIONS = int(env_number("SIGNALING_MAX_CONNECTIONS", 20000))

# ICE servers handed to clients (signaling/core/ice.py); checked at start.
SIGNALING_STUN_URLS = env_list("SIGNALING_STUN_URLS")
SIGNALING_TURN_URLS = env_list("SIGNALING_TURN_URLS")
SIGNALING_TURN_USERNAME = os.environ.get("SIGNALING_TURN_USERNAME", "")
SIGNALING_TURN_CREDENTIAL = os.environ.get("SIGNALING_TURN_CREDENTIAL", "")
SIGNALING_TURN_SECRET = os.environ.get("SIGNALING_TURN_SECRET", "")
SIGNALING_TURN_CREDENTIAL_TTL_SECONDS = int(
    env_number("SIGNALING_TURN_CREDENTIAL_TTL_SECONDS", 3600)
)

# GET /metrics answers 404 unless one of these is set.
SIGNALING_METRICS_TOKEN = os.environ.get("SIGNALING_METRICS_TOKEN", "")
SIGNALING_METRICS_ALLOWED_IPS = env_list("SIGNALING_METRICS_ALLOWED_IPS")

# "plain" lines, or "json": one JSON object per line.
SIGNALING_LOG_FORMAT = os.environ.get("SIGNALING_LOG_FORMAT", "plain").strip().lower()
if SIGNALING_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(
        f"SIGNALING_LOG_FORMAT must be plain or json, not {SIGNALING_LOG_FORMAT!r}"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "signaling.observability.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {
            # logging.StreamHandler on stderr; with speedups on under Daphne
            # it writes each event-loop turn's lines with one system call
            # (signaling/speedups/cpython_logging.py).
            "class": "signaling.speedups.cpython_logging.LoopBatchedStreamHandler",
            "formatter": SIGNALING_LOG_FORMAT,
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "signaling": {
            "handlers": ["console"],
            "level": os.environ.get("SIGNALING_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
}
