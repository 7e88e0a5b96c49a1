"""An experiment in a real browser: its page fills its grid as the runs go, and draws the
comparison of its cells and their final answers."""

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


def test_an_experiment_page_fills_its_grid_and_draws_the_comparison(page, site, shoot):
    base = spec_data(rounds=4, placement={"hosts": 1}, **{"population.total": 500})
    data = {
        "name": "ratios",
        "base": base,
        "vary": {"scenario.params.ratio": ["2/3", "1/2"]},
        "replicates": 2,
    }
    experiment = httpx.post(f"{site}/api/v1/experiments", json=data, headers=API, timeout=30).json()
    sign_in_page(page, site)
    page.goto(f"{site}/experiments/{experiment['id']}")
    expect(page.locator("#experiment-live > p .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("ul.replicates .status.completed")).to_have_count(4)
    charts = wait_for(lambda: (c := page.evaluate(CHARTS))["rounds"] == [1, 2, 3, 4] and c, "the comparison")
    assert charts["lines"] == ["ratio=2/3", "ratio=2/3: target", "ratio=1/2", "ratio=1/2: target"]
    assert charts["bands"] == 2
    assert charts["finals"] == [1000, 1000]
    shoot("experiment")
