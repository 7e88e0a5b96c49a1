"""A run's page open through a whole run, with its buttons pressed and a trip away and back through
the browser's history, keeps one of each of its parts: the live stream sends the chart out of band
with the progress, the buttons' answers do too, and htmx restores the page from its history."""

import httpx2 as httpx
from playwright.sync_api import expect

from tests.conftest import API, spec_data
from tests.conftest import sign_in_page as sign_in

# How many of each part the page has, read in one go (a function: the CSP refuses eval).
COUNT = """() => ({
  charts: document.querySelectorAll("#run-chart").length,
  answers: [...document.querySelectorAll("h2")].filter((h) => h.textContent.trim() === "Answers").length,
  live: document.querySelectorAll("#run-live").length,
  tables: document.querySelectorAll("table.stats").length,
  canvases: document.querySelectorAll("canvas[data-chart]").length,
  events: document.querySelectorAll("#feed").length,
  status: document.querySelector("#run-live .status")?.textContent,
})"""
ONE_EACH = {"charts": 1, "answers": 1, "live": 1, "tables": 1, "canvases": 2, "events": 1}


def test_a_run_page_keeps_one_chart_through_a_whole_run(page, site, shoot):
    probes = [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]  # 0.3 s a round
    spec = spec_data(name="one chart", rounds=40, placement={"hosts": 2}, **{"population.kinds": probes})
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API, timeout=30).json()
    looks: list[dict] = []

    def look() -> dict:
        seen = page.evaluate(COUNT)
        looks.append(seen)
        return seen

    def watch(ms: int) -> None:
        for _ in range(ms // 100):
            look()
            page.wait_for_timeout(100)

    try:
        sign_in(page, site)
        # Into the page by a boosted click on the runs list, as a person gets there.
        page.get_by_role("link", name=f"#{run['id']} one chart").click()
        status = page.locator("#run-live .status")
        expect(page.locator("#run-chart figcaption").first).to_contain_text("Round", timeout=60_000)
        watch(1_000)
        page.get_by_role("button", name="Pause").click()
        expect(status).to_have_text("paused", timeout=30_000)
        watch(1_500)
        page.get_by_role("button", name="Resume").click()
        expect(status).to_have_text("running", timeout=30_000)
        watch(1_500)
        # Away and back through the history: htmx restores its copy of the page, whose stream
        # then catches up.
        page.get_by_role("link", name="Runs", exact=True).click()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        page.go_back()
        expect(status).to_be_visible()
        watch(1_500)
        page.go_forward()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        page.go_back()
        expect(status).to_be_visible()
        watch(1_500)
        page.reload()
        watch(1_000)
        for _ in range(600):
            if look()["status"] != "running":
                break
            page.wait_for_timeout(100)
        expect(status).to_have_text("completed", timeout=60_000)
        watch(2_000)
        # Once more away and back, the run finished.
        page.get_by_role("link", name="Runs", exact=True).click()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        page.go_back()
        expect(status).to_have_text("completed")
        watch(1_000)
        shoot("run-page-one-chart")
    finally:
        httpx.post(f"{site}/api/v1/runs/{run['id']}/stop", headers=API, timeout=30)
    wrong = [seen for seen in looks if {k: seen[k] for k in ONE_EACH} != ONE_EACH]
    assert not wrong, f"{len(wrong)} of {len(looks)} looks: {wrong[:3]}"
