"""The dashboard in a real browser, against the embedded service driving real runs on Ray."""

import re

import httpx2 as httpx
from playwright.sync_api import expect

from tests.conftest import API, SOCIAL, TOKEN, spec_data
from tests.conftest import sign_in_page as sign_in


def test_sign_in(page, site, shoot):
    page.goto(f"{site}/")
    expect(page).to_have_url(f"{site}/login?next=/")
    page.get_by_label("Token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not the token.")
    shoot("login")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()


def test_create_a_run_from_the_form_and_watch_it_finish(page, site, shoot):
    sign_in(page, site)
    page.get_by_role("link", name="New run").first.click()
    page.get_by_role("link", name="The paper's game, 1,000 agents").click()
    expect(page.get_by_label("Agents", exact=True)).to_have_value("1000")
    expect(page.locator("#preview")).to_contain_text("1,000 agents:")

    # A mistake is shown beside its field while typing, and the preview follows the fix.
    page.get_by_label("categories of attribute 1").fill("female=50, male=40")
    expect(page.locator("#err-population-attributes")).to_contain_text("add up to 90, not 100")
    expect(page.locator("#preview")).to_contain_text("The spec has problems")
    page.get_by_label("categories of attribute 1").fill("female=50, male=50")
    expect(page.locator("#err-population-attributes")).to_be_empty()
    page.get_by_label("Name", exact=True).fill("browser form run")
    page.get_by_label("Rounds", exact=True).fill("4")
    page.get_by_label("Hosts", exact=True).fill("2")
    expect(page.locator("#preview ol.profiles li")).to_have_count(5)
    shoot("new-run")

    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(rf"{site}/runs/\d+$"))
    expect(page.get_by_role("heading", name="Run #")).to_contain_text("browser form run")
    # The page follows the run over server-sent events: no reload.
    expect(page.locator("#run-live .percent")).to_have_text("100 %", timeout=120_000)
    expect(page.locator("#run-live .status")).to_have_text("completed")
    expect(page.locator("table.stats tbody tr")).to_have_count(4)
    expect(page.locator("canvas[data-chart=histogram]")).to_be_visible()
    drawn = "Chart.getChart(document.querySelector('canvas[data-chart=histogram]'))?.data.datasets[0].data"
    histogram = page.wait_for_function(drawn).json_value()
    assert len(histogram) == 101
    assert sum(histogram) == 1000
    expect(page.locator("#run-chart figcaption").first).to_contain_text("Round 4: mean")
    expect(page.locator("#feed")).to_contain_text("completed")
    shoot("run")

    page.get_by_label("round", exact=True).fill("1")
    page.get_by_label("round", exact=True).dispatch_event("change")
    expect(page.locator("#run-chart figcaption").first).to_contain_text("Round 1: mean")

    page.get_by_role("link", name="Runs", exact=True).click()
    row = page.get_by_role("row", name="browser form run")
    expect(row.locator(".status")).to_have_text("completed")
    expect(row).to_contain_text("100 %")
    shoot("runs")


def test_pause_and_resume_a_run_and_see_it_on_the_cluster(page, site, slow_run, shoot):
    sign_in(page, site)
    page.goto(f"{site}/runs/{slow_run['id']}")
    status = page.locator("#run-live .status")
    expect(status).to_have_text("running", timeout=60_000)
    page.get_by_role("button", name="Pause").click()
    expect(status).to_have_text("paused", timeout=30_000)
    paused_at = page.locator("#run-live .round").inner_text()
    page.wait_for_timeout(1_500)
    expect(page.locator("#run-live .round")).to_have_text(paused_at)  # it stays where it paused

    page.get_by_role("link", name="Cluster").click()
    node = page.locator("section.node").first
    expect(node).to_contain_text("CPUs")
    hosts = page.get_by_role("row").filter(has_text=f"#{slow_run['id']}")
    expect(hosts).to_have_count(2, timeout=15_000)
    expect(hosts.first.locator(".status")).to_have_text("paused")
    shoot("cluster")
    hosts.first.get_by_role("link", name="host 0").click()
    expect(page.get_by_role("heading", name="Agents")).to_be_visible()
    expect(page.locator("#agents-table")).to_contain_text("of 500 agents")  # host 0's half

    page.goto(f"{site}/runs/{slow_run['id']}")
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("running", timeout=30_000)
    expect(page.locator("#run-live .round")).not_to_have_text(paused_at, timeout=30_000)
    expect(page.locator("#feed")).to_contain_text("resumed")

    page.once("dialog", lambda dialog: dialog.accept())  # "Stop run #…? A stopped run cannot be resumed."
    page.get_by_role("button", name="Stop").click()
    expect(status).to_have_text("stopped", timeout=30_000)
    expect(page.locator("#inject")).to_have_count(0)  # nothing more can reach the agents
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)


def test_page_and_filter_agents_then_interview_one(page, site, shoot):
    run = httpx.post(f"{site}/api/v1/runs", json=spec_data(name="agents run", rounds=2), headers=API).json()
    sign_in(page, site)
    page.goto(f"{site}/runs/{run['id']}")
    expect(page.locator("#run-live .status")).to_have_text("completed", timeout=120_000)
    page.get_by_role("link", name="agents", exact=True).click()

    table = page.locator("#agents-table")
    expect(table).to_contain_text("1–50 of 1,000 agents")
    table.get_by_role("link", name="next").click()
    expect(table).to_contain_text("51–100 of 1,000 agents")
    expect(page).to_have_url(re.compile(r"offset=50"))
    page.locator("select[name=kind]").select_option("level_k(k=2)")
    expect(table).to_contain_text("1–50 of 200 agents")
    page.locator("select[name=attribute]").first.select_option("gender=female")
    expect(table).not_to_contain_text("of 200 agents")
    expect(table.locator(".pager")).to_contain_text(re.compile(r"1–50 of \d+ agents"))
    assert set(table.locator("tbody tr td:nth-child(3)").all_inner_texts()) == {"level_k(k=2)"}
    assert all(a.startswith("female") for a in table.locator("tbody tr td:nth-child(4)").all_inner_texts())
    name = table.locator("tbody tr a").last.inner_text()  # searched for, it comes first
    page.get_by_role("searchbox").fill(name)
    expect(table.locator(".pager")).to_contain_text(re.compile(r"1–\d of \d agents"))
    expect(table.locator("tbody tr a").first).to_have_text(name)
    shoot("agents")

    table.locator("tbody tr a").first.click()
    expect(page.get_by_role("heading", name="Profile")).to_be_visible()
    expect(page.locator("table.answers tbody tr")).to_have_count(2)
    page.get_by_placeholder("Why did you choose that number?").fill("How do you choose your number?")
    page.get_by_role("button", name="Ask").click()
    transcript = page.locator("#transcript")
    expect(transcript.locator(".q")).to_have_text("How do you choose your number?")
    expect(transcript.locator(".a")).to_contain_text("level_k(k=2) agent")
    expect(page.get_by_placeholder("Why did you choose that number?")).to_have_value("")
    shoot("agent")


def test_a_run_of_a_thousand_llm_agents(page, site, shoot, llm_stub):
    llm_stub.config.latency = 0.05
    llm_stub.config.garbage_rate = 0.05
    model = {
        "endpoints": [{"url": llm_stub.url, "concurrency": 100}],
        "price": {"prompt": 0.5, "completion": 1.5},
    }
    kinds = [
        {"kind": "llm_guess", "share": 50, "params": {"model": "stub"}},
        {"kind": "llm_guess", "share": 50, "params": {"model": "stub", "prompt": "step_by_step"}},
    ]
    spec = spec_data(
        name="llm agents",
        rounds=3,
        placement={"hosts": 2},
        llm={"models": {"stub": model}},
        **{"population.kinds": kinds},
    )
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API).json()
    sign_in(page, site)
    page.goto(f"{site}/runs/{run['id']}")
    expect(page.locator("#run-live .status")).to_have_text("completed", timeout=120_000)
    card = page.locator("section.usage")
    expect(card).to_contain_text("Language models")
    calls = int(card.locator("tbody tr td").nth(1).inner_text().replace(",", ""))
    assert calls == llm_stub.served.answered >= 3000
    expect(page.locator("table.stats").first.locator("thead")).to_contain_text("tokens")
    page.wait_for_function("() => Chart.getChart(document.querySelector('canvas[data-chart=histogram]'))")
    shoot("run-llm")
    llm_stub.config.garbage_rate = 0  # the run's unreadable answers were the point; the reply is not
    page.goto(f"{site}/runs/{run['id']}/agents/5")
    page.get_by_placeholder("Why did you choose that number?").fill("What do you expect the others to do?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#transcript .a")).to_have_text(
        "Speaking for myself: What do you expect the others to do?"
    )
    shoot("agent-llm")
    page.goto(f"{site}/runs/{run['id']}")
    expect(card.locator(".interviews")).to_contain_text(re.compile(r"Interviews: \d+ tokens"))


def test_a_social_run_shows_how_the_news_spread(page, site, shoot):
    spec = spec_data(**SOCIAL | {"name": "news spreads", "rounds": 6, "placement": {"hosts": 2}})
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API).json()
    sign_in(page, site)
    page.goto(f"{site}/runs/{run['id']}")
    expect(page.locator("#run-live .status")).to_have_text("completed", timeout=120_000)
    expect(page.get_by_role("heading", name="Spread", exact=True)).to_be_visible()
    expect(page.locator("#run-chart figcaption").first).to_contain_text("Stances after round 6: mean")
    rounds = httpx.get(f"{site}/api/v1/runs/{run['id']}/rounds", headers=API).json()["data"]
    # A function, not an expression calling one: Playwright would eval the latter, which the CSP refuses.
    drawn = (
        "name => Chart.getChart(document.querySelector(`canvas[data-chart=${name}]`))"
        "?.data.datasets.map(d => d.data)"
    )
    stances = page.wait_for_function(drawn, arg="stances").json_value()
    assert stances == [rounds[-1]["details"]["stances"]]
    seen, adopted, posts = page.wait_for_function(drawn, arg="spread").json_value()
    assert seen == [r["stats"]["seen"] for r in rounds]
    assert adopted == [r["stats"]["adopted"] for r in rounds]
    assert posts == [r["stats"]["posts"] + r["stats"]["reposts"] for r in rounds]
    shoot("run-social")
