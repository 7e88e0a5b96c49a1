import httpx2 as httpx
from playwright.sync_api import expect

from tests.conftest import TOKEN, spec_data


def test_sign_in_and_watch_a_run_complete(page, site, shoot):
    page.goto(f"{site}/")
    expect(page).to_have_url(f"{site}/login?next=/")
    page.get_by_label("Token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not the token.")
    shoot("login")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()

    created = httpx.post(
        f"{site}/api/v1/runs",
        json=spec_data(name="browser run", rounds=4, placement={"hosts": 2}),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert created.status_code == 201
    row = page.get_by_role("row", name="browser run")
    expect(row).to_be_visible(timeout=10_000)  # the table polls itself: no reload
    expect(row.locator(".status")).to_have_text("completed", timeout=120_000)
    expect(row).to_contain_text("100 %")
    shoot("runs")

    row.get_by_role("link").click()
    expect(page).to_have_url(f"{site}/runs/{created.json()['id']}")
    expect(page.get_by_role("heading", name="Run #")).to_contain_text("browser run")
    expect(page.get_by_role("banner")).to_have_count(1)  # the page replaced the page, not a table
    expect(page.get_by_role("heading", name="Runs")).to_have_count(0)
    table = page.locator("table.stats")
    expect(table.locator("tbody tr")).to_have_count(4)
    expect(table.locator("thead")).to_contain_text("win")
    shoot("run")
