"""Settings for the in-process tests: the real settings with a test secret."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "in-process-test-secret-key-" + "x" * 30)

from signaling_site.settings import *  # noqa: E402,F403

# In-process tests use SQLite whatever DATABASE_URL says: the end-to-end
# tests give Daphne processes the shared (PostgreSQL in CI) database, and
# flushing PostgreSQL between in-process tests races with session rows
# written from database threads of connections still closing.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

SIGNALING_SESSION_WRITE_SECONDS = 0.05

# The test process is no server: its garbage is collected as usual (Daphne
# processes started by tests keep the default).
SIGNALING_GC_FREEZE_SECONDS = 0

# Fast hashing: account sign-ins in tests need not cost 100 ms each.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = (  # noqa: F405
    "django.contrib.staticfiles.storage.StaticFilesStorage"
)
