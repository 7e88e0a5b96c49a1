"""A survey in a real browser: from a run's page, put questions to its language-model agents and
watch the survey's page draw a chart per question as the answers arrive."""

import httpx2 as httpx
from playwright.sync_api import expect

from tests.conftest import API, sign_in_page, spec_data, stub_model
from tests.waiting import wait_for

# Each chart's bars, read from Chart.js (a function: the CSP refuses eval).
CHARTS = """() => [...document.querySelectorAll("canvas[data-chart=survey]")].map((canvas) => {
  const chart = Chart.getChart(canvas);
  return chart ? { labels: chart.data.labels, counts: chart.data.datasets.map((set) => set.data) } : null;
})"""


def test_a_survey_from_the_run_page_draws_its_charts(page, site, llm_stub, shoot):
    kinds = [{"kind": "llm_guess", "share": 100, "params": {"model": "stub", "turn_timeout": 5}}]
    spec = spec_data(
        name="llm agents to survey",
        rounds=1,
        llm={"models": {"stub": stub_model(llm_stub.url)}},
        **{"population.total": 300, "population.kinds": kinds},
    )
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API, timeout=30).json()
    wait_for(
        lambda: httpx.get(f"{site}/api/v1/runs/{run['id']}", headers=API).json()["status"] == "completed",
        f"run {run['id']} to be completed",
        timeout=120,
    )
    sign_in_page(page, site)
    page.goto(f"{site}/runs/{run['id']}")
    page.get_by_role("link", name="Put questions to the agents").click()
    expect(page.get_by_role("heading", name="New survey")).to_be_visible()
    first, second = page.locator("fieldset.question").nth(0), page.locator("fieldset.question").nth(1)
    first.get_by_label("Question", exact=True).fill("How much do you trust the other players, from 0 to 10?")
    first.get_by_label("Answered with").select_option("number")
    first.get_by_label("A number from").fill("0")
    first.get_by_label("to", exact=True).fill("10")
    second.get_by_label("Question", exact=True).fill("Will the mean fall next round?")
    second.get_by_label("Answered with").select_option("choice")
    second.get_by_label("Options, one a line").fill("Yes\nNo\nNot sure")
    # One more slot, and what was typed stays.
    page.get_by_role("button", name="Add a question").click()
    expect(page.locator("fieldset.question")).to_have_count(4)
    expect(second.get_by_label("Options, one a line")).to_have_value("Yes\nNo\nNot sure")
    shoot("survey-new")
    page.get_by_role("button", name="Ask the agents").click()

    expect(page.get_by_role("heading", name="Survey #1")).to_be_visible()
    expect(page.locator(".survey-status strong")).to_have_text("completed", timeout=60_000)
    expect(page.locator(".survey-status")).to_contain_text("600 of 600 answers")
    charts = wait_for(lambda: (c := page.evaluate(CHARTS)) and all(c) and c, "both charts to be drawn")
    number, choice = charts
    assert number["labels"] == [str(i) for i in range(11)]
    assert choice["labels"] == ["Yes", "No", "Not sure"]
    assert sum(number["counts"][0]) == 300
    assert sum(choice["counts"][0]) == 300
    shoot("survey")

    # Broken down by an attribute: one set of bars per category, drawn again.
    page.get_by_label("Break down by").select_option("gender")
    expect(page).to_have_url(f"{site}/runs/{run['id']}/surveys/1?by=gender")

    def per_gender() -> list | None:
        charts = page.evaluate(CHARTS)
        return charts if all(charts) and len(charts[0]["counts"]) == 2 else None

    two = wait_for(per_gender, "a set of bars per gender")
    assert [sum(counts) for counts in two[0]["counts"]] == [150, 150]
    shoot("survey-by-gender")
