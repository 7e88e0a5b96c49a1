"""Error answers in a real browser: htmx swaps no 4xx/5xx by itself, so without help a click on a
dashboard link to a page that answers an error changes nothing at all (issue 13, point 2)."""

import re

import httpx2 as httpx
from playwright.sync_api import expect

from tests.conftest import API, spec_data
from tests.conftest import sign_in_page as sign_in


def test_a_link_to_a_run_deleted_meanwhile_shows_the_error_page(page, site, shoot):
    run = httpx.post(f"{site}/api/v1/runs", json=spec_data(name="soon gone", rounds=2), headers=API).json()
    sign_in(page, site)
    page.goto(f"{site}/runs/{run['id']}")
    expect(page.locator("#run-live .status")).to_have_text("completed", timeout=120_000)
    assert httpx.delete(f"{site}/api/v1/runs/{run['id']}", headers=API).status_code == 204
    sentence = f"run {run['id']} not found"

    # A request aimed at part of the page (the chart's round) shows the error line beside the
    # form that asked, and leaves the chart where it was.
    page.get_by_label("round", exact=True).fill("1")
    page.get_by_label("round", exact=True).dispatch_event("change")
    line = page.locator("#run-chart form + p.error[role=alert]")
    expect(line).to_contain_text(sentence)
    expect(page.locator("#run-chart canvas").first).to_be_visible()

    # A boosted link: the error page takes the page's place, at the link's address, as a full
    # load would show it, with its way back.
    page.get_by_role("link", name="agents", exact=True).click()
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator(".error-page .detail")).to_have_text(f"{sentence}.")
    expect(page).to_have_url(re.compile(rf"/runs/{run['id']}/agents$"))
    expect(page).to_have_title(re.compile("^Not found"))
    shoot("error-after-a-click")
    page.get_by_role("link", name="All runs").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
