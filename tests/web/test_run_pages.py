"""A run's pages on a run the embedded service drove itself: the chart, the event feed, the live
stream, exports, the agents table, one agent with its messages and interview, and the cluster."""

import asyncio
import functools
import json
import re
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from agents.scenarios import RoundResult
from backend import services
from backend.app import create_app
from backend.live.channel import LiveChannel
from backend.store import records
from backend.store.commands import pending_commands
from backend.store.db import create_engine, session_factory
from backend.store.models import Run
from tests.conftest import API, SOCIAL, csrf_of, driving_app, driving_settings, sign_in, spec_data
from tests.waiting import wait_for_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory, redis_url, ray_cluster):
    """(signed-in client, run) for a 1,000-agent, 3-round run with a message to the women."""
    settings = driving_settings(f"sqlite:///{tmp_path_factory.mktemp('pages') / 'site.db'}", redis_url)
    with TestClient(driving_app(settings), follow_redirects=False) as client:
        sign_in(client)
        run = client.post("/api/v1/runs", json=spec_data(placement={"hosts": 2}), headers=API).json()
        inject = {"content": "Most players answer low.", "where": {"gender": "female"}}
        assert client.post(f"/api/v1/runs/{run['id']}/inject", json=inject, headers=API).status_code == 202
        wait_for_run(client, run["id"], "completed", headers=API)
        yield client, run


def chart_of(html: str) -> dict:
    found = re.search(r'<script type="application/json" class="chart-data">(.*?)</script>', html, re.S)
    return json.loads(found[1])


def test_run_page_draws_the_papers_figure(finished):
    client, run = finished
    page = client.get(f"/runs/{run['id']}")
    rounds = client.get(f"/api/v1/runs/{run['id']}/rounds", headers=API).json()["data"]
    chart = chart_of(page.text)
    assert chart["round"] == 3
    assert chart["histogram"] == rounds[-1]["details"]["histogram"]
    assert sum(chart["histogram"]) == 1000
    assert (chart["mean"], chart["target"]) == (rounds[-1]["stats"]["avg"], rounds[-1]["stats"]["win"])
    assert chart["rounds"] == [1, 2, 3]
    assert chart["means"] == [r["stats"]["avg"] for r in rounds]
    assert "sse-connect" not in page.text  # a finished run has nothing to follow
    first = client.get(f"/runs/{run['id']}/chart", params={"round": 1})
    assert chart_of(first.text)["histogram"] == rounds[0]["details"]["histogram"]
    assert "data-following" not in first.text  # a chosen round stays put
    assert "data-following" in client.get(f"/runs/{run['id']}/chart").text


def test_a_round_without_a_readable_answer_is_drawn_empty(finished):
    client, _ = finished
    late = [{"kind": "probe", "share": 100, "params": {"delay": 30}}]  # every agent misses its turn
    spec = spec_data(
        rounds=1, placement={"agent_timeout": 0.2}, **{"population.total": 10, "population.kinds": late}
    )
    run = client.post("/api/v1/runs", json=spec, headers=API).json()
    wait_for_run(client, run["id"], "completed", headers=API)
    page = client.get(f"/runs/{run['id']}")
    assert page.status_code == 200
    chart = chart_of(page.text)
    assert (chart["mean"], chart["target"], sum(chart["histogram"])) == (None, None, 0)
    assert "Round 1: no readable answer" in " ".join(page.text.split())


def test_a_social_run_page_draws_the_stances_and_the_spread(finished):
    client, _ = finished
    run = client.post("/api/v1/runs", json=spec_data(**SOCIAL | {"rounds": 3}), headers=API).json()
    wait_for_run(client, run["id"], "completed", headers=API)
    page = client.get(f"/runs/{run['id']}")
    rounds = client.get(f"/api/v1/runs/{run['id']}/rounds", headers=API).json()["data"]
    chart = chart_of(page.text)
    assert chart["kind"] == "spread"
    assert chart["round"] == 3
    assert chart["stances"] == rounds[-1]["details"]["stances"]
    assert sum(chart["stances"]) == rounds[-1]["stats"]["adopted"] > 0  # every adopter holds a stance
    assert chart["seen"] == [r["stats"]["seen"] for r in rounds]
    assert chart["posts"] == [r["stats"]["posts"] + r["stats"]["reposts"] for r in rounds]
    assert 'data-chart="stances"' in page.text
    assert 'data-chart="spread"' in page.text
    assert "by kind of agent" not in page.text  # that breakdown is of numeric answers
    first = client.get(f"/runs/{run['id']}/chart", params={"round": 1})
    assert chart_of(first.text)["stances"] == rounds[0]["details"]["stances"]


def test_run_page_lists_events_and_exports(finished):
    client, run = finished
    page = client.get(f"/runs/{run['id']}").text
    feed = page[page.index('id="feed"') :]
    for kind in ("completed", "round", "injected", "started"):
        assert f'class="event {kind}"' in feed
    assert "“Most players answer low.” to gender=female" in feed
    download = client.get(f"/runs/{run['id']}/export", params={"table": "rounds", "format": "csv"})
    assert download.status_code == 200
    assert download.text.splitlines()[0].startswith("round,win,cnt,avg")
    assert len(download.text.splitlines()) == 4


def test_the_feed_is_the_stored_history_after_the_live_layer_is_gone(finished, tmp_path):
    """A restarted embedded service comes back with an empty live layer: the run page's feed
    still shows every event, read from the database."""
    client, run = finished
    settings = client.app.state.runtime.settings
    fresh = settings.model_copy(update={"redis_url": settings.redis_url.rsplit("/", 1)[0] + "/14"})
    with TestClient(create_app(fresh), follow_redirects=False) as restarted:
        asyncio.run(_empty(fresh.redis_url))
        sign_in(restarted)
        page = restarted.get(f"/runs/{run['id']}").text
    feed = page[page.index('id="feed"') :]
    kinds = re.findall(r'class="event ([\w ]+)"', feed)
    assert kinds[0] == "completed"
    assert kinds[-2:] == ["started", "queued"]
    assert kinds.count("round") == 3
    assert "“Most players answer low.” to gender=female" in feed


async def _empty(redis_url: str) -> None:
    live = LiveChannel(redis_url)
    try:
        await live.redis.flushdb()
    finally:
        await live.close()


def test_live_stream_of_a_finished_run_sends_its_parts_then_done(finished):
    client, run = finished
    with client.stream("GET", f"/live/runs/{run['id']}") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = re.findall(r"^event: (\w+)$", stream.read().decode(), re.M)
    assert events == ["feed", "progress", "done"]  # the progress carries the chart of its round


def test_live_stream_follows_a_run_as_it_changes(member):
    run = member.post("/api/v1/runs", json=spec_data(), headers=API).json()
    page = member.get(f"/runs/{run['id']}").text
    after = re.search(r"\?after=([0-9-]+)", page)[1]
    csrf = csrf_of(page)
    stop = {"headers": {"X-CSRF-Token": csrf}}
    stopper = threading.Timer(1.5, member.post, [f"/runs/{run['id']}/stop"], stop)
    stopper.start()
    with member.stream("GET", f"/live/runs/{run['id']}", params={"after": after}) as stream:
        text = stream.read().decode()
    stopper.join()
    events = re.findall(r"^event: (\w+)$", text, re.M)
    assert events[:1] == ["progress"]  # as the page already shows it, with its chart
    assert events[1:] == ["feed", "progress", "done"]  # then the stop, as it happens
    assert "<strong>stopped</strong>" in text
    assert 'class="status stopped"' in text


def test_agents_page_filters_and_pages_in_the_database(finished):
    client, run = finished
    url = f"/runs/{run['id']}/agents"
    page = client.get(url, params={"limit": 25})
    assert page.template.name == "agents.html"
    assert "1–25 of 1,000 agents" in page.text
    assert page.text.count("<tr><td>") == 25
    assert f'href="http://testserver{url}?sort=id&amp;limit=25&amp;offset=25"' in page.text
    filtered = client.get(
        url,
        params={"kind": "level_k(k=2)", "attribute": ["gender=female", ""], "offset": 50},
        headers={"HX-Request": "true", "HX-Target": "agents-table"},
    )
    assert filtered.template.name == "agents_table.html"
    api = client.get(
        f"/api/v1/runs/{run['id']}/agents",
        params={"kind": "level_k(k=2)", "attribute": "gender=female", "offset": 50},
        headers=API,
    ).json()
    assert f"51–{min(api['count'], 100)} of {api['count']} agents" in filtered.text
    shown = [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", filtered.text)]
    assert shown == [a["agent_id"] for a in api["data"]]
    assert 'rel="prev"' in filtered.text
    named = client.get(url, params={"name": api["data"][0]["name"]})
    assert api["data"][0]["name"] in named.text
    assert "No agent matches." in client.get(url, params={"name": "Zzz"}).text
    for typed in ("", "  ", "two", "99999999999999999999"):
        page = client.get(url, params={"host": typed, "limit": 10})
        assert page.status_code == 200
        assert "1–10 of 1,000 agents" in page.text  # no host filter
        assert ("Host is a host" in page.text) == bool(typed.strip())
    assert "1–10 of 500 agents" in client.get(url, params={"host": "1", "limit": 10}).text


def test_agent_page_shows_answers_messages_and_answers_an_interview(finished):
    client, run = finished
    api = f"/api/v1/runs/{run['id']}/agents"
    women = client.get(api, params={"attribute": "gender=female"}, headers=API).json()["data"]
    agent = client.get(f"{api}/{women[0]['agent_id']}", headers=API).json()
    page = client.get(f"/runs/{run['id']}/agents/{agent['agent_id']}")
    assert page.status_code == 200
    assert agent["background"] in page.text
    answers = re.findall(r"<tr><td>(\d+)</td>\s*<td>([^<]*)</td>", page.text)
    assert [int(r) for r, _ in answers] == [1, 2, 3]
    assert [float(v) for _, v in answers] == [a["value"] for a in agent["actions"]]
    assert "round 1</span> Most players answer low." in page.text
    men = client.get(api, params={"attribute": "gender=male"}, headers=API).json()["data"]
    other = client.get(f"/runs/{run['id']}/agents/{men[0]['agent_id']}")
    assert "No message has reached this agent." in other.text
    csrf = csrf_of(page.text)
    url = f"/runs/{run['id']}/agents/{agent['agent_id']}/interview"
    assert client.post(url, data={"question": "Why?"}).status_code == 403
    reply = client.post(url, data={"question": "Why that number?", "csrf": csrf})
    assert reply.template.name == "interview.html"
    assert '<p class="q">Why that number?</p>' in reply.text
    assert f"I am {agent['name']}" in reply.text
    # The interview is on the run's record: its feed, and its events.
    feed = client.get(f"/runs/{run['id']}").text
    feed = feed[feed.index('id="feed"') :]
    who = agent["agent_id"]
    link = f'<a href="http://testserver/runs/{run["id"]}/agents/{who}">agent {who}</a>'
    assert f"{link} was asked “Why that number?”: “You asked" in feed
    events = client.get(f"/api/v1/runs/{run['id']}/events", headers=API).json()["data"]
    assert (events[0]["kind"], events[0]["payload"]["usage"]) == ("interview", {})  # no model, no cost
    assert client.get(f"/runs/{run['id']}/agents/5000").status_code == 404


def test_cluster_page_shows_the_nodes_the_worker_reports(finished):
    client, _ = finished
    page = client.get("/cluster")
    assert page.status_code == 200
    nodes = client.get("/api/v1/cluster", headers=API).json()["nodes"]
    assert nodes
    for node in nodes:
        assert f"Node {node['address']}" in page.text
    assert 'sse-connect="http://testserver/live/cluster"' in page.text


def test_agents_page_counts_the_matches_and_pages_to_the_last(finished):
    client, run = finished
    url = f"/runs/{run['id']}/agents"
    women = client.get(url, params={"attribute": "gender=female", "limit": 25}).text
    assert "1–25 of 500 agents" in women
    assert 'rel="next"' in women
    assert 'rel="last"' in women
    everyone = client.get(url, params={"limit": 25}).text
    assert "1–25 of 1,000 agents" in everyone  # every agent matches: the run knows how many
    assert 'rel="last"' in everyone
    few = client.get(url, params={"kind": "uniform", "limit": 25, "offset": 75}).text
    assert "76–100 of 100 agents" in few


def test_a_message_reaches_the_agents_its_filter_matches(finished):
    client, run = finished
    agents = [
        a["attributes"]
        for offset in (0, 500)
        for a in client.get(
            f"/api/v1/runs/{run['id']}/agents", params={"limit": 500, "offset": offset}, headers=API
        ).json()["data"]
    ]
    both = sum(a["gender"] == "female" and a["education"] == "school" for a in agents)
    reached = functools.partial(client.portal.call, services.reached, client.app.state.runtime, run["id"])
    assert reached({"gender": "female"}) == 500
    assert reached({"gender": "female", "education": "school"}) == both
    assert reached(None) == 1000


def test_inject_form_checks_what_it_sends(member):
    run = member.post("/api/v1/runs", json=spec_data(), headers=API).json()
    page = member.get(f"/runs/{run['id']}").text
    assert 'id="inject"' in page
    url = f"/runs/{run['id']}/inject"
    csrf = {"X-CSRF-Token": csrf_of(page)}
    assert member.post(url, data={"content": "hi"}).status_code == 403
    unclear = member.post(url, data={"content": "hi", "where": "gender"}, headers=csrf)
    assert unclear.status_code == 422
    assert "“gender” is not ATTR=VALUE" in unclear.text
    assert ">hi</textarea>" in unclear.text  # the message is kept to fix and send again
    empty = member.post(url, data={"content": "  "}, headers=csrf)
    assert "write something to deliver" in empty.text
    nobody = member.post(url, data={"content": "hi", "where": "planet=mars"}, headers=csrf)
    assert nobody.status_code == 422
    assert (
        "where.planet: the population has no attribute &#39;planet&#39; (it has: education, gender)"
        in nobody.text
    )
    nobody = member.post(url, data={"content": "hi", "where": "gender=alien"}, headers=csrf)
    assert nobody.status_code == 422
    assert "where.gender: no agent has gender=&#39;alien&#39; (its categories: female, male)" in nobody.text
    sent = member.post(url, data={"content": "hi", "where": "gender=female, education=school"}, headers=csrf)
    assert sent.status_code == 200
    # Queued: its agents are not dealt out yet, so how many match is not known yet.
    assert "Sent to the agents matching gender=female, education=school in the next round." in sent.text
    commands = asyncio.run(_commands(member, run["id"]))
    assert commands == [
        ("inject", {"content": "hi", "where": {"gender": "female", "education": "school"}, "public": False})
    ]
    member.post(f"/runs/{run['id']}/stop", headers=csrf)
    refused = member.post(url, data={"content": "hi"}, headers=csrf)
    assert refused.status_code == 422
    assert "only an unfinished run takes injections" in refused.text


def test_a_failed_run_is_resumed_from_its_page(member):
    """A failed run's page offers to resume it; resuming queues it again (its worker goes on from
    the last checkpoint) and reloads the page, so that it follows the run live once more."""
    run = member.post("/api/v1/runs", json=spec_data(), headers=API).json()  # no worker drives it
    asyncio.run(_fail(member, run["id"]))
    page = member.get(f"/runs/{run['id']}").text
    assert "Resume from the last checkpoint" in page
    assert "the scenario broke" in page
    resumed = member.post(f"/runs/{run['id']}/resume", headers={"X-CSRF-Token": csrf_of(page)})
    assert (resumed.status_code, resumed.headers.get("HX-Refresh")) == (204, "true")
    now = member.get(f"/api/v1/runs/{run['id']}", headers=API).json()
    assert (now["status"], now["error"]) == ("queued", None)


def test_a_long_runs_page_draws_a_spread_of_its_rounds_and_counts_all_their_tokens(member):
    """A run of thousands of rounds: its page, polled every second, reads the newest 50 rounds
    for the table and every k-th for the figure over the rounds, not all of them (a run of 1,300
    rounds took the page's p95 from 136 to 237 ms); its tokens are still all its rounds'."""
    models = {"m": {"endpoints": [{"url": "http://127.0.0.1:9/v1"}]}}
    run = member.post("/api/v1/runs", json=spec_data(rounds=3000, llm={"models": models}), headers=API).json()
    asyncio.run(_record_rounds(member, run["id"], 2000))
    page = member.get(f"/runs/{run['id']}").text
    chart = chart_of(page)
    assert chart["round"] == 2000
    assert chart["rounds"] == [*range(8, 2001, 8)]  # every 8th: 250 points, the newest among them
    assert chart["means"] == [float(r) for r in chart["rounds"]]  # each point its own round's
    table = page[page.index("<tbody") : page.index("</tbody>")]
    assert table.count("<tr") == 50
    assert "The newest 50 of 2,000 rounds" in page
    assert "22,000 tokens" in page  # 11 a round, all 2,000 of them
    odd = member.get(f"/runs/{run['id']}/chart", params={"round": 1999})
    assert chart_of(odd.text)["round"] == 1999  # any round can still be shown


async def _record_rounds(client, run_id: int, count: int) -> None:
    """Store `count` rounds of the run as its worker would: each's mean is its number, and each
    spent 11 tokens."""
    engine = create_engine(client.app.state.runtime.settings.database_url)
    spent = {"m": {"calls": 1, "failed": 0, "prompt_tokens": 10, "completion_tokens": 1}}
    try:
        async with session_factory(engine)() as session:
            for n in range(1, count + 1):
                stats = {"avg": float(n), "win": n * 2 / 3}
                result = RoundResult(n, stats, {"histogram": [1, 2]}, usage=spent)
                await records.save_round(session, run_id=run_id, result=result)
            await session.execute(update(Run).where(Run.id == run_id).values(status="running", round=count))
            await session.commit()
    finally:
        await engine.dispose()


async def _fail(client, run_id: int) -> None:
    """Mark the run failed, as a worker that hit a bug in round 3 would."""
    engine = create_engine(client.app.state.runtime.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            await session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status="failed", round=3, error="the scenario broke")
            )
            await session.commit()
    finally:
        await engine.dispose()


async def _commands(client, run_id: int) -> list:
    """The run's pending commands, read from its command log (an engine of this event loop's)."""
    engine = create_engine(client.app.state.runtime.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return [(c.action, c.payload) for c in await pending_commands(session, run_id=run_id)]
    finally:
        await engine.dispose()


def first_event(client, url: str) -> tuple[str, str]:
    """The first event of a stream that never ends by itself: (name, data)."""
    name, data = None, []
    with client.stream("GET", url) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
            elif not line and name:
                return name, "\n".join(data)
    raise AssertionError("the stream ended")


def test_runs_and_cluster_pages_have_streams_of_their_parts(finished):
    client, run = finished
    name, rows = first_event(client, "/live/runs")
    assert name == "rows"
    assert f"#{run['id']} test" in rows
    assert "<tbody" not in rows  # the rows alone: they go inside the table's body
    name, nodes = first_event(client, "/live/cluster")
    assert name == "nodes"
    assert nodes.count('<section class="card node">') == len(
        client.get("/api/v1/cluster", headers=API).json()["nodes"]
    )


def test_a_rounds_statistics_by_kind_of_agent(finished):
    client, run = finished
    groups = client.get(f"/api/v1/runs/{run['id']}/groups", params={"round": 2}, headers=API).json()["data"]
    shares = {
        "level_k(k=0)": 200,
        "level_k(k=1)": 300,
        "level_k(k=2)": 200,
        "adaptive(rate=0.5)": 200,
        "uniform": 100,
    }
    assert {g["kind"]: g["agents"] for g in groups} == shares
    level2 = next(g for g in groups if g["kind"] == "level_k(k=2)")
    assert level2["avg"] == level2["min"] == level2["max"] == 22  # 100/2 × (2/3)²
    assert all(g["round"] == 2 and g["cnt"] == g["agents"] and g["failed"] == 0 for g in groups)
    rounds = client.get(f"/api/v1/runs/{run['id']}/rounds", headers=API).json()["data"]
    mean = sum(g["avg"] * g["cnt"] for g in groups) / sum(g["cnt"] for g in groups)
    assert mean == pytest.approx(rounds[1]["stats"]["avg"])
    assert len(client.get(f"/api/v1/runs/{run['id']}/groups", headers=API).json()["data"]) == 15
    page = client.get(f"/runs/{run['id']}/groups", params={"round": 2})
    assert page.template.name == "run_groups.html"
    assert "level_k(k=2)" in page.text
