"""The client side both server scenarios share: one `http.client` connection, cookies.

Client processes speak HTTP/1.1 with the standard library's `http.client` over one
connection (kept alive when the server allows it): on a 2-core machine every client
millisecond is taken from the server, and `httpx` costs about three times as much CPU
per request. `httpx` is used only for the untimed requests made by the runner.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from dataclasses import dataclass

import httpx

from ..harness import Subject
from .base import ScenarioError

__all__ = ["Answer", "Connection", "cookie_value", "open_session"]

#: Per-request timeout: far above any healthy latency, well below a run's time limit.
REQUEST_TIMEOUT = 30.0


def cookie_value(set_cookie: str, name: str) -> str | None:
    """The value a Set-Cookie header gives cookie `name`, or `None` if it is another cookie.

    A clearing cookie (`name=""; expires=...`) gives the empty string.
    """
    key, sep, value = set_cookie.split(";", 1)[0].partition("=")
    if not sep or key.strip() != name:
        return None
    value = value.strip()
    for quote in ('"', "'"):  # starsessions clears with name=''
        if len(value) >= 2 and value[0] == value[-1] == quote:
            value = value[1:-1]
    return value


@dataclass(frozen=True)
class Answer:
    status: str  # "200", or "error:<exception>" when there was no response
    latency: float  # seconds, request sent to response read
    received: float  # time.perf_counter() when the response was read
    cookies: tuple[str, ...]  # values this response's Set-Cookie headers gave the cookie
    body: bytes


class Connection:
    """One keep-alive connection to the server under test, for one client process."""

    def __init__(self, base_url: str, cookie_name: str, timeout: float) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.cookie_name = cookie_name
        self._connection = http.client.HTTPConnection(
            url.hostname or "127.0.0.1", url.port, timeout=min(REQUEST_TIMEOUT, timeout)
        )

    def request(self, method: str, path: str, cookie: str | None) -> Answer:
        headers = {"Cookie": f"{self.cookie_name}={cookie}"} if cookie else {}
        begin = time.perf_counter()
        try:
            # No body: http.client sends Content-Length: 0 for POST. After a response with
            # Connection: close (gunicorn's sync workers) it reconnects by itself.
            self._connection.request(method, path, headers=headers)
            response = self._connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            now = time.perf_counter()
            return Answer(f"error:{type(exc).__name__}", now - begin, now, (), b"")
        now = time.perf_counter()
        values = (
            cookie_value(h, self.cookie_name) for h in response.msg.get_all("Set-Cookie") or ()
        )
        cookies = tuple(value for value in values if value is not None)
        return Answer(str(response.status), now - begin, now, cookies, body)

    def close(self) -> None:
        self._connection.close()


def open_session(client: httpx.Client, subject: Subject, key: str = "seed") -> str:
    """`POST /set/<key>` without a cookie; the session cookie's value it answers with."""
    response = client.post(f"/set/{key}")
    values = [
        value
        for header in response.headers.get_list("set-cookie")
        if (value := cookie_value(header, subject.cookie_name)) is not None
    ]
    if response.status_code != 200 or not values or not values[-1]:
        raise ScenarioError(
            f"POST /set/{key} answered {response.status_code} without a "
            f"{subject.cookie_name!r} cookie; headers: {response.headers!r}"
        )
    return values[-1]
