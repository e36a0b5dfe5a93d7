"""Two `Cookie` header lines on real servers (issue 10, finding 6).

HTTP/1.1 clients and proxies may send a request's cookies on several `Cookie` lines.
gunicorn joins repeated header lines with `,` into one `HTTP_COOKIE` (uvicorn passes
them to ASGI as separate headers); either way the session cookie must be found, not
rejected and cleared.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import ServerKind, StartServer
from .test_torture import init_session

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
@pytest.mark.parametrize("session_line", ["first", "second"])
def test_the_session_cookie_is_found_on_either_of_two_cookie_lines(
    kind: ServerKind, session_line: str, start_server: StartServer
) -> None:
    server = start_server(kind, workers=1)
    cookie, session_id = init_session(server.base_url)
    lines = [("Cookie", f"session={cookie}"), ("Cookie", "theme=dark; lang=en")]
    if session_line == "second":
        lines.reverse()

    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        response = client.get("/get", headers=lines)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["is_new"], body["data"]) == (session_id, False, {"init": "1"})
    assert "set-cookie" not in response.headers, "the valid cookie was cleared"
