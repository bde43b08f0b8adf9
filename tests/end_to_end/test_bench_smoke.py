"""The benchmark still runs end to end (bench/, ``python -m bench --smoke``).

Tiny scale, every server (ours, ours in the PeerJS protocol, PeerJS), every
measure: seconds, not a measurement. It
needs Node.js and npm (the load driver and the PeerJS server install from
bench/package-lock.json); without them it fails rather than skips, so the
benchmark cannot rot unnoticed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _figures(results: dict, server: str) -> dict:
    suite = results["servers"][server]
    for phase in ("relay_latency", "relay_online", "handshake", "storm", "relay_loaded"):
        assert "error" not in suite[phase], (server, phase, suite[phase]["error"])
    return suite


@pytest.mark.timeout(300)
def test_benchmark_smoke_run(tmp_path):
    assert shutil.which("node") and shutil.which("npm"), (
        "the benchmark needs Node.js and npm (apt-get install nodejs npm)"
    )
    output = tmp_path / "results.json"
    # A subprocess: the benchmark pins itself to one core, which must not
    # stick to the test process.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output),
         "--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ours/PeerJS" in done.stdout
    assert "PeerJS protocol" in done.stdout, "the ours-peerjs table is missing"
    results = json.loads(output.read_text())
    idle = results["plan"]["idle_clients"]

    for server in ("ours", "ours-peerjs", "peerjs"):
        suite = _figures(results, server)
        assert suite["relay_online"]["msgs_per_s"] > 0
        assert suite["relay_online"]["rtt"]["count"] > 0
        assert suite["relay_online"]["lost_in_flight"] == 0
        assert suite["relay_loaded"]["msgs_per_s"] > 0
        assert suite["relay_loaded"]["idle_online"] == idle
        assert suite["storm"]["complete"] is True, suite["storm"]
        assert suite["memory"]["kib_per_client"] is not None
        assert suite["handshake"]["completed"] > 0
        assert suite["handshake"]["failed"] == 0, suite["handshake"]["last_error"]
        assert suite["idle_still_open"] == idle
        assert "cpu" in suite["relay_online"], "CPU accounting over the window is missing"

    assert results["servers"]["ours-peerjs"]["protocol"] == "peerjs"
    compared = {tuple(row["path"]): row for row in results["peerjs_protocol"]}
    relay = compared[("relay_online", "msgs_per_s")]
    assert relay["vs_peerjs"]["ratio"] > 0 and relay["vs_peerjs"]["target"] == ">= 0.6x", relay
    assert relay["vs_ours"]["ratio"] > 0 and relay["vs_ours"]["target"] == ">= 0.9x", relay

    cross = results["cross_instance"]
    # Relays cross instances through Redis: a figure, not "not supported"
    # (a relay answered target_not_found) nor an error.
    assert cross["supported"] is True, cross
    assert cross["cross_instance"]["rtt"]["count"] > 0, cross
    assert cross["added_one_way_p50_ms"] is not None, cross


@pytest.mark.timeout(300)
def test_instruction_counts_smoke_run():
    # bench.instructions runs the server under valgrind (on every machine
    # this project targets; a fresh Debian gets it from apt).
    assert shutil.which("valgrind"), "bench.instructions needs valgrind (apt-get install valgrind)"
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    json_path = done.stdout.rsplit("JSON: ", 1)[1].strip()
    measured = json.loads(Path(json_path).read_text())["measured"]
    # Far more than nothing, far less than a stuck server would count.
    assert 200_000 < measured["sign-ins"] < 50_000_000, measured
    assert 20_000 < measured["relays"] < 10_000_000, measured
    assert measured["handshakes"] > 2 * measured["sign-ins"], measured
