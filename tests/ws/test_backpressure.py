"""Backpressure reaches Daphne's transport, and says so when it cannot."""

from __future__ import annotations

import functools
import logging

import pytest
from daphne.server import Server

from signaling.ws import backpressure


@pytest.fixture(autouse=True)
def unavailable_not_yet_logged(monkeypatch):
    monkeypatch.setattr(backpressure, "_unavailable_logged", False)


class FakeTransport:
    """Stands in for Twisted's TCP transport: only its public producer API."""

    def __init__(self):
        self.bufferSize = 65536
        self.paused = 0

    def pauseProducing(self):
        self.paused += 1

    def resumeProducing(self):
        self.paused -= 1


def test_other_servers_get_no_backpressure_and_no_complaint(caplog):
    scope = {}

    async def send(message):
        pass

    backpressure.attach(scope, send)

    assert backpressure.READ_PAUSE_SCOPE_KEY not in scope
    assert not caplog.records


def test_a_daphne_send_that_no_longer_leads_to_a_transport_is_logged_once(caplog):
    # What a Daphne release that stopped passing its protocol would give.
    send = functools.partial(Server.handle_reply, object())

    with caplog.at_level(logging.ERROR, logger="signaling.ws.backpressure"):
        backpressure.attach({}, send)
        backpressure.attach({}, send)

    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "read backpressure unavailable"
    ]


def test_pausing_without_a_deadline_lasts_until_resumed():
    transport = FakeTransport()
    scope = {backpressure.READ_PAUSE_SCOPE_KEY: transport}

    backpressure.pause_reading(scope, None)
    assert transport.paused == 1
    backpressure.resume_reading(scope)
    assert transport.paused == 0


def test_a_throttled_client_is_read_in_smaller_pieces():
    transport = FakeTransport()

    backpressure.read_slowly({backpressure.READ_PAUSE_SCOPE_KEY: transport})

    assert transport.bufferSize == backpressure.THROTTLED_READ_BYTES
