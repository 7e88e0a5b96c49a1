"""The dashboard in Chromium under its Content-Security-Policy: hostile text on every page runs
nothing, no page breaks the policy or reaches beyond the site, the API docs work offline, and
"sign out everywhere" signs other browsers out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx2 as httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import API, TOKEN, sign_in_page, spec_data

# Script that would run if any page rendered text as markup.
HOSTILE = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>'><svg onload=alert(3)>"


@dataclass
class Watch:
    """What a page did that it must not: dialogs opened, policy violations and script errors
    reported, requests beyond the site (aborted)."""

    dialogs: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert (self.dialogs, self.violations, self.outside) == ([], [], [])


@pytest.fixture
def watch(page: Page, site: str) -> Watch:
    seen = Watch()

    def dismiss(dialog) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    def only_the_site(route) -> None:
        if route.request.url.startswith(site):
            route.continue_()
        else:
            seen.outside.append(route.request.url)
            route.abort()

    page.on("dialog", dismiss)
    page.on("pageerror", lambda error: seen.violations.append(f"script error: {error}"))
    page.on(
        "console",
        lambda m: (
            seen.violations.append(f"{page.url}: {m.text[:90]} {m.location}")
            if "Content Security Policy" in m.text
            else None
        ),
    )
    page.context.route("**/*", only_the_site)
    return seen


def _hostile_run(site: str, **changes) -> dict:
    spec = spec_data(
        name=f"run {HOSTILE}",
        rounds=3,
        **{
            "population.total": 200,
            "population.attributes": {f"mood {HOSTILE}": {f"calm {HOSTILE}": 50, "tense": 50}},
            "population.background": f"{{name}} says {HOSTILE}",
        },
        **changes,
    )
    response = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def test_hostile_text_runs_nothing_and_no_page_breaks_the_policy(page, site, watch):
    """Every page of the dashboard, live parts included, with hostile text in the run's name,
    attributes, backgrounds, the feed, the interview, a survey and an experiment."""
    page.goto(f"{site}/login")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    sign_in_page(page, site)
    run = _hostile_run(site)
    page.goto(f"{site}/runs/{run['id']}")  # while it runs: the live feed and chart follow it
    expect(page.locator("#run-live .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("canvas").first).to_be_visible()
    other = httpx.post(f"{site}/api/v1/runs", json=spec_data(name=HOSTILE), headers=API, timeout=30).json()
    page.goto(f"{site}/")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_text(HOSTILE).first).to_be_visible()

    page.goto(f"{site}/runs/new")
    page.get_by_label("Name", exact=True).fill(HOSTILE)
    page.get_by_label("Agents", exact=True).fill("300")
    expect(page.locator("#preview")).to_contain_text("300 agents:")

    page.goto(f"{site}/runs/{run['id']}/agents")
    expect(page.locator("#agents-table")).to_contain_text("of 200 agents")
    page.goto(f"{site}/runs/{run['id']}/agents/0")
    expect(page.locator(".background")).to_contain_text(HOSTILE)
    question = page.get_by_placeholder("Why did you choose that number?")
    question.fill(HOSTILE)
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#transcript .q")).to_have_text(HOSTILE)
    expect(question).to_have_value("")  # the form empties itself (static/forms.js, no inline code)

    # A survey: its name, questions and options, and the groups it is broken down by.
    questions = [
        {"text": HOSTILE, "type": "number", "min": 0, "max": 100},
        {"text": HOSTILE, "type": "choice", "options": [HOSTILE, "calm"]},
    ]
    survey = {"name": HOSTILE[:100], "questions": questions}
    asked = httpx.post(f"{site}/api/v1/runs/{run['id']}/surveys", json=survey, headers=API, timeout=30)
    assert asked.status_code == 202, asked.text
    page.goto(f"{site}/runs/{run['id']}/surveys/{asked.json()['id']}?by={quote(f'mood {HOSTILE}')}")
    expect(page.locator(".survey-status strong")).to_have_text("completed")
    expect(page.locator("canvas[data-chart=survey]")).to_have_count(2)
    page.goto(f"{site}/runs/{run['id']}/surveys/new")
    expect(page.locator("ul.surveys")).to_contain_text(HOSTILE[:100])

    # An experiment: its name, and a factor's values in its grid, charts and effects; the new
    # experiment's problems; runs compared.
    base = spec_data(rounds=2, placement={"hosts": 1}, **{"population.total": 200})
    vary = {"population.background": [f"{{name}} says {HOSTILE}", "{name} plays"]}
    data = {"name": f"experiment {HOSTILE}", "base": base, "vary": vary}
    made = httpx.post(f"{site}/api/v1/experiments", json=data, headers=API, timeout=30)
    assert made.status_code == 201, made.text
    page.goto(f"{site}/experiments/{made.json()['id']}")  # while it runs: the page follows it
    expect(page.locator("#experiment-live > p .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("canvas[data-chart=final]")).to_have_count(2)
    expect(page.locator("table.cells")).to_contain_text(HOSTILE)
    page.goto(f"{site}/experiments")
    expect(page.get_by_text(f"experiment {HOSTILE}")).to_be_visible()
    page.goto(f"{site}/experiments/new")
    page.get_by_label("values of factor 1").fill(f"2/3, {json.dumps(HOSTILE)}")
    expect(page.locator("#err-factors-0")).to_contain_text(HOSTILE)
    page.get_by_text("Or paste an experiment spec").click()
    page.get_by_label("Experiment spec").fill(json.dumps({"name": HOSTILE, "base": {HOSTILE: 1}}))
    expect(page.locator("#err-pasted")).to_contain_text(HOSTILE)
    page.goto(f"{site}/runs/compare?ids={run['id']}&ids={other['id']}")
    expect(page.locator("ul.compared")).to_contain_text(HOSTILE)

    page.goto(f"{site}/cluster")
    expect(page.get_by_role("heading", name="Cluster")).to_be_visible()
    page.wait_for_timeout(1500)  # a live update or two
    watch.assert_clean()
    # And were markup ever to slip through unescaped, the policy would not run its script.
    injected = """() => {
        const script = document.createElement("script");
        script.textContent = "window.injected = true";
        document.body.append(script);
        return window.injected === true;
    }"""
    assert page.evaluate(injected) is False


def test_the_api_docs_work_offline_and_try_the_api(page, site, watch):
    sign_in_page(page, site)
    page.goto(f"{site}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Myriad")
    page.locator("button.authorize").click()
    page.locator(".auth-container input").fill(TOKEN)
    page.locator(".auth-btn-wrapper button.authorize").click()
    page.locator(".auth-btn-wrapper button.btn-done").click()
    operation = page.locator("#operations-runs-runs-list_runs")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator(".execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")

    page.goto(f"{site}/redoc")
    expect(page.locator("h1").first).to_contain_text("Myriad")
    expect(page.get_by_text("/api/v1/runs").first).to_be_attached()
    # ReDoc shows its maker's logo from their CDN, with no option to leave it out: the policy
    # refuses it (it would not load offline anyway) and ReDoc hides the image.
    logo = [v for v in watch.violations if "https://cdn.redoc.ly/redoc/logo-mini.svg" in v]
    watch.violations = [v for v in watch.violations if v not in logo]
    watch.assert_clean()


def test_signing_out_everywhere_signs_out_other_browsers(page, site, browser):
    other = browser.new_page()
    try:
        sign_in_page(other, site)
        sign_in_page(page, site)
        page.once("dialog", lambda dialog: dialog.accept())  # "Sign out every browser …?"
        page.get_by_role("button", name="Sign out everywhere").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        other.goto(f"{site}/runs/new")
        expect(other).to_have_url(re.compile(r"/login\?next=/runs/new$"))
    finally:
        other.close()
