"""A client process for the torture suite: sends a list of requests, all with one cookie.

    python -m apps.client '{"base_url": ..., "cookie": ..., "ops": [[method, path, params], ...]}'

`cookie` is the session cookie's value (the cookie is named `cookie_name`, "session" if
not given), sent as an explicit `Cookie` header on every request (whatever the server
answers, the next request uses the same cookie).
One JSON line per request is printed and flushed as soon as it completes:
`{"index", "path", "params", "status", "cookies", "cookie_ids", "body", "error"}`, where
`cookies` lists the value of every session `Set-Cookie` in the response ("" for a
clearing cookie), `cookie_ids` the session ids in them, and `error` is set only when
the request got no response.
"""

from __future__ import annotations

import json
import sys
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

COOKIE_NAME = "session"
REQUEST_TIMEOUT = 30.0


def ignoring_cookie_jar() -> CookieJar:
    """A cookie jar that stores nothing, so only the explicit `Cookie` header is ever sent."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def session_cookies(response: httpx.Response, cookie_name: str = COOKIE_NAME) -> list[str]:
    """The value of each session Set-Cookie header in the response ("" for a clearing one)."""
    values = []
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip() == cookie_name:
            values.append(rest.split(";", 1)[0])
    return values


def describe(response: httpx.Response, cookie_name: str = COOKIE_NAME) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    cookies = session_cookies(response, cookie_name)
    ids = [value.partition(".")[0] for value in cookies]
    return {"status": response.status_code, "cookies": cookies, "cookie_ids": ids, "body": body}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    cookie_name = spec.get("cookie_name", COOKIE_NAME)
    headers = {"Cookie": f"{cookie_name}={spec['cookie']}"}
    jar = ignoring_cookie_jar()
    with httpx.Client(base_url=spec["base_url"], timeout=REQUEST_TIMEOUT, cookies=jar) as client:
        for index, (method, path, params) in enumerate(spec["ops"]):
            result: dict[str, Any] = {"index": index, "path": path, "params": params}
            try:
                response = client.request(method, path, params=params, headers=headers)
            except httpx.HTTPError as exc:
                result.update(status=None, cookies=[], cookie_ids=[], body=None, error=repr(exc))
            else:
                result.update(describe(response, cookie_name), error=None)
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
