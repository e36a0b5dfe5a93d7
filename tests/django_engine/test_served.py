"""The Django project on `sessionguard.django`, served: in process and on real gunicorn.

* Django's own session consumers (auth's login and logout, messages, `CSRF_USE_SESSIONS`)
  work through `django.test.Client` and through gunicorn (2 workers) with httpx.
* An AJAX-style burst with `SESSION_SAVE_EVERY_REQUEST = True`: several client processes
  set distinct keys of one logged-in session at once. sessionguard loses none and never
  issues another session key; Django's `db` and `file` engines get the same burst, and
  what they lose is printed next to it (measured, not asserted: it varies by run). A
  login or a logout in the middle of such a burst: no write in flight is lost or
  resurrects the session, nobody but the login learns the new key, and no request
  gets Django's 400.
* PostgreSQL turned read-only, or stopped, under the server (the sessions in the
  project's own database, `SESSIONGUARD_STORE = "django://default"`): a write is a 503
  with `Retry-After`, never Django's 400, the data stays intact, and once PostgreSQL is
  back so is the server, without a restart.

Every request sends exactly the cookie the test gives it (no cookie jar), so a response
that sets another session key cannot go unnoticed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.apps.client import ignoring_cookie_jar
from tests.integration.conftest import (
    Op,
    Result,
    Server,
    assert_clean_server_log,
    by_status,
    client_processes,
    gunicorn_command,
)
from tests.servers import PostgresServer, stop

from .conftest import PASSWORD, USERNAME

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parent  # gunicorn imports `project.*` from here
COOKIE = "sessionid"  # Django's SESSION_COOKIE_NAME
CREDENTIALS = {"username": USERNAME, "password": PASSWORD}
MISLEADING = ("tamper", "deleted", "invalid", "interrupted")
REQUEST_TIMEOUT = 30.0
PREPARE_TIMEOUT = 120.0

# -- one way to send a request, in process or over HTTP ---------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: Mapping[str, str]  # names in lower case
    cookies: Mapping[str, Morsel[str]]  # what the response's Set-Cookie headers set

    @classmethod
    def of(
        cls, status: int, text: str, headers: Iterable[tuple[str, str]], cookies: SimpleCookie
    ) -> Reply:
        return cls(status, text, {name.lower(): value for name, value in headers}, dict(cookies))

    @property
    def body(self) -> Any:
        return json.loads(self.text)

    @property
    def cookie(self) -> str | None:
        """The session cookie the response sets ("" when it clears it), or None."""
        morsel = self.cookies.get(COOKIE)
        return None if morsel is None else morsel.value


#: Sends (method, path, session cookie or None, form data, headers).
Send = Callable[[str, str, str | None, dict[str, str], dict[str, str]], Reply]


@dataclass(frozen=True)
class Site:
    """Sends a request with exactly the session cookie given (no cookie jar)."""

    send: Send

    def __call__(
        self,
        method: str,
        path: str,
        *,
        cookie: str | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return self.send(method, path, cookie, dict(data or {}), dict(headers or {}))


def django_client_site() -> Site:
    """`django.test.Client` on the in-process project, CSRF checks enforced."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)

    def send(
        method: str, path: str, cookie: str | None, data: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        extra = {"HTTP_COOKIE": f"{COOKIE}={cookie}" if cookie else ""}  # never the jar's
        if method == "GET":
            response = client.get(path, headers=headers, **extra)
        else:
            response = client.post(path, data, headers=headers, **extra)
        return Reply.of(
            response.status_code,
            response.content.decode(),
            response.headers.items(),
            response.cookies,
        )

    return Site(send)


def http_site(client: httpx.Client) -> Site:
    """httpx against a served project; `client` must keep no cookies."""

    def send(
        method: str, path: str, cookie: str | None, data: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        if cookie:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        response = client.request(method, path, data=data or None, headers=headers)
        jar: SimpleCookie = SimpleCookie()
        for header in response.headers.get_list("set-cookie"):
            jar.load(header)
        return Reply.of(response.status_code, response.text, response.headers.items(), jar)

    return Site(send)


@contextlib.contextmanager
def http_client(server: Server) -> Iterator[Site]:
    with httpx.Client(
        base_url=server.base_url, timeout=REQUEST_TIMEOUT, cookies=ignoring_cookie_jar()
    ) as client:
        yield http_site(client)


def log_in(site: Site, cookie: str | None = None) -> str:
    """Log in as the test user; return the session cookie the login set."""
    reply = site("POST", "/login", cookie=cookie, data=CREDENTIALS)
    assert reply.status == 200, reply.text
    assert reply.cookie, reply.headers
    return reply.cookie


def show(site: Site, cookie: str | None) -> dict[str, Any]:
    reply = site("GET", "/show", cookie=cookie)
    assert reply.status == 200, reply.text
    body: dict[str, Any] = reply.body
    return body


# -- the project served by gunicorn -------------------------------------------------------


def project_env(**variables: str) -> dict[str, str]:
    """The project's settings for a process: `engine="db"` sets DJANGO_TEST_ENGINE=db."""
    env = {f"DJANGO_TEST_{name.upper()}": value for name, value in variables.items()}
    return {"DJANGO_SETTINGS_MODULE": "project.settings", **env}


PREPARE = f"""
from django.contrib.auth.models import User
from django.core.management import call_command

call_command("migrate", verbosity=0, interactive=False)
User.objects.create_user({USERNAME!r}, password={PASSWORD!r})
"""


def prepare_database(env: Mapping[str, str]) -> None:
    """Create the project's tables, and the test user, in the database `env` names."""
    done = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", PREPARE],
        cwd=PROJECT_DIR,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PREPARE_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def gunicorn(stack: contextlib.ExitStack, name: str, env: Mapping[str, str], logs: Path) -> Server:
    """The project on gunicorn, 2 gthread workers of 4 threads; stopped when `stack` closes."""
    server = Server(
        name,
        lambda port: gunicorn_command(
            "project.wsgi:application",
            port,
            chdir=PROJECT_DIR,
            workers=2,
            worker_class="gthread",
            threads=4,
        ),
        cwd=PROJECT_DIR,
        env=env,
        log_path=logs / f"gunicorn-{name}.log",
        ready_path="/health",
    )

    def print_log_on_error(error: type[BaseException] | None, *_: object) -> None:
        if error is not None:  # pytest shows it with the failure
            print(f"--- gunicorn {name}: {server.log_path} ---", server.log(), sep="\n")

    stack.push(print_log_on_error)
    stack.callback(server.stop)  # first: the log is complete when printed
    return server


def uvicorn(stack: contextlib.ExitStack, name: str, env: Mapping[str, str], logs: Path) -> Server:
    """The project's ASGI application on uvicorn, 2 workers: the middleware runs its async
    path (`asave()`), the project's sync views in Django's thread pool."""
    server = Server(
        name,
        lambda port: [
            *[sys.executable, "-m", "uvicorn", "--app-dir", str(PROJECT_DIR)],
            *["--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            *["--no-access-log", "--log-level", "info", "--timeout-graceful-shutdown", "5"],
            "project.asgi:application",
        ],
        cwd=PROJECT_DIR,
        env=env,
        log_path=logs / f"uvicorn-{name}.log",
        ready_path="/health",
    )
    stack.callback(server.stop)
    return server


@pytest.fixture(scope="module")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with the project's tables and the test user; servers get copies."""
    path = tmp_path_factory.mktemp("template") / "django.sqlite3"
    prepare_database(project_env(database=str(path)))
    return path


def sqlite_env(directory: Path, template: Path, **variables: str) -> dict[str, str]:
    """A project env on a copy of `template`, its sessions (any engine's) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    database = shutil.copyfile(template, directory / "django.sqlite3")
    (directory / "file-sessions").mkdir(exist_ok=True)
    return project_env(
        database=str(database),
        store=str(directory / "sessions"),
        file_path=str(directory / "file-sessions"),
        **variables,
    )


@pytest.fixture(scope="module")
def features_server(
    tmp_path_factory: pytest.TempPathFactory, template_database: Path
) -> Iterator[Server]:
    """sessionguard with a FileStore and CSRF_USE_SESSIONS, shared by the feature tests."""
    directory = tmp_path_factory.mktemp("features")
    env = sqlite_env(directory, template_database, csrf_use_sessions="1")
    with contextlib.ExitStack() as stack:
        yield gunicorn(stack, "features", env, directory)


@pytest.fixture(params=["in-process", "gunicorn"])
def site(request: pytest.FixtureRequest, user: str) -> Iterator[Site]:
    """The project with CSRF_USE_SESSIONS, through `django.test.Client` or gunicorn."""
    if request.param == "in-process":
        request.getfixturevalue("settings_override")(CSRF_USE_SESSIONS=True)
        yield django_client_site()
    else:
        with http_client(request.getfixturevalue("features_server")) as site:
            yield site


# -- 1. auth, messages and CSRF ----------------------------------------------------------


def test_login_rotates_the_session_key_and_the_old_key_shows_no_user(site: Site) -> None:
    before = site("POST", "/set/cart", data={"value": "3 items"})
    assert before.status == 200 and before.cookie, before.headers
    old = before.cookie

    new = log_in(site, old)

    assert new != old
    after = show(site, new)
    assert after["user"] == USERNAME
    assert after["data"]["cart"] == "3 items"  # login keeps the anonymous session's data
    assert show(site, old) == {"data": {}, "user": None}


def test_logout_clears_the_cookie_and_the_user_is_gone(site: Site) -> None:
    cookie = log_in(site)
    assert show(site, cookie)["user"] == USERNAME

    logout = site("POST", "/logout", cookie=cookie)

    assert logout.status == 200, logout.text
    assert logout.cookie == "", logout.headers  # cleared
    assert str(logout.cookies[COOKIE]["max-age"]) == "0"
    assert show(site, cookie) == {"data": {}, "user": None}


def test_a_flashed_message_is_shown_once(site: Site) -> None:
    flash = site("POST", "/message", data={"text": "Profile saved."})
    assert flash.status == 200 and flash.cookie, flash.headers
    cookie = flash.cookie

    first = site("GET", "/messages", cookie=cookie)
    second = site("GET", "/messages", cookie=cookie)

    assert (first.status, first.body) == (200, {"messages": ["Profile saved."]})
    assert (second.status, second.body) == (200, {"messages": []})


def test_csrf_use_sessions_keeps_the_token_in_the_session_and_checks_it(site: Site) -> None:
    issued = site("GET", "/csrf")
    assert issued.status == 200 and issued.cookie, issued.headers
    assert "csrftoken" not in issued.cookies  # with CSRF_USE_SESSIONS there is no CSRF cookie
    token, cookie = issued.body["token"], issued.cookie
    assert show(site, cookie)["data"]["_csrftoken"]

    with_token = site("POST", "/protected", cookie=cookie, headers={"X-CSRFToken": token})
    without = site("POST", "/protected", cookie=cookie)
    other_session = site("POST", "/protected", cookie=log_in(site), headers={"X-CSRFToken": token})

    assert (with_token.status, with_token.body) == (200, {"ok": True})
    assert without.status == 403
    assert other_session.status == 403  # the token belongs to the session it was issued in


# -- 2. an AJAX burst on one session, SESSION_SAVE_EVERY_REQUEST = True --------------------

BURST_ENGINES = ("sessionguard", "db", "file")
BURST_CLIENTS, BURST_REQUESTS = 4, 25
PROGRESS_TIMEOUT = 30.0


def burst_ops(client: int, count: int = BURST_REQUESTS, **params: str) -> list[Op]:
    """`count` requests each setting a key of its own: `c<client>-<j>` = `<client>:<j>`."""
    return [
        ("POST", f"/set/c{client}-{j}", {"value": f"{client}:{j}", **params}) for j in range(count)
    ]


def set_by(result: Result) -> tuple[str, str]:
    """The key and the value a burst request set."""
    return result["path"].removeprefix("/set/"), result["params"]["value"]


def run_burst(
    server: Server,
    cookie: str,
    directory: Path,
    op_lists: list[list[Op]],
    during: Callable[[], Reply] | None = None,
) -> tuple[list[Result], Reply | None]:
    """Send each op list from a client process of its own, every request with `cookie`.
    Once every process has had a few answers, `during()` (a login, a logout) is sent while
    they go on; returns every request's result and `during`'s reply."""
    reply = None
    with client_processes(directory) as start:
        processes = start(server.base_url, cookie, op_lists, cookie_name=COOKIE)
        if during is not None:
            deadline = time.monotonic() + PROGRESS_TIMEOUT
            while not all(process.completed() >= 3 for process in processes):
                assert time.monotonic() < deadline, "the burst did not get going"
                time.sleep(0.01)
            reply = during()
        return [result for process in processes for result in process.results()], reply


@dataclass(frozen=True)
class BurstRow:
    engine: str
    sent: int
    failed: int  # answered with another status than 200, or not at all
    lost: int  # keys set by a request that are not in the session afterwards
    reissued: int  # responses setting another session key than the logged-in one
    logged_in: bool  # the session still shows the user afterwards

    def cells(self) -> tuple[str, ...]:
        counts = (self.sent, self.failed, self.lost, self.reissued)
        return (self.engine, *map(str, counts), "yes" if self.logged_in else "no")


def burst(server: Server, directory: Path) -> BurstRow:
    """Log in, have BURST_CLIENTS processes set BURST_REQUESTS keys each on that session,
    then read the session back."""
    with http_client(server) as site:
        cookie = log_in(site)
        ops = [burst_ops(i) for i in range(BURST_CLIENTS)]
        results, _ = run_burst(server, cookie, directory, ops)
        after = show(site, cookie)
    return BurstRow(
        engine=server.name,
        sent=len(results),
        failed=sum(1 for r in results if r["status"] != 200),
        lost=sum(1 for r in results if after["data"].get(set_by(r)[0]) != set_by(r)[1]),
        reissued=sum(1 for r in results if any(c != cookie for c in r["cookies"])),
        logged_in=after["user"] == USERNAME,
    )


def table(rows: list[BurstRow]) -> str:
    header = ("engine", "updates sent", "failed", "lost", "re-issued keys", "logged in")
    lines = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    title = (
        f"AJAX burst on one session, SESSION_SAVE_EVERY_REQUEST=True, gunicorn 2x4 gthread, "
        f"{BURST_CLIENTS} processes x {BURST_REQUESTS} requests"
    )
    return "\n".join(["", title, *text, ""])


def test_an_ajax_burst_with_save_every_request_loses_nothing_and_keeps_the_key(
    tmp_path: Path, template_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = []
    logs: dict[str, str] = {}
    for engine in BURST_ENGINES:
        directory = tmp_path / engine
        env = sqlite_env(directory, template_database, engine=engine, save_every_request="1")
        with contextlib.ExitStack() as stack:
            server = gunicorn(stack, engine, env, directory)
            rows.append(burst(server, directory))
        logs[engine] = server.log()
    with capsys.disabled():
        print(table(rows))

    ours = rows[0]
    sent = BURST_CLIENTS * BURST_REQUESTS
    assert ours == BurstRow("sessionguard", sent, 0, 0, 0, logged_in=True), table(rows)
    assert_clean_server_log(logs["sessionguard"])


def test_the_same_burst_on_uvicorn_loses_nothing_and_keeps_the_key(
    tmp_path: Path, template_database: Path
) -> None:
    env = sqlite_env(tmp_path, template_database, save_every_request="1")
    with contextlib.ExitStack() as stack:
        server = uvicorn(stack, "sessionguard-asgi", env, tmp_path)
        row = burst(server, tmp_path)
    sent = BURST_CLIENTS * BURST_REQUESTS
    assert row == BurstRow("sessionguard-asgi", sent, 0, 0, 0, logged_in=True), table([row])
    assert_clean_server_log(server.log())


@pytest.fixture
def every_request_server(tmp_path: Path, template_database: Path) -> Iterator[Server]:
    """sessionguard with SESSION_SAVE_EVERY_REQUEST = True on gunicorn."""
    env = sqlite_env(tmp_path, template_database, save_every_request="1")
    with contextlib.ExitStack() as stack:
        yield gunicorn(stack, "sessionguard", env, tmp_path)


#: Each request holds the session it loaded for 0.2 s before it sets its key, so a login
#: or a logout sent meanwhile overtakes the request each process has in flight.
SLOW_BURST = [burst_ops(i, 8, pause="0.2") for i in range(3)]


def test_a_login_during_an_ajax_burst_keeps_every_write_and_never_leaks_the_new_key(
    every_request_server: Server, tmp_path: Path
) -> None:
    server = every_request_server
    with http_client(server) as site:
        old = site("POST", "/set/start", data={"value": "1"}).cookie
        assert old
        log_in_on_old = partial(site, "POST", "/login", data=CREDENTIALS, cookie=old)
        results, login = run_burst(server, old, tmp_path, SLOW_BURST, log_in_on_old)
        assert login is not None and login.status == 200, login
        new = login.cookie
        assert new and new != old, login.headers
        final, old_view = show(site, new), show(site, old)
        forked = {c: show(site, c) for r in results for c in r["cookies"] if c not in (old, new)}

    assert by_status(results) == {200: len(results)}, results
    assert any(r["cookies"] == [] for r in results), "no request was in flight at the login"
    carried: dict[str, str] = {}
    for result in results:
        key, value = set_by(result)
        assert new not in result["cookies"], result  # only the login may hand out the new key
        if result["cookies"] in ([], [old]):
            # Saved on the old key before the login moved it (and carried over), or loaded
            # before and saved after (merged into the new key, no cookie sent).
            carried[key] = value
        else:
            # Opened the old key after the move: a fresh anonymous session of its own.
            [fresh] = result["cookies"]
            assert forked[fresh] == {"data": {key: value}, "user": None}, result
    assert final["user"] == USERNAME and final["data"]["start"] == "1"
    assert {key: final["data"].get(key) for key in carried} == carried
    assert len(final["data"]) == len(carried) + 1 + 3  # start, and auth's three keys
    assert old_view == {"data": {}, "user": None}


def test_a_logout_during_an_ajax_burst_ends_the_session_for_good(
    every_request_server: Server, tmp_path: Path
) -> None:
    server = every_request_server
    with http_client(server) as site:
        cookie = log_in(site)
        log_out = partial(site, "POST", "/logout", cookie=cookie)
        results, logout = run_burst(server, cookie, tmp_path, SLOW_BURST, log_out)
        after = show(site, cookie)
        fresh = {c: show(site, c) for r in results for c in r["cookies"] if c not in (cookie, '""')}

    assert logout is not None and logout.status == 200 and logout.cookie == "", logout
    # Never Django's 400 (SessionInterrupted) for the requests the logout overtook.
    assert by_status(results) == {200: len(results)}, results
    # The requests in flight found their session ended: the cookie cleared, nothing saved.
    assert any(r["cookies"] == ['""'] for r in results), "no request was in flight"
    assert after == {"data": {}, "user": None}  # none of them brought it back
    assert all(view["user"] is None for view in fresh.values()), fresh


# -- 3. PostgreSQL turns read-only (or stops) under the server ------------------------------


@dataclass(frozen=True)
class Database:
    server: PostgresServer
    name: str

    @property
    def django_url(self) -> str:  # what DJANGO_TEST_DATABASE_URL reads
        return f"postgresql://postgres@127.0.0.1:{self.server.port}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.server.port}/{self.name}"

    def session_ids(self) -> set[str]:
        """The ids of the sessions in sessionguard's table of this database."""
        with psycopg.connect(self.django_url) as connection:
            rows = connection.execute("SELECT id FROM sessionguard_sessions").fetchall()
        return {row[0] for row in rows}


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[Database]:
    """A database of this test's own on the shared PostgreSQL, writable again (and dropped)
    afterwards whatever the test did."""
    database = Database(postgres_server, f"served_{uuid.uuid4().hex[:12]}")
    postgres_server.set_read_only(False)
    postgres_server.sql(f"CREATE DATABASE {database.name}")
    try:
        yield database
    finally:
        postgres_server.set_read_only(False)
        postgres_server.sql(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")


@pytest.fixture(params=["in-process", "gunicorn"])
def pg_site(
    request: pytest.FixtureRequest, pg_database: Database, tmp_path: Path
) -> Iterator[Site]:
    """sessionguard keeping its sessions in PostgreSQL: in process (SESSIONGUARD_STORE is
    the database's URL; users stay in SQLite), or on gunicorn with the whole project in
    PostgreSQL and SESSIONGUARD_STORE = "django://default"."""
    if request.param == "in-process":
        from sessionguard.django.config import current_engine

        request.getfixturevalue("user")
        request.getfixturevalue("settings_override")(SESSIONGUARD_STORE=pg_database.sqlalchemy_url)
        store = current_engine().store  # opened for this URL and kept: close it afterwards
        try:
            yield django_client_site()
        finally:
            store.close()
        return
    env = project_env(database_url=pg_database.django_url, store="django://default")
    prepare_database(env)
    with contextlib.ExitStack() as stack:
        server = gunicorn(stack, "postgres", env, tmp_path)
        with http_client(server) as site:
            yield site


def assert_unavailable(reply: Reply) -> None:
    assert reply.status == 503, (reply.status, reply.text)  # Django's engines answer 400
    assert int(reply.headers["retry-after"]) > 0
    assert not any(word in reply.text.lower() for word in MISLEADING), reply.text
    assert reply.cookie is None, reply.headers  # the client keeps its session cookie


@contextlib.contextmanager
def pg_outage(server: PostgresServer, kind: str) -> Iterator[None]:
    """PostgreSQL refusing writes ("read-only": a failover, a restart into recovery) or
    down altogether ("stopped": a restart) for the duration; always back afterwards."""
    if kind == "read-only":
        server.set_read_only(True)
        try:
            yield
        finally:
            server.set_read_only(False)
    else:
        stop(server.process, signal.SIGINT)  # "fast" shutdown: open connections are cut
        try:
            yield
        finally:
            server.start()


@pytest.mark.parametrize("outage", ["read-only", "stopped"])
def test_a_postgres_outage_answers_503_keeps_the_data_and_recovers_by_itself(
    pg_site: Site, pg_database: Database, outage: str
) -> None:
    site = pg_site
    visitor = site("POST", "/set/visits", data={"value": "1"}).cookie  # not logged in
    assert visitor
    cookie = log_in(site)
    assert site("POST", "/set/cart", cookie=cookie, data={"value": "3 items"}).status == 200
    before, visitor_before = show(site, cookie), show(site, visitor)
    assert before["user"] == USERNAME and before["data"]["cart"] == "3 items"
    assert visitor_before == {"data": {"visits": "1"}, "user": None}
    # Kept in the project's own database, in sessionguard's table (the key is `<id>.<sig>`).
    stored = pg_database.session_ids()
    assert {cookie.partition(".")[0], visitor.partition(".")[0]} <= stored

    with pg_outage(pg_database.server, outage):
        # Several writes, so that each gunicorn worker meets the outage with its own pool.
        for attempt in range(4):
            assert_unavailable(
                site("POST", "/set/cart", cookie=cookie, data={"value": f"outage {attempt}"})
            )
        # auth's logout (flush) writes the session in the view.
        assert_unavailable(site("POST", "/logout", cookie=cookie))
        if outage == "read-only":
            # So does login (cycle_key). (With the database stopped, the project's own
            # user lookup fails first, served: Django's 500, no matter of the session.)
            assert_unavailable(site("POST", "/login", cookie=visitor, data=CREDENTIALS))
            # Reading works on a read-only database.
            assert (show(site, cookie), show(site, visitor)) == (before, visitor_before)
        else:
            assert_unavailable(site("GET", "/show", cookie=cookie))

    # Nothing of the refused requests was kept: no write, no login, no logout.
    assert (show(site, cookie), show(site, visitor)) == (before, visitor_before)
    assert pg_database.session_ids() == stored
    for attempt in range(4):
        reply = site("POST", "/set/cart", cookie=cookie, data={"value": f"after {attempt}"})
        assert reply.status == 200, reply.text
        assert reply.cookie in (None, cookie), reply.headers  # the same session, no new key
    after = show(site, cookie)
    assert after["user"] == USERNAME and after["data"]["cart"] == "after 3"
    assert log_in(site, visitor) != visitor
