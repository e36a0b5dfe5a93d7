"""What a session notes of the device it is used on, privacy first (`record_devices=True`).

Only what a user needs to recognise their own sessions ("Firefox on Linux, from this
network"): the user agent cut to 160 characters, and the client's network rather than
its address (IPv4 to its /24, IPv6 to its /48). Noted when a session is created and when
a user logs in on it, so it costs no write of its own; never logged.
"""

from __future__ import annotations

import ipaddress

__all__ = ["device_of"]

_USER_AGENT_CHARS = 160


def device_of(user_agent: str | None, client_ip: str | None) -> dict[str, str]:
    """The device entry for a request with this User-Agent and client address."""
    device = {}
    if user_agent:
        device["user_agent"] = user_agent[:_USER_AGENT_CHARS]
    network = _network_of(client_ip)
    if network:
        device["network"] = network
    return device


def _network_of(client_ip: str | None) -> str | None:
    try:
        address = ipaddress.ip_address((client_ip or "").strip())
    except ValueError:
        return None  # a unix socket, a test client's "testclient": nothing to note
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
