"""An experiment in a real browser: made from the new-experiment form (what it makes, and a bad
factor refused beside its row, as the form is filled in), its page fills its grid live (its
stream) as the runs go, draws the comparison of its cells and their final answers, and gives its
results table."""

import csv

import httpx2 as httpx
from playwright.sync_api import expect

from tests.conftest import API, sign_in_page, spec_data
from tests.waiting import wait_for

# What the charts show, read from Chart.js (a function: the CSP refuses eval).
CHARTS = """() => {
  const comparison = Chart.getChart(document.querySelector("canvas[data-chart=comparison]"));
  const finals = [...document.querySelectorAll("canvas[data-chart=final]")].map((c) => Chart.getChart(c));
  return {
    lines: comparison ? comparison.data.datasets.filter((set) => set.label).map((set) => set.label) : [],
    bands: comparison ? comparison.data.datasets.filter((set) => set.fill !== false).length : 0,
    rounds: comparison ? comparison.data.labels : [],
    finals: finals.map((chart) => chart ? chart.data.datasets[0].data.reduce((a, b) => a + b, 0) : null),
  };
}"""


def test_an_experiment_from_the_form_fills_its_grid_and_draws_the_comparison(page, site, shoot, tmp_path):
    sign_in_page(page, site)
    page.get_by_role("navigation").get_by_role("link", name="Experiments").click()
    page.get_by_role("heading", name="Experiments").get_by_role("link", name="New experiment").click()
    plan = page.locator("#experiment-plan")
    expect(plan).to_contain_text("This makes 4 runs, 4,000 agents in all.")

    values = page.get_by_label("values of factor 1")
    expect(values).to_have_value("2/3, 1/2")
    values.fill("2/3, x")
    beside = page.locator("tr", has=values).locator(".field-error")
    expect(beside).to_have_text("x: Input is not a valid fraction")
    expect(values).to_have_attribute("aria-invalid", "true")
    expect(plan).to_contain_text("see the fields marked in red")
    shoot("new-experiment-error")
    values.fill("2/3, 1/2")
    page.get_by_label("Name", exact=True).fill("ratios")
    page.get_by_label("Agents", exact=True).fill("500")
    page.get_by_label("Rounds", exact=True).fill("4")
    page.get_by_label("Runs at a time").fill("1")  # one after another: the grid fills run by run
    expect(plan).to_contain_text("This makes 4 runs, 2,000 agents in all.")
    expect(values).not_to_have_attribute("aria-invalid", "true")
    expect(beside).to_be_empty()
    page.get_by_role("button", name="Add factor").click()
    expect(page.get_by_label("path of factor 2")).to_have_value("")
    page.get_by_role("button", name="Queue its runs").click()

    expect(page.get_by_role("heading", name="Experiment #1")).to_be_visible()
    page.evaluate("() => { window.notReloaded = true; }")
    # The grid fills as the runs go, sent by the page's stream: a run has ended while others wait.
    page.wait_for_function(
        """() => document.querySelectorAll("ul.replicates .status.completed").length >= 1
            && document.querySelectorAll("ul.replicates .status.queued").length >= 1""",
        timeout=120_000,
    )
    shoot("experiment-filling")
    expect(page.locator("#experiment-live > p .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("ul.replicates .status.completed")).to_have_count(4)
    assert page.evaluate("() => window.notReloaded") is True
    charts = wait_for(lambda: (c := page.evaluate(CHARTS))["rounds"] == [1, 2, 3, 4] and c, "the comparison")
    assert charts["lines"] == ["ratio=2/3", "ratio=2/3: target", "ratio=1/2", "ratio=1/2: target"]
    assert charts["bands"] == 2
    assert charts["finals"] == [1000, 1000]  # 2 runs of 500 agents each
    shoot("experiment")

    with page.expect_download() as download:
        page.get_by_role("link", name="csv").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    with saved.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 4
    assert {r["scenario.params.ratio"] for r in rows} == {"2/3", "1/2"}

    # Two of its runs, chosen on the runs list, side by side.
    page.get_by_role("navigation").get_by_role("link", name="Runs").click()
    page.get_by_label("compare run #1").check()
    page.get_by_label("compare run #3").check()
    # A new run sends the rows again: the boxes stay ticked.
    httpx.post(f"{site}/api/v1/runs", json=spec_data(name="another", rounds=1), headers=API, timeout=30)
    expect(page.get_by_label("compare run #5")).to_be_visible()
    expect(page.get_by_label("compare run #1")).to_be_checked()
    expect(page.get_by_label("compare run #3")).to_be_checked()
    page.get_by_role("button", name="Compare selected").click()
    expect(page).to_have_url(f"{site}/runs/compare?ids=3&ids=1")  # as listed, newest first
    compared = wait_for(lambda: (c := page.evaluate(CHARTS))["lines"] and c, "the runs compared")
    assert compared["lines"][0::2] == ["run 1: ratios [ratio=2/3] #1", "run 3: ratios [ratio=1/2] #1"]
    assert compared["bands"] == 2  # drawn, empty: one run has no band
    shoot("runs-compared")

    # A run's page makes an experiment of its run.
    page.goto(f"{site}/runs/1")
    page.get_by_role("link", name="Make an experiment of this run").click()
    expect(page.get_by_label("Agents", exact=True)).to_have_value("500")
    expect(page.locator("#experiment-plan")).to_contain_text("This makes 4 runs, 2,000 agents in all.")

    # On a phone, nothing is wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for address in ("/experiments", "/experiments/1", "/experiments/new", "/runs/compare?ids=1&ids=3"):
        page.goto(f"{site}{address}")
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"{address} is {widths[0]} px wide on a {widths[1]} px screen"
    shoot("experiment-phone")
