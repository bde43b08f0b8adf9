"""SIGNALING_SPEEDUPS: speedups only in a Daphne server process, on when
the versions match, off on request, refused on a mismatch under require."""

import gc
import logging
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from signaling import speedups
from tests.servers import ROOT, base_environment


@pytest.fixture
def nothing_applied(monkeypatch):
    """Record which speedups install() would apply, applying none."""
    applied = []
    for speedup in speedups.SPEEDUPS:
        monkeypatch.setattr(
            speedup, "apply", lambda name=speedups.name_of(speedup): applied.append(name)
        )
    return applied


def test_the_test_process_is_not_a_daphne_server():
    assert speedups.daphne_serving() is False


def test_in_process_tests_leave_the_interpreter_unpatched():
    # tests.settings loads signaling_site.asgi nowhere, and importing it
    # here must not patch either: daphne is imported, but not serving.
    import signaling_site.asgi  # noqa: F401

    assert gc.get_threshold() != speedups.cpython_gc.THRESHOLDS
    assert logging.logThreads is True
    assert speedups.cpython_logging.LoopBatchedStreamHandler.batching is False


def test_nothing_is_applied_outside_a_daphne_server(nothing_applied):
    assert speedups.install("on") == []
    assert nothing_applied == []


def test_off_applies_nothing_and_says_so(nothing_applied, caplog):
    caplog.set_level(logging.INFO, logger="signaling.speedups")
    assert speedups.install("off", serving=True) == []
    assert nothing_applied == []
    assert "speedups: off; stock Daphne, Twisted, Autobahn and Channels" in caplog.text


def test_on_applies_every_speedup_when_the_versions_match(nothing_applied, caplog):
    caplog.set_level(logging.INFO, logger="signaling.speedups")
    names = [speedups.name_of(s) for s in speedups.SPEEDUPS]
    assert speedups.install("on", serving=True) == names == nothing_applied
    assert "speedups: on; applied " + ", ".join(names) in caplog.text


def test_on_leaves_off_the_speedups_of_a_mismatched_package_with_one_error(
    nothing_applied, monkeypatch, caplog
):
    real = speedups.installed_version
    monkeypatch.setattr(
        speedups,
        "installed_version",
        lambda package: "99.0" if package == "autobahn" else real(package),
    )
    caplog.set_level(logging.INFO, logger="signaling.speedups")
    applied = speedups.install("on", serving=True)
    touching = [s for s in speedups.SPEEDUPS if "autobahn" in s.UPSTREAM]
    assert touching
    assert not {speedups.name_of(s) for s in touching} & set(applied)
    assert set(applied) == {
        speedups.name_of(s) for s in speedups.SPEEDUPS if s not in touching
    }
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "autobahn 99.0 installed, written against 26.11.1" in errors[0].getMessage()


def test_require_refuses_a_mismatch(nothing_applied, monkeypatch):
    monkeypatch.setattr(speedups, "installed_version", lambda package: "0.0")
    with pytest.raises(ImproperlyConfigured, match="SIGNALING_SPEEDUPS=require"):
        speedups.install("require", serving=True)
    assert nothing_applied == []


def test_an_unknown_mode_is_refused():
    with pytest.raises(ImproperlyConfigured):
        speedups.install("fast", serving=True)


def test_importing_the_application_with_daphne_loaded_is_not_serving():
    # What the sys.modules check got wrong: daphne.server imported (and its
    # reactor installed) is not a Daphne server loading the application.
    code = (
        "import daphne.server, daphne.cli, gc;"
        "import signaling_site.asgi;"
        "from signaling import speedups;"
        "assert not speedups.daphne_serving();"
        "assert gc.get_threshold() != speedups.cpython_gc.THRESHOLDS, gc.get_threshold()"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base_environment(), check=True)


def test_a_daphne_server_logs_what_it_applied(start_server):
    server = start_server(SIGNALING_SPEEDUPS="on")
    assert "speedups: on; applied " in server.log()


def test_a_daphne_server_with_speedups_off_is_stock(start_server):
    server = start_server(SIGNALING_SPEEDUPS="off")
    log = server.log()
    assert "speedups: off; stock Daphne, Twisted, Autobahn and Channels" in log
    assert "uvloop" not in log


# Daphne's own command line, with the installed Daphne reported as another
# version: what an upgrade under the patches looks like.
DAPHNE_REPORTED_AS_99 = (
    "import sys\n"
    "from signaling import speedups\n"
    "real = speedups.installed_version\n"
    "speedups.installed_version = lambda p: '99.0' if p == 'daphne' else real(p)\n"
    "from daphne.cli import CommandLineInterface\n"
    "sys.argv[0] = 'daphne'\n"
    "CommandLineInterface.entrypoint()\n"
)


async def test_a_version_mismatch_logs_one_error_and_serves_stock(start_server):
    from tests.clients import Client

    server = start_server(
        launcher=(sys.executable, "-c", DAPHNE_REPORTED_AS_99), SIGNALING_SPEEDUPS="on"
    )
    log = server.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert "speedups: daphne 99.0 installed, written against 4.2.3: left off" in errors[0]
    assert "daphne_server" in errors[0] and "daphne_footprint" in errors[0]
    applied = next(line for line in log.splitlines() if "speedups: on; applied" in line)
    assert "daphne_server" not in applied and "daphne_footprint" not in applied
    client = await Client.connect(server.ws_url)
    assert (await client.sign_in("stock-daphne"))["type"] == "SignedIn"
    await client.connection.close()


def test_require_refuses_to_start_on_a_mismatch(start_server):
    with pytest.raises(RuntimeError, match="daphne exited early") as refused:
        start_server(
            launcher=(sys.executable, "-c", DAPHNE_REPORTED_AS_99), SIGNALING_SPEEDUPS="require"
        )
    assert "SIGNALING_SPEEDUPS=require: daphne 99.0 installed" in str(refused.value)
