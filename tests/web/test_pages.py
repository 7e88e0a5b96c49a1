import threading
import time

import httpx2 as httpx
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, csrf_of, serve_app, sign_in, spec_data


def test_pages_need_a_session(visitor):
    response = visitor.get("/")
    assert (response.status_code, response.headers["location"]) == (303, "/login?next=/")
    htmx = visitor.get("/runs/1", headers={"HX-Request": "true"})
    assert (htmx.status_code, htmx.headers["HX-Redirect"]) == (204, "/login?next=/runs/1")


def test_sign_in_with_the_token(visitor):
    assert "Sign in" in visitor.get("/login").text
    wrong = visitor.post("/login", data={"token": "nope"})
    assert wrong.status_code == 401
    assert "That is not the token." in wrong.text
    right = visitor.post("/login", data={"token": TOKEN, "next": "/runs/7"})
    assert (right.status_code, right.headers["location"]) == (303, "/runs/7")
    cookie = right.headers["set-cookie"]
    assert "myriad_session=" in cookie
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()


def test_the_printed_link_signs_in_and_never_redirects_off_site(visitor):
    assert visitor.get("/login", params={"token": "bad"}).status_code == 401
    linked = visitor.get("/login", params={"token": TOKEN, "next": "//evil.example"})
    assert (linked.status_code, linked.headers["location"]) == (303, "/")
    assert visitor.get("/").status_code == 200


def test_runs_page_and_its_live_fragment(visitor):
    sign_in(visitor)
    api = {"Authorization": f"Bearer {TOKEN}"}
    run = visitor.post("/api/v1/runs", json=spec_data(name="dashboard run"), headers=api).json()
    page = visitor.get("/")
    assert page.template.name == "runs.html"
    assert "dashboard run" in page.text
    assert 'sse-connect="http://testserver/live/runs"' in page.text  # the table follows the runs
    fragment = visitor.get("/", headers={"HX-Request": "true", "HX-Target": "runs-rows"})
    assert fragment.template.name == "runs_rows.html"
    assert "<html" not in fragment.text
    vary = {v.strip() for v in fragment.headers["Vary"].split(",")}
    assert vary >= {"HX-Request", "HX-Target", "HX-Boosted", "HX-History-Restore-Request", "Cookie"}
    restored = visitor.get(
        "/", headers={"HX-Request": "true", "HX-Target": "x", "HX-History-Restore-Request": "true"}
    )
    assert restored.template.name == "runs.html"
    detail = visitor.get(f"/runs/{run['id']}")
    assert detail.template.name == "run.html"
    assert "1,000 agents" in detail.text
    assert visitor.get("/runs/999").status_code == 404


def test_what_is_not_there_is_a_page_saying_so_and_runs_is_the_runs_list(member):
    for path, detail in [
        ("/runs/999", "run 999 not found"),
        ("/runs/999/agents/3", "run 999 not found"),
        ("/no/such/page", "There is no page at /no/such/page"),
    ]:
        page = member.get(path)
        assert page.status_code == 404
        assert page.template.name == "error.html"
        assert f'<p class="detail">{detail}.</p>' in page.text
        assert 'href="http://testserver/">All runs</a>' in page.text
    api = member.get("/api/v1/runs/999", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (api.status_code, api.json()["detail"]) == (404, "run 999 not found")  # clients keep JSON
    moved = member.get("/runs")
    assert (moved.status_code, moved.headers["location"]) == (308, "http://testserver/")


def test_every_error_is_a_page_for_a_person_and_json_for_a_client(member):
    """403, 409, 422 and 500 (as 404 above): a person gets a page with the API's sentence and a
    way back; the API, a client asking for JSON and the live streams keep the JSON."""
    from backend.domain import IllegalTransition

    async def busy() -> None:
        raise IllegalTransition("run 3 is running; stop it before deleting it")

    async def boom() -> None:
        raise RuntimeError("a bug with a secret in it")

    member.app.add_api_route("/busy", busy)
    member.app.add_api_route("/boom", boom)
    came_from = {"Referer": "http://testserver/runs/new"}
    # Not entered: the app is already running (member's); this client only keeps a 500 an answer.
    quiet = TestClient(member.app, raise_server_exceptions=False, cookies=dict(member.cookies))
    answers = {
        403: (
            member.post("/logout", data={"csrf": "forged"}, headers=came_from),
            "This form has expired",
        ),
        409: (member.get("/busy", headers=came_from), "run 3 is running; stop it before deleting it."),
        422: (
            member.get("/runs/1/chart", params={"round": 0}, headers=came_from),
            "invalid input: query.round:",
        ),
        500: (quiet.get("/boom", headers=came_from), "internal error."),
    }
    as_json = quiet.get("/boom", headers={"Accept": "application/json"})
    for code, (page, sentence) in answers.items():
        assert page.status_code == code
        assert page.headers["content-type"].startswith("text/html"), code
        assert '<p class="detail">' + sentence in page.text, (code, page.text)
        assert '<a href="http://testserver/runs/new">Back to the page you came from</a>' in page.text, code
        assert 'href="http://testserver/">All runs</a>' in page.text, code
    assert "secret" not in answers[500][0].text
    assert "<li><code>query.round</code>: Input should be greater than" in answers[422][0].text
    assert (as_json.status_code, as_json.json()) == (500, {"detail": "internal error", "errors": []})
    api = member.get("/api/v1/runs/abc", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 422
    assert api.json()["detail"].startswith("invalid input: path.run_id:")
    busy_json = member.get("/busy", headers={"Accept": "application/json"})
    assert busy_json.json()["detail"] == "run 3 is running; stop it before deleting it"
    # htmx, aiming at part of a page, gets the sentence alone (it swaps a 422 in place).
    fragment = member.get(
        "/runs/1/chart", params={"round": 0}, headers={"HX-Request": "true", "HX-Target": "run-chart"}
    )
    assert fragment.text.startswith('<p class="error" role="alert">invalid input: query.round:')
    assert "<html" not in fragment.text


def test_a_boosted_form_s_error_page_keeps_the_address(member):
    """htmx swaps the error page of a boosted link or form in place of the page (forms.js); a
    form's must not push the form's action into the history (a reload would GET it), a link's
    address is the page's own."""
    boosted = {"HX-Request": "true", "HX-Boosted": "true", "HX-Current-URL": "http://testserver/"}
    form = member.post("/logout", data={"csrf": "forged"}, headers=boosted)
    assert (form.status_code, form.headers.get("HX-Push-Url")) == (403, "false")
    assert "<html" in form.text
    link = member.get("/runs/999", headers=boosted)
    assert (link.status_code, link.headers.get("HX-Push-Url")) == (404, None)
    assert '<p class="detail">run 999 not found.' in link.text


def test_sign_out_needs_the_csrf_token(visitor):
    sign_in(visitor)
    assert visitor.post("/logout").status_code == 403
    assert visitor.post("/logout", data={"csrf": "forged"}).status_code == 403
    token = csrf_of(visitor.get("/").text)
    assert visitor.post("/logout", data={"csrf": token}).status_code == 303
    assert visitor.get("/").status_code == 303


def test_browser_libraries_are_served_locally(visitor):
    page = visitor.get("/login").text
    assert "/static/vendor/htmx.min.js" in page
    assert "https://" not in page
    assert visitor.get("/static/vendor/htmx.min.js").status_code == 200


def test_run_controls_need_csrf_and_follow_the_lifecycle(visitor):
    sign_in(visitor)
    api = {"Authorization": f"Bearer {TOKEN}"}
    run = visitor.post("/api/v1/runs", json=spec_data(), headers=api).json()
    page = visitor.get(f"/runs/{run['id']}").text
    assert f'/runs/{run["id"]}/stop"' in page
    assert "Pause</button>" not in page  # a queued run can only be stopped
    assert visitor.post(f"/runs/{run['id']}/stop").status_code == 403
    csrf = {"X-CSRF-Token": csrf_of(page)}
    stopped = visitor.post(f"/runs/{run['id']}/stop", headers=csrf)
    assert stopped.template.name == "run_live.html"
    assert 'class="status stopped"' in stopped.text
    refused = visitor.post(f"/runs/{run['id']}/resume", headers=csrf)
    assert f"run {run['id']} is stopped; it cannot become running" in refused.text
    assert visitor.post(f"/runs/{run['id']}/jump", headers=csrf).status_code == 422


def test_every_route_has_its_own_name():
    """Templates find URLs by route name: a page named like an API route would link to the API."""
    from backend.api.routes import agents, cluster, health, runs
    from backend.web import agents as agent_pages
    from backend.web import auth, live, new_run
    from backend.web import cluster as cluster_page
    from backend.web import runs as run_pages

    modules = (agents, cluster, health, runs, agent_pages, auth, live, new_run, cluster_page, run_pages)
    names = [route.name for module in modules for route in module.router.routes]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_stopping_the_server_ends_open_live_streams(api_settings):
    """A browser left on a page must not hold the server's shutdown."""
    lines: list[str] = []
    with httpx.Client() as client:
        with serve_app(api_settings, grace=60) as url:
            client.get(f"{url}/login?token={TOKEN}")

            def listen() -> None:
                with client.stream("GET", f"{url}/live/runs", timeout=30) as stream:
                    lines.extend(stream.iter_lines())

            listener = threading.Thread(target=listen)
            listener.start()
            time.sleep(1.0)
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
        listener.join(timeout=10)
    assert not listener.is_alive()
    assert stopped < 30  # the stream ended at once, not after the minute's grace
    assert "event: rows" in lines
