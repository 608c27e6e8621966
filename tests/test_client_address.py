"""The request log's `client`: the connection's address, or what CLIP_TRUSTED_PROXIES vouch for in X-Forwarded-For."""

import logging
from dataclasses import replace

import pytest
from conftest import post_clip

from clipsvc.server.client_address import TrustedProxies
from clipsvc.settings import Settings
from clipsvc.web.app import create_app

PROXIES = "10.0.0.0/8"
# (connection's address, X-Forwarded-For, CLIP_TRUSTED_PROXIES, the client logged)
CASES = [
    ("203.0.113.7", None, "", "203.0.113.7"),
    ("203.0.113.7", "198.51.100.9", "", "203.0.113.7"),  # no proxies: the header is anyone's, ignored
    ("203.0.113.7", "198.51.100.9", PROXIES, "203.0.113.7"),  # not from a proxy: ignored
    ("10.0.0.2", None, PROXIES, "10.0.0.2"),  # a proxy that says nothing is the client
    ("10.0.0.2", "198.51.100.9", PROXIES, "198.51.100.9"),
    ("10.0.0.2", "6.6.6.6, 198.51.100.9", PROXIES, "198.51.100.9"),  # what the client wrote itself is not reached
    ("10.0.0.2", "198.51.100.9, 10.0.0.5, 10.1.2.3", PROXIES, "198.51.100.9"),  # a chain of proxies
    ("10.0.0.2", "10.0.0.9, 10.0.0.5", PROXIES, "10.0.0.9"),  # every hop a proxy: the leftmost
    ("10.0.0.2", "198.51.100.9, garbage", PROXIES, "10.0.0.2"),  # malformed: the walk stops at the last proxy
    ("10.0.0.2", "198.51.100.9:5555", PROXIES, "10.0.0.2"),  # a port is not an address
    ("10.0.0.2", "198.51.100.9,,10.0.0.3", PROXIES, "10.0.0.3"),  # an empty entry stops it too
    ("10.0.0.2", "unknown, 198.51.100.9", PROXIES, "198.51.100.9"),  # left of the client: never read
    ("127.0.0.1", " 198.51.100.9 ", "127.0.0.1", "198.51.100.9"),  # one address; spaces around entries
    ("10.0.0.2", "2001:db8::7", PROXIES, "2001:db8::7"),
    ("2001:db8::1", "198.51.100.9", "2001:db8::/32", "198.51.100.9"),
    ("::ffff:10.0.0.2", "198.51.100.9", PROXIES, "198.51.100.9"),  # IPv4 inside IPv6 is the IPv4 address
    ("", "198.51.100.9", "0.0.0.0/0", ""),  # not an IP connection: nothing to look up
]


@pytest.mark.parametrize("peer, forwarded_for, trusted, client", CASES)
def test_the_client_is_the_first_untrusted_address_from_the_right(peer, forwarded_for, trusted, client):
    proxies = TrustedProxies(Settings.from_env({"CLIP_TRUSTED_PROXIES": trusted}).trusted_proxies)
    assert proxies.client(peer, forwarded_for) == client


@pytest.mark.parametrize("trusted, peer, client", [
    ("", "10.0.0.2", "10.0.0.2"),
    (PROXIES, "10.0.0.2", "198.51.100.9"),
    (PROXIES, "203.0.113.7", "203.0.113.7"),
])
def test_each_request_line_names_its_client(settings, encoder, caplog, trusted, peer, client):
    """Through the app: REMOTE_ADDR and the header as a WSGI server passes them, CLIP_TRUSTED_PROXIES as configured."""
    app = create_app(replace(settings, trusted_proxies=(trusted,) if trusted else ()), encoder)
    caplog.set_level(logging.INFO, logger="clipsvc.request")
    test_client = app.test_client()
    test_client.environ_base["REMOTE_ADDR"] = peer
    post_clip(test_client, {"text-1": "a"}, {"X-Forwarded-For": "6.6.6.6, 198.51.100.9"})
    (line,) = [record for record in caplog.records if record.name == "clipsvc.request"]
    assert line.client == client
