"""Speedups: everything that patches a third-party library or interpreter
globals, behind one switch.

Each module here patches one upstream target and declares:

- ``UPSTREAM``: the packages it patches and the exact versions it was
  written against (``"python"`` is the interpreter's major.minor);
- ``TOUCHES``: the upstream internals it reads or replaces;
- ``apply()``: installs it (idempotent).

``install()`` is called once, from ``signaling_site/asgi.py``. It does
nothing unless the process is a Daphne server started from Daphne's command
line (``daphne_serving()``), and then honours ``SIGNALING_SPEEDUPS``:

- ``on`` (default): a speedup is applied when every package it declares is
  installed at the declared version; for any other version one ERROR line
  names the package, the version and the speedups left off, which keep
  upstream's behaviour;
- ``off``: nothing is applied (stock Daphne, Twisted, Autobahn, Channels);
- ``require``: a version mismatch refuses to start.

One INFO line at start lists what was applied. The server works without any
of them; nothing outside this package imports from it (the log handler
named in settings.LOGGING behaves as logging.StreamHandler until
``cpython_logging`` is applied).
"""

from __future__ import annotations

import inspect
import logging
import sys
from importlib import metadata
from types import ModuleType

from django.core.exceptions import ImproperlyConfigured

from signaling.speedups import (
    autobahn_frames,
    autobahn_handshake,
    autobahn_logging,
    cpython_gc,
    cpython_logging,
    daphne_footprint,
    daphne_server,
    twisted_reactor,
    twisted_uvloop,
    twisted_web_handoff,
)

logger = logging.getLogger(__name__)

MODES = ("on", "off", "require")

# In the order they are applied: daphne_footprint replaces
# Server.create_application, which daphne_server then wraps;
# autobahn_handshake before twisted_web_handoff, which hands it requests.
SPEEDUPS: tuple[ModuleType, ...] = (
    cpython_logging,
    autobahn_logging,
    cpython_gc,
    twisted_uvloop,
    daphne_footprint,
    daphne_server,
    twisted_reactor,
    autobahn_handshake,
    twisted_web_handoff,
    autobahn_frames,
)


def name_of(speedup: ModuleType) -> str:
    return speedup.__name__.rpartition(".")[2]


def installed_version(package: str) -> str | None:
    """The installed version of ``package`` (``python``: the interpreter's
    major.minor), or None when it is not installed."""
    if package == "python":
        return "{}.{}".format(*sys.version_info[:2])
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def mismatches(speedups=SPEEDUPS) -> dict[str, tuple[str, str | None, list[str]]]:
    """Packages whose installed version is not the one a speedup declares:
    package -> (declared version, installed version, speedups concerned)."""
    found: dict[str, tuple[str, str | None, list[str]]] = {}
    for speedup in speedups:
        for package, declared in speedup.UPSTREAM.items():
            installed = installed_version(package)
            if installed != declared:
                entry = found.setdefault(package, (declared, installed, []))
                entry[2].append(name_of(speedup))
    return found


def daphne_serving() -> bool:
    """True when this process is a Daphne server loading its application.

    ``daphne`` is always importable here (it is in INSTALLED_APPS), so its
    presence in sys.modules says nothing. Daphne's command line imports the
    application from ``CommandLineInterface.run`` before it creates and
    starts its Server: that call is on the stack now, and Twisted's asyncio
    reactor (installed by importing daphne.server) is not running yet.
    ``manage.py runserver``, other ASGI servers and the test process are
    not Daphne servers in this sense.
    """
    cli = sys.modules.get("daphne.cli")
    reactor = sys.modules.get("twisted.internet.reactor")
    asyncioreactor = sys.modules.get("twisted.internet.asyncioreactor")
    if cli is None or reactor is None or asyncioreactor is None:
        return False
    if not isinstance(reactor, asyncioreactor.AsyncioSelectorReactor) or reactor.running:
        return False
    run_code = cli.CommandLineInterface.run.__code__
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code is run_code:
            return True
        frame = frame.f_back
    return False


def install(mode: str, *, serving: bool | None = None) -> list[str]:
    """Apply the speedups ``mode`` allows; return the names applied."""
    if mode not in MODES:
        raise ImproperlyConfigured(f"SIGNALING_SPEEDUPS must be on, off or require, not {mode!r}")
    if serving is None:
        serving = daphne_serving()
    if not serving:
        logger.debug("speedups: not a Daphne server process, none applied")
        return []
    if mode == "off":
        logger.info("speedups: off; stock Daphne, Twisted, Autobahn and Channels")
        return []
    wrong = mismatches()
    if wrong and mode == "require":
        raise ImproperlyConfigured(
            "SIGNALING_SPEEDUPS=require: "
            + "; ".join(
                f"{package} {installed or 'not installed'} installed, speedups "
                f"{', '.join(names)} written against {declared}"
                for package, (declared, installed, names) in wrong.items()
            )
        )
    for package, (declared, installed, names) in wrong.items():
        logger.error(
            "speedups: %s %s installed, written against %s: left off %s (stock behaviour)",
            package,
            installed or "not installed",
            declared,
            ", ".join(names),
        )
    left_off = {name for _, _, names in wrong.values() for name in names}
    applied = []
    for speedup in SPEEDUPS:
        if name_of(speedup) in left_off:
            continue
        speedup.apply()
        applied.append(name_of(speedup))
    logger.info("speedups: on; applied %s", ", ".join(applied) or "none")
    return applied
