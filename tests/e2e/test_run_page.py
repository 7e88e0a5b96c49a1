"""A run's page in a real browser while its run goes: the progress bar, the statistics table and
the chart show the same round at every look, though the worker steps rounds faster than the
database records them (it is the recorded round they show)."""

import time

import httpx2 as httpx
from playwright.sync_api import expect

from tests.conftest import API, spec_data
from tests.conftest import sign_in_page as sign_in
from tests.waiting import wait_for

# What each part of the page shows, read in one go (a function: the CSP refuses eval).
LOOK = """() => {
  const number = (text) => { const m = text && text.match(/(\\d+)/); return m ? Number(m[1]) : null; };
  const rows = document.querySelectorAll("#run-live table.stats tbody tr");
  const histogram = document.querySelector("#run-chart canvas[data-chart=histogram]");
  const series = document.querySelector("#run-chart canvas[data-chart=series]");
  const drawn = histogram && Chart.getChart(histogram);
  const over = series && Chart.getChart(series);
  const data = document.querySelector("#run-chart script.chart-data");
  return {
    status: document.querySelector("#run-live .status").textContent,
    computing: number(document.querySelector("#run-live .computing")?.textContent),
    parts: {
      bar: number(document.querySelector("#run-live .round").textContent),
      progress: document.querySelector("#run-live progress").value,
      table: rows.length ? number(rows[rows.length - 1].cells[0].textContent) : null,
      caption: number(document.querySelector("#run-chart figcaption")?.textContent),
      chart: data ? JSON.parse(data.textContent).round : null,
      histogram: drawn ? number(drawn.data.datasets[0].label) : null,
      series: over ? over.data.labels.at(-1) : null,
    },
  };
}"""


def test_progress_table_and_chart_show_the_same_round_while_a_run_goes(page, site, shoot):
    # 40,000 agents whose every action is recorded, a tenth of them waiting 0.3 s a round: the
    # rounds go by a few a second, and the database lags them.
    kinds = [
        {"kind": "level_k", "share": 50, "params": {"k": 1}},
        {"kind": "adaptive", "share": 40},
        {"kind": "probe", "share": 10, "params": {"delay": 0.3}},
    ]
    spec = spec_data(
        name="one round at a time",
        rounds=20,
        placement={"hosts": 2},
        **{"population.total": 40_000, "population.kinds": kinds},
    )
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API, timeout=30).json()
    sign_in(page, site)
    page.goto(f"{site}/runs/{run['id']}")
    looks, shot = [], False
    while True:
        look = page.evaluate(LOOK)
        looks.append(look)
        if look["status"] in ("completed", "failed", "stopped"):
            break
        if not shot and look["computing"] and look["parts"]["bar"] >= 3:
            shoot("run-mid-way")
            shot = True
        assert len(looks) < 2_000, "the run did not finish in time"
        page.wait_for_timeout(100)
    assert look["status"] == "completed"

    for look in looks:
        shown = {part: round for part, round in look["parts"].items() if round is not None}
        if shown["bar"] == 0:
            assert set(shown.values()) == {0}, look  # nothing recorded yet: no row, no chart
        else:
            assert set(shown.values()) == {shown["bar"]}, look
        if look["computing"] is not None:
            assert look["computing"] > shown["bar"], look
    during = {look["parts"]["bar"] for look in looks if look["status"] == "running"}
    assert len(during - {0}) >= 3, during  # it was looked at while it went, round after round
    assert any(look["computing"] for look in looks)
    expect(page.locator("#run-live .percent")).to_have_text("100 %")
    expect(page.locator("#run-live .computing")).to_have_count(0)
    shoot("run-finished")


def test_a_chosen_round_stays_while_the_run_goes_on(page, site):
    probes = [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]  # 0.3 s a round
    spec = spec_data(
        name="a chosen round", rounds=200, placement={"hosts": 2}, **{"population.kinds": probes}
    )
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API, timeout=30).json()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        sign_in(page, site)
        page.goto(f"{site}/runs/{run['id']}")
        caption = page.locator("#run-chart figcaption").first
        newer = "n => Number(document.querySelector('#run-live .round').textContent) >= n"
        page.wait_for_function(newer, arg=2, timeout=60_000)  # round 1 is no longer the newest
        # The chosen round's answer comes late, after live updates of newer rounds (as on a busy
        # server): the choice must still win.
        page.route("**/chart?round=*", lambda route: (time.sleep(1.5), route.continue_()))
        page.get_by_label("round", exact=True).fill("1")
        page.get_by_label("round", exact=True).dispatch_event("change")
        expect(caption).to_contain_text("Round 1:")
        chosen_at = int(page.locator("#run-live .round").inner_text())
        page.wait_for_function(newer, arg=chosen_at + 4, timeout=60_000)  # the page followed the run ...
        expect(caption).to_contain_text("Round 1:")  # ... and the chart kept the round chosen
        page.get_by_role("link", name="follow the newest").click()
        expect(caption).not_to_contain_text("Round 1:")
        assert errors == []
    finally:
        httpx.post(f"{site}/api/v1/runs/{run['id']}/stop", headers=API, timeout=30)


def test_inject_counts_the_agents_as_the_filter_is_typed_and_says_whom_it_reached(page, site, shoot):
    probes = [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]
    spec = spec_data(name="an injection", rounds=200, placement={"hosts": 2}, **{"population.kinds": probes})
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API, timeout=30).json()
    try:
        sign_in(page, site)
        page.goto(f"{site}/runs/{run['id']}")
        agents = f"{site}/api/v1/runs/{run['id']}/agents"
        stored = lambda: httpx.get(agents, params={"limit": 1}, headers=API, timeout=30).json()["count"]  # noqa: E731
        wait_for(lambda: stored() == 1000, "the run's agents to be dealt out and stored")
        page.reload()  # now they can be counted
        reach = page.locator("#inject-reach")
        expect(reach).to_have_text("Empty: every agent (all 1,000).")
        where = page.get_by_label("To agents with")
        where.press_sequentially("planet=mars", delay=20)
        expect(reach.locator(".field-error")).to_contain_text("the population has no attribute 'planet'")
        shoot("inject-filter-error")
        where.fill("")
        where.press_sequentially("gender=female", delay=20)
        expect(reach).to_have_text("Matches 500 of 1,000 agents.")
        page.get_by_label("Message").fill("Most players answer low.")
        shoot("inject")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#inject .notice")).to_have_text(
            "Sent to 500 agents matching gender=female in the next round."
        )
        delivered = page.locator("#feed li.delivered")
        expect(delivered).to_contain_text("“Most players answer low.” reached 500 agents with gender=female")
        shoot("inject-delivered")
    finally:
        httpx.post(f"{site}/api/v1/runs/{run['id']}/stop", headers=API, timeout=30)


def test_errors_are_pages_with_a_way_back(page, site, shoot):
    sign_in(page, site)
    page.goto(f"{site}/runs/999")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator(".detail")).to_have_text("run 999 not found.")
    shoot("error-404")
    response = page.goto(f"{site}/runs/1/chart?round=0")
    assert response.status == 422
    expect(page.get_by_role("heading", name="Cannot do that")).to_be_visible()
    expect(page.locator(".problems")).to_contain_text(
        "query.round: Input should be greater than or equal to 1"
    )
    shoot("error-422")
    page.get_by_role("link", name="All runs").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
