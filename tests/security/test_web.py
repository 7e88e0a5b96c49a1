"""The service as an outside tester sees it without a browser: what is open, what refuses whom,
which headers every answer carries, and how sign-in holds up to guessing."""

from __future__ import annotations

import re
import stat

import httpx2 as httpx
import pytest
from click.testing import CliRunner
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.routing import Mount

from backend import cli
from backend.app import Server, create_app
from backend.settings import Settings
from tests.conftest import API, TOKEN, csrf_of, serve_app, sign_in, spec_data

OPEN = {"/healthz", "/login"}  # and /static: the only routes anyone may use without the token
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, ids filled in; fails on a kind of route the
    walk does not know, so none slips through unchecked."""
    found = []
    for route in iter_route_contexts(app.routes):  # included routers' routes with their prefixes
        if isinstance(route.original_route, Mount):
            assert route.path == "/static", f"a mount nobody checked: {route.path}"
            continue
        assert isinstance(route.original_route, APIRoute), f"a route nobody checked: {route!r}"
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        found += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return found


def test_every_route_needs_the_token_or_a_session(visitor):
    """The API (and /metrics) answer 401; pages, fragments, streams and the docs send the browser
    to the login page."""
    for method, path in _routes(visitor.app):
        if path in OPEN:
            continue
        response = visitor.request(method, path)
        if path.startswith("/api/") or path == "/metrics":
            assert response.status_code == 401, (method, path)
            assert response.headers["WWW-Authenticate"] == "Bearer"
        else:
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login?next="), (method, path)
    assert visitor.get("/api/v1/no-such-route").status_code == 401
    assert visitor.get("/static/myriad.css").status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b'{"name": 1}', b"\x00" * 64])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-of-enough-length"])
def test_the_token_is_checked_before_the_body(visitor, body, authorization):
    headers = {"Content-Type": "application/json"} | (
        {"Authorization": authorization} if authorization else {}
    )
    response = visitor.post("/api/v1/runs", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"].startswith("missing or wrong token")


def test_cross_site_posts_are_refused_on_every_page_route(member):
    """Signed in, but without the page's CSRF token (what another site's form would send): every
    state-changing dashboard route refuses, sign-out everywhere included."""
    swept = set()
    for method, path in _routes(member.app):
        if method in CHANGES and not path.startswith("/api/") and path not in OPEN:
            forged = member.request(
                method, path, data={"csrf": "forged"}, headers={"Origin": "https://evil.example"}
            )
            assert forged.status_code == 403, (method, path, forged.status_code)
            swept.add(path)
    assert {"/logout", "/logout/everywhere"} <= swept
    assert member.get("/").status_code == 200  # still signed in: nothing was done


def test_signing_out_revokes_the_cookie(member):
    stolen = member.cookies["myriad_session"]
    assert member.post("/logout", data={"csrf": csrf_of(member.get("/").text)}).status_code == 303
    member.cookies.set("myriad_session", stolen)  # as a copy of the cookie would be sent
    refused = member.get("/")
    assert (refused.status_code, refused.headers["location"]) == (303, "/login?next=/")
    member.cookies.set("myriad_session", stolen)
    assert member.get("/live/runs").status_code == 303


def test_signing_out_everywhere_revokes_every_browser_in_every_process(api_settings):
    """Two API processes of one deployment (two apps on one database): a browser signed in on
    one is signed out by "sign out everywhere" pressed on the other; a restart changes nothing."""
    with (
        TestClient(create_app(api_settings), follow_redirects=False) as first,
        TestClient(create_app(api_settings), follow_redirects=False) as second,
    ):
        sign_in(first)
        sign_in(second)
        with TestClient(
            create_app(api_settings), follow_redirects=False, cookies=dict(first.cookies)
        ) as restarted:
            assert restarted.get("/").status_code == 200  # sign-ins outlive a restart
        pressed = second.post("/logout/everywhere", data={"csrf": csrf_of(second.get("/").text)})
        assert (pressed.status_code, pressed.headers["location"]) == (303, "/login")
        assert first.get("/").status_code == 303
        assert second.get("/").status_code == 303
        sign_in(first)  # signing in again works
        assert first.get("/").status_code == 200


def _has_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    policy = headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'self'"):
        assert directive in policy, policy
    assert "form-action 'self'" in policy
    assert "unsafe-eval" not in policy
    assert (headers["X-Frame-Options"], headers["X-Content-Type-Options"]) == ("DENY", "nosniff")
    assert headers["Referrer-Policy"] == "same-origin"


def test_every_answer_carries_the_security_headers(member):
    async def boom() -> None:
        raise RuntimeError("a bug")

    member.app.add_api_route("/boom", boom)
    answers = {
        "page": member.get("/"),
        "fragment": member.get("/", headers={"HX-Request": "true", "HX-Target": "runs-rows"}),
        "login": member.get("/login"),
        "api": member.get("/api/v1/runs", headers=API),
        "api refused": member.get("/api/v1/runs"),
        "static": member.get("/static/myriad.css"),
        "not found": member.get("/no-such-page"),
        "healthz": member.get("/healthz"),
    }
    with TestClient(member.app, raise_server_exceptions=False) as unhandled:
        answers["server error"] = unhandled.get("/boom")
    assert answers["server error"].status_code == 500
    for what, response in answers.items():
        try:
            _has_security_headers(response)
        except (AssertionError, KeyError) as e:
            raise AssertionError(f"{what}: {e!r}") from e
        if what != "api":
            assert "unsafe-inline" not in response.headers["Content-Security-Policy"], what


@pytest.mark.parametrize("how", ["form", "link", "api"])
def test_failed_sign_ins_are_limited_per_address(visitor, how):
    """Ten failures a minute from one address, by any way in, then 429 with Retry-After for every
    way in, the right token too; other addresses are not affected, and a minute later it eases."""
    now = [1000.0]
    visitor.app.state.throttle._clock = lambda: now[0]
    attempts = {
        "form": lambda token: visitor.post("/login", data={"token": token}),
        "link": lambda token: visitor.get("/login", params={"token": token}),
        "api": lambda token: visitor.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"}),
    }
    for _ in range(10):
        assert attempts[how]("wrong-token-guess-number").status_code == 401
    for way, attempt in attempts.items():
        refused = attempt(TOKEN)
        assert refused.status_code == 429, way
        assert 1 <= int(refused.headers["Retry-After"]) <= 60, way
    assert visitor.app.state.throttle.retry_after("192.0.2.7") is None  # another address
    now[0] += 61
    assert attempts["form"](TOKEN).status_code == 303


def test_a_short_token_is_refused_at_start(tmp_path, monkeypatch):
    with pytest.raises(ValidationError, match="fewer than 16"):
        Settings(token="fifteen-chars!!")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["serve"], env={"MYRIAD_TOKEN": "short"})
    assert result.exit_code == 1
    assert result.output.strip().startswith("MYRIAD_TOKEN has 5 characters, fewer than 16")
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture
def served(monkeypatch, tmp_path):
    """`myriad serve` up to starting uvicorn, then as once it answers: what it printed, and the
    uvicorn config it made."""
    configs = []

    def run(self: Server) -> None:
        configs.append(self.config)
        if self.on_ready is not None:
            self.on_ready(f"http://{self.config.host}:{self.config.port}")

    monkeypatch.setattr(Server, "run", run)
    monkeypatch.chdir(tmp_path)

    def serve(**env: str) -> tuple[str, object]:
        result = CliRunner().invoke(cli.main, ["serve"], env={"DATABASE_URL": "sqlite:///myriad.db", **env})
        assert result.exit_code == 0, result.output
        return result.output, configs[-1]

    return serve


def test_the_token_is_printed_on_a_terminal_only(served, tmp_path):
    printed, _ = served(MYRIAD_TOKEN=TOKEN)
    assert TOKEN not in printed
    assert "http://127.0.0.1:8000/login  (token from MYRIAD_TOKEN)" in printed
    printed, config = served(MYRIAD_TOKEN="")
    made = (tmp_path / "myriad.db.token").read_text().strip()
    assert made == config.app.state.token
    assert made not in printed
    assert "(token made for this start: in myriad.db.token, readable by you only)" in printed
    assert stat.S_IMODE((tmp_path / "myriad.db.token").stat().st_mode) == 0o600


def test_serve_believes_forwarded_headers_from_trusted_proxies_only(served):
    _, config = served(MYRIAD_TOKEN=TOKEN)
    assert (config.proxy_headers, config.forwarded_allow_ips) == (True, "127.0.0.1,::1")
    _, config = served(MYRIAD_TOKEN=TOKEN, MYRIAD_FORWARDED_ALLOW_IPS="10.0.0.0/8")
    assert config.forwarded_allow_ips == "10.0.0.0/8"


def _cookie_after_sign_in(url: str, **headers: str) -> str:
    response = httpx.post(f"{url}/login", data={"token": TOKEN}, headers=headers, timeout=10)
    assert response.status_code == 303
    return response.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    ("trusted", "forwarded", "secure"),
    [("127.0.0.1", "https", True), ("127.0.0.1", None, False), ("10.9.9.9", "https", False)],
)
def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(api_settings, trusted, forwarded, secure):
    """Under uvicorn as `serve` runs it: a trusted proxy's X-Forwarded-Proto: https makes the
    cookie Secure; anyone else's header is ignored."""
    settings = api_settings.model_copy(update={"forwarded_allow_ips": trusted})
    headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
    with serve_app(settings) as url:
        assert ("; secure" in _cookie_after_sign_in(url, **headers)) is secure


def test_a_bad_event_cursor_is_a_400(member):
    run = member.post("/api/v1/runs", json=spec_data(), headers=API).json()
    member.post(f"/runs/{run['id']}/stop", headers={"X-CSRF-Token": csrf_of(member.get("/").text)})
    url = f"/live/runs/{run['id']}"
    for params, headers, where in [
        ({"after": "abc"}, {}, "after"),
        ({"after": "²"}, {}, "after"),
        ({}, {"Last-Event-ID": "x"}, "Last-Event-ID"),
        ({"after": "5"}, {"Last-Event-ID": "-1"}, "Last-Event-ID"),
    ]:
        response = member.get(url, params=params, headers=headers)
        assert response.status_code == 400, (params, headers)
        assert response.json()["detail"].startswith(f"{where} must be an event id"), response.text
    assert member.get(url, params={"after": "0"}).status_code == 200  # a good one streams


def test_the_api_docs_need_sign_in_and_come_from_this_site(visitor):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert visitor.get(path).status_code == 303
    assert visitor.get("/api/v1/openapi.json", headers=API).json()["info"]["title"] == "Myriad"
    sign_in(visitor)
    assert visitor.get("/openapi.json").json()["info"]["title"] == "Myriad"
    for path in ("/docs", "/redoc"):
        page = visitor.get(path)
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources
        assert all(s.startswith(("http://testserver/", "data:")) for s in sources), sources
        for source in sources:
            if source.startswith("http"):
                assert visitor.get(source).status_code == 200, source
        _has_security_headers(page)
