import re

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from tests.conftest import TOKEN, spec_data


@pytest.fixture
def browser(api_settings):
    """A client with no token: it signs in like a person would."""
    with TestClient(create_app(api_settings), follow_redirects=False) as client:
        yield client


def sign_in(browser) -> None:
    response = browser.post("/login", data={"token": TOKEN, "next": "/"})
    assert response.status_code == 303


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_pages_need_a_session(browser):
    response = browser.get("/")
    assert (response.status_code, response.headers["location"]) == (303, "/login?next=/")
    htmx = browser.get("/runs/1", headers={"HX-Request": "true"})
    assert (htmx.status_code, htmx.headers["HX-Redirect"]) == (204, "/login?next=/runs/1")


def test_sign_in_with_the_token(browser):
    assert "Sign in" in browser.get("/login").text
    wrong = browser.post("/login", data={"token": "nope"})
    assert wrong.status_code == 401
    assert "That is not the token." in wrong.text
    right = browser.post("/login", data={"token": TOKEN, "next": "/runs/7"})
    assert (right.status_code, right.headers["location"]) == (303, "/runs/7")
    cookie = right.headers["set-cookie"]
    assert "myriad_session=" in cookie
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()


def test_the_printed_link_signs_in_and_never_redirects_off_site(browser):
    assert browser.get("/login", params={"token": "bad"}).status_code == 200
    linked = browser.get("/login", params={"token": TOKEN, "next": "//evil.example"})
    assert (linked.status_code, linked.headers["location"]) == (303, "/")
    assert browser.get("/").status_code == 200


def test_runs_page_and_its_live_fragment(browser):
    sign_in(browser)
    api = {"Authorization": f"Bearer {TOKEN}"}
    run = browser.post("/api/v1/runs", json=spec_data(name="dashboard run"), headers=api).json()
    page = browser.get("/")
    assert page.template.name == "runs.html"
    assert "dashboard run" in page.text
    assert 'hx-trigger="every 1s"' in page.text  # a queued run: the table keeps itself fresh
    fragment = browser.get("/", headers={"HX-Request": "true", "HX-Target": "runs-rows"})
    assert fragment.template.name == "runs_rows.html"
    assert "<html" not in fragment.text
    vary = {v.strip() for v in fragment.headers["Vary"].split(",")}
    assert vary >= {"HX-Request", "HX-Target", "HX-Boosted", "HX-History-Restore-Request", "Cookie"}
    restored = browser.get(
        "/", headers={"HX-Request": "true", "HX-Target": "x", "HX-History-Restore-Request": "true"}
    )
    assert restored.template.name == "runs.html"
    detail = browser.get(f"/runs/{run['id']}")
    assert detail.template.name == "run.html"
    assert "1,000 agents" in detail.text
    assert browser.get("/runs/999").status_code == 404


def test_sign_out_needs_the_csrf_token(browser):
    sign_in(browser)
    assert browser.post("/logout").status_code == 403
    assert browser.post("/logout", data={"csrf": "forged"}).status_code == 403
    token = csrf_of(browser.get("/").text)
    assert browser.post("/logout", data={"csrf": token}).status_code == 303
    assert browser.get("/").status_code == 303


def test_browser_libraries_are_served_locally(browser):
    page = browser.get("/login").text
    assert "/static/vendor/htmx.min.js" in page
    assert "https://" not in page
    assert browser.get("/static/vendor/htmx.min.js").status_code == 200
