"""Which X-Forwarded-For entry is the client, for every form of the setting."""

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from signaling.core.forwarded import TrustedProxies, forwarded_client
from signaling.ws.connection_info import client_address

RENDER = ["*"]
LAN = ["10.0.0.0/8", "fd00::/8"]
EXACT = ["192.0.2.10"]

# (setting, socket peer, X-Forwarded-For, client address judged)
CASES = [
    # Nothing configured: the header is never read.
    ([], "203.0.113.5", "198.51.100.1", "203.0.113.5"),
    ([], "10.0.0.1", "198.51.100.1", "10.0.0.1"),
    # An exact proxy address.
    (EXACT, "192.0.2.10", "198.51.100.1", "198.51.100.1"),
    (EXACT, "192.0.2.11", "198.51.100.1", "192.0.2.11"),
    (EXACT, "192.0.2.10", None, "192.0.2.10"),
    (EXACT, "192.0.2.10", "", "192.0.2.10"),
    # A client's forged entries stay left of the one our proxy appended.
    (EXACT, "192.0.2.10", "1.1.1.1, 2.2.2.2, 198.51.100.1", "198.51.100.1"),
    # Ranges, IPv4 and IPv6: listed hops are skipped from the right.
    (LAN, "10.9.9.9", "198.51.100.1", "198.51.100.1"),
    (LAN, "10.9.9.9", "1.1.1.1, 198.51.100.1, 10.0.0.7, 10.0.0.8", "198.51.100.1"),
    (LAN, "fd00::2", "2001:db8::1", "2001:db8::1"),
    (LAN, "fd12:3456::1", "2001:db8::1, fd00::9", "2001:db8::1"),
    (LAN, "172.16.0.1", "198.51.100.1", "172.16.0.1"),
    (LAN, "fe80::1", "198.51.100.1", "fe80::1"),
    # A dual-stack socket's view of an IPv4 proxy is that proxy.
    (LAN, "::ffff:10.0.0.1", "198.51.100.1", "198.51.100.1"),
    # Every hop a listed proxy: the leftmost of them, still one of ours.
    (LAN, "10.0.0.1", "10.0.0.2, 10.0.0.3", "10.0.0.2"),
    # "*": the peer is trusted whatever it is, and exactly one hop is read.
    (RENDER, "10.214.3.4", "198.51.100.1", "198.51.100.1"),
    (RENDER, "10.214.3.4", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
    (RENDER, "10.214.3.4", "198.51.100.1, 10.0.0.5", "10.0.0.5"),
    (RENDER, "203.0.113.9", "2001:db8::1", "2001:db8::1"),
    (RENDER, "10.214.3.4", None, "10.214.3.4"),
    # "*" with a listed range: one more hop through a proxy of ours (a CDN).
    (["*", "192.0.2.0/24"], "10.1.1.1", "198.51.100.1, 192.0.2.7", "198.51.100.1"),
    # Several header lines are one list, in order.
    (RENDER, "10.214.3.4", "6.6.6.6,198.51.100.1", "198.51.100.1"),
    # Ports and brackets in the forms that cannot be misread.
    (RENDER, "10.214.3.4", "198.51.100.1:5678", "198.51.100.1"),
    (RENDER, "10.214.3.4", "[2001:db8::1]", "2001:db8::1"),
    (RENDER, "10.214.3.4", "[2001:db8::1]:443", "2001:db8::1"),
    (RENDER, "10.214.3.4", " 198.51.100.1 ", "198.51.100.1"),
    # Addresses come back in one normal form.
    (RENDER, "10.214.3.4", "2001:DB8:0:0::1", "2001:db8::1"),
    # An unreadable entry where our proxies write: the last address reached,
    # never anything further left, which the client wrote.
    (RENDER, "10.214.3.4", "unknown", "10.214.3.4"),
    (RENDER, "10.214.3.4", "198.51.100.1, unknown", "10.214.3.4"),
    (RENDER, "10.214.3.4", "198.51.100.1, ", "10.214.3.4"),
    (RENDER, "10.214.3.4", "198.51.100.1:port", "10.214.3.4"),
    (RENDER, "10.214.3.4", "[2001:db8::1", "10.214.3.4"),
    (RENDER, "10.214.3.4", "999.1.1.1", "10.214.3.4"),
    (RENDER, "10.214.3.4", "example.com", "10.214.3.4"),
    (LAN, "10.0.0.1", "198.51.100.1, garbage, 10.0.0.2", "10.0.0.2"),
    # An unreadable entry left of the client is never reached.
    (LAN, "10.0.0.1", "garbage, 198.51.100.1", "198.51.100.1"),
]


@pytest.mark.parametrize(("setting", "peer", "header", "client"), CASES)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    setting, peer, header, client
):
    assert forwarded_client(peer, header, TrustedProxies.parse(setting)) == client


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.300",
        "10.0.0.0/33",
        "10.1.2.3/8",
        "proxy.internal",
        "**",
        "1.2.3.4:80",
        "fd00::/129",
    ],
)
def test_a_bad_entry_is_refused_by_name(entry):
    with pytest.raises(ValueError, match=repr(entry).replace("*", r"\*")):
        TrustedProxies.parse(["10.0.0.1", entry])


def test_a_single_address_range_is_an_address():
    proxies = TrustedProxies.parse(["192.0.2.10/32", "2001:db8::1/128"])
    assert proxies.networks == ()
    assert forwarded_client("2001:db8::1", "198.51.100.1", proxies) == "198.51.100.1"


def test_several_header_lines_are_read_as_one_list(settings):
    settings.SIGNALING_TRUSTED_PROXIES = ("192.0.2.10",)
    scope = {
        "client": ("192.0.2.10", 1),
        "headers": [
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"host", b"example.com"),
            # Appended as its own line by the proxy.
            (b"x-forwarded-for", b"198.51.100.1"),
        ],
    }
    assert client_address(scope) == "198.51.100.1"
    settings.SIGNALING_TRUSTED_PROXIES = ()
    assert client_address(scope) == "192.0.2.10"


def test_a_bad_trusted_proxy_stops_the_server_at_start(settings):
    settings.SIGNALING_TRUSTED_PROXIES = ("10.0.0.0/8", "10.0.0.0/33")
    with pytest.raises(
        ImproperlyConfigured, match="SIGNALING_TRUSTED_PROXIES.*10.0.0.0/33"
    ):
        apps.get_app_config("signaling").ready()
