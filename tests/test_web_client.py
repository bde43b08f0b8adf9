"""The web client's page, as the server hands it out (no browser needed)."""

import re

import pytest

from tests.servers import ROOT

APP_JS = ROOT / "signaling/static/signaling/app/app.js"


@pytest.fixture
def plain_static(settings):
    # The manifest storage needs collectstatic; the page's HTML does not.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }


def test_the_app_page_loads_its_script_and_style_from_the_server(client, plain_static):
    response = client.get("/app/")
    assert response.status_code == 200
    body = response.content.decode()
    assert '<script src="/static/signaling/app/app.js" defer>' in body
    assert 'href="/static/signaling/app/app.css"' in body
    # Nothing inline: the policy below would block it.
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)
    assert "<style" not in body and " style=" not in body
    assert 'name="viewport"' in body


def test_the_app_page_forbids_inline_scripts_and_foreign_connections(
    client, plain_static
):
    policy = client.get("/app/", HTTP_HOST="localhost:8000")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert (
        directives["connect-src"] == "'self' ws://localhost:8000 wss://localhost:8000"
    )
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_the_app_page_answers_only_safe_methods(client, plain_static):
    assert client.post("/app/").status_code == 405


def test_the_client_script_never_writes_html_from_strings():
    # Peer names, messages and file names reach the page through
    # textContent; a later edit adding innerHTML would reopen injection.
    source = APP_JS.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in source
