"""Settings for the in-process tests: the real settings with a test secret."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "in-process-test-secret-key-" + "x" * 30)

from signaling_site.settings import *  # noqa: E402,F403

# Fast hashing: account sign-ins in tests need not cost 100 ms each.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = (  # noqa: F405
    "django.contrib.staticfiles.storage.StaticFilesStorage"
)
