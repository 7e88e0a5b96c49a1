"""Runs of language-model agents, driven by the service, against the stand-in server."""

import asyncio
import re
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from backend.settings import Settings
from backend.store import commands
from backend.store.db import create_engine, session_factory
from tests.conftest import API, LLM_KEY, TOKEN, csrf_of, driving_app, driving_settings, spec_data, stub_model
from tests.waiting import wait_for, wait_for_run

AGENTS = 300


def llm_spec(url: str, **changes) -> dict:
    model = stub_model(url, price={"prompt": 2.0, "completion": 6.0})
    kinds = [
        {
            "kind": "llm_guess",
            "share": 50,
            "params": {"model": "stub", "prompt": "direct", "turn_timeout": 5},
        },
        {
            "kind": "llm_guess",
            "share": 50,
            "params": {"model": "stub", "prompt": "step_by_step", "memory": "summary", "turn_timeout": 5},
        },
    ]
    changes = {
        "name": "llm run",
        "rounds": 3,
        "placement": {"hosts": 2, "agent_timeout": 10},
        "llm": {"models": {"stub": model}},
        "population.total": AGENTS,
        "population.kinds": kinds,
    } | changes
    return spec_data(**changes)


def driving_anew(database: Path, redis_url: str) -> Settings:
    """The service driving runs on a new SQLite database, with the live layer emptied to match:
    run ids restart at 1, so the live state of another test's run 1 must go."""
    with redis.Redis.from_url(redis_url) as live:
        live.flushdb()
    return driving_settings(f"sqlite:///{database}", redis_url)


@pytest.fixture
def service(tmp_path, redis_url, ray_cluster):
    with TestClient(driving_app(driving_anew(tmp_path / "llm.db", redis_url)), headers=API) as client:
        yield client


def test_a_run_completes_with_the_right_counts_through_trouble(service, llm_stub):
    config = llm_stub.config
    config.latency, config.capacity = 0.05, 30  # the hosts' 80 slots meet a server of 30: 429s
    config.error_rate, config.malformed_rate, config.garbage_rate = 0.1, 0.05, 0.1
    config.hang_rate = 0.01  # a few calls never come back: their agents' turns end at 5 s
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url)).json()
    wait_for_run(service, run["id"], "completed")
    served = llm_stub.served
    assert served.rejected
    assert served.errors
    assert served.malformed
    assert served.hung
    rounds = service.get(f"/api/v1/runs/{run['id']}/rounds").json()["data"]
    export = service.get(f"/api/v1/runs/{run['id']}/export", params={"table": "actions", "format": "json"})
    actions = export.json()
    assert len(actions) == AGENTS * 3
    for r in rounds:
        mine = [a for a in actions if a["round"] == r["round"]]
        failed = [a for a in mine if a["error"] is not None]
        invalid = [a for a in mine if a["error"] is None and a["value"] is None]
        valid = [a for a in mine if a["value"] is not None]
        assert r["stats"]["cnt"] == len(valid)  # an unreadable answer is left out of cnt
        assert r["failures"] == len(failed)
        assert len(valid) + len(invalid) + len(failed) == AGENTS
        assert all(a["payload"]["invalid"] for a in invalid)
    errors = sorted({a["error"][:60] for a in actions if a["error"]})
    assert sum(r["stats"]["cnt"] for r in rounds) > AGENTS * 3 * 0.7, errors
    # Usage adds up exactly: per action, per round and model, and what the server reported.
    usage = [r["usage"]["stub"] for r in rounds]
    tokens = sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage)
    assert tokens == sum(a["tokens"] for a in actions) == served.prompt_tokens + served.completion_tokens
    assert sum(u["calls"] for u in usage) == served.answered
    total = service.get(f"/api/v1/runs/{run['id']}/usage").json()
    assert total["total"]["tokens"] == tokens
    expected = (served.prompt_tokens * 2.0 + served.completion_tokens * 6.0) / 1e6
    assert total["total"]["cost"] == pytest.approx(expected)
    assert served.authorizations == {f"Bearer {LLM_KEY}"}


def test_a_budget_pauses_the_run_until_it_is_raised(service, llm_stub):
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, budget={"tokens": 1000})).json()
    paused = wait_for_run(service, run["id"], "paused", "completed")
    assert paused["status"] == "paused"
    assert paused["round"] == 1
    assert "the token budget is spent" in paused["live"]["reason"]
    events = service.get(f"/api/v1/runs/{run['id']}/events").json()["data"]
    assert events[0]["kind"] == "budget"
    # A resume that leaves the budget spent is refused at once, with the numbers: from the API...
    url = f"/api/v1/runs/{run['id']}"
    for body, limit in (({"budget": {"tokens": 1}}, "1"), (None, "1,000")):
        refused = service.post(f"{url}/resume", json=body)
        assert refused.status_code == 409
        spent = rf"the token budget is spent \([\d,]+ of {limit}\)"
        expected = rf"run {run['id']} cannot resume: {spent}; resume it with a larger budget"
        assert re.fullmatch(expected, refused.json()["detail"])
    # ...and from the run page, beside its buttons.
    service.get(f"/login?token={TOKEN}")
    csrf = csrf_of(service.get(f"/runs/{run['id']}").text)
    page = service.post(f"/runs/{run['id']}/resume", data={"csrf": csrf, "tokens": "1000", "cost": ""})
    assert re.search(r"cannot resume: the token budget is spent \([\d,]+ of 1,000\)", page.text)
    assert service.get(url).json()["status"] == "paused"
    resumed = service.post(f"/api/v1/runs/{run['id']}/resume", json={"budget": {"tokens": 10_000_000}})
    assert resumed.status_code == 202
    done = wait_for_run(service, run["id"], "completed")
    assert done["spec"]["budget"] == {"tokens": 10_000_000, "cost": None}
    kinds = [e["kind"] for e in service.get(f"/api/v1/runs/{run['id']}/events").json()["data"]]
    assert "budget raised" in kinds
    assert "resumed" in kinds


def test_keys_never_reach_the_database_or_the_pages(service, llm_stub, tmp_path):
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, rounds=1)).json()
    wait_for_run(service, run["id"], "completed")
    assert llm_stub.served.authorizations == {f"Bearer {LLM_KEY}"}  # the hosts did use it
    database = (tmp_path / "llm.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("llm.db-*")
    )
    assert LLM_KEY.encode() not in database
    service.get(f"/login?token={TOKEN}")
    for page in (
        f"/runs/{run['id']}",
        f"/runs/{run['id']}/agents",
        f"/runs/{run['id']}/agents/0",
        "/cluster",
    ):
        assert LLM_KEY not in service.get(page).text
    for table in ("rounds", "actions", "agents", "events"):
        export = service.get(f"/api/v1/runs/{run['id']}/export", params={"table": table, "format": "csv"})
        assert LLM_KEY not in export.text


def test_an_llm_agent_answers_an_interview_in_character(service, llm_stub):
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, rounds=1)).json()
    wait_for_run(service, run["id"], "completed")
    served = llm_stub.served
    before = served.prompt_tokens + served.completion_tokens
    asked = service.post(
        f"/api/v1/runs/{run['id']}/agents/3/interview", json={"question": "Why that number?"}
    )
    assert asked.status_code == 200
    assert asked.json()["answer"] == "Speaking for myself: Why that number?"  # the model's own words
    # The interview is on the run's record, and in its bill.
    spent = served.prompt_tokens + served.completion_tokens - before
    usage = service.get(f"/api/v1/runs/{run['id']}/usage").json()
    assert usage["interviews"]["tokens"] == spent > 0
    assert usage["total"]["tokens"] == sum(r["tokens"] for r in usage["rounds"]) + spent
    assert usage["models"]["stub"]["calls"] == served.answered
    event = service.get(f"/api/v1/runs/{run['id']}/events").json()["data"][0]
    assert event["kind"] == "interview"
    assert event["payload"]["agent"] == 3
    assert event["payload"]["question"] == "Why that number?"
    assert event["payload"]["answer"] == asked.json()["answer"]
    llm_stub.config.error_rate = 1.0
    failed = service.post(f"/api/v1/runs/{run['id']}/agents/3/interview", json={"question": "And now?"})
    assert failed.status_code == 503
    assert "could not answer" in failed.json()["detail"]
    event = service.get(f"/api/v1/runs/{run['id']}/events").json()["data"][0]
    assert event["payload"]["answer"] is None
    assert "HTTP 500" in event["payload"]["error"]
    assert event["payload"]["usage"]["stub"]["failed"] >= 1


def test_interviews_count_against_the_budget(service, llm_stub):
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, budget={"tokens": 1000})).json()
    url = f"/api/v1/runs/{run['id']}"
    assert wait_for_run(service, run["id"], "paused", "completed")["round"] == 1
    rounds = service.get(f"{url}/usage").json()["total"]["tokens"]
    assert service.post(f"{url}/agents/0/interview", json={"question": "Why?"}).status_code == 200
    # Enough for the rounds' use alone, not with the interview's: the run stays where it is.
    refused = service.post(f"{url}/resume", json={"budget": {"tokens": rounds + 1}})
    assert refused.status_code == 409
    spent = f"the token budget is spent ({usage_total(service, url):,} of {rounds + 1:,})"
    assert spent in refused.json()["detail"]
    after = service.get(url).json()
    assert (after["status"], after["round"]) == ("paused", 1)


def usage_total(service, url: str) -> int:
    return service.get(f"{url}/usage").json()["total"]["tokens"]


async def log_resume(database: Path, run_id: int, budget: dict) -> None:
    """A resume in the run's command log, as the service writes it once its own check passed."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with session_factory(engine)() as session:
            await commands.add_command(session, run_id=run_id, action="resume", payload={"budget": budget})
            await session.commit()
    finally:
        await engine.dispose()


def test_the_worker_refuses_a_resume_that_finds_the_budget_spent(service, llm_stub, tmp_path):
    """The service refuses a resume that leaves the budget spent, and the worker checks again
    when it applies one (an interview may have spent more in between): the run stays paused,
    and the refusal is an event of its own."""
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, budget={"tokens": 1000})).json()
    url = f"/api/v1/runs/{run['id']}"
    assert wait_for_run(service, run["id"], "paused", "completed")["round"] == 1
    asyncio.run(log_resume(tmp_path / "llm.db", run["id"], {"tokens": 1000, "cost": None}))

    def refusal() -> dict | None:
        events = service.get(f"{url}/events").json()["data"]
        return next(
            (e for e in events if e["payload"].get("reason", "").endswith("raise it to resume")), None
        )

    refused = wait_for(refusal, "the worker's refusal of the resume", 30)
    assert refused["kind"] == "budget"
    assert refused["payload"]["reason"].startswith("the token budget is spent")
    after = service.get(url).json()
    assert (after["status"], after["round"]) == ("paused", 1)


def test_a_budget_the_backgrounds_spent_pauses_the_run_before_its_first_round(service, llm_stub):
    spec = llm_spec(
        llm_stub.url,
        rounds=2,
        budget={"tokens": 1},
        **{"population.total": 40, "population.persona": {"model": "stub"}},
    )
    run = service.post("/api/v1/runs", json=spec).json()
    url = f"/api/v1/runs/{run['id']}"
    paused = wait_for_run(service, run["id"], "paused", "completed")
    assert (paused["status"], paused["round"]) == ("paused", 0)
    event = service.get(f"{url}/events").json()["data"][0]
    assert event["kind"] == "budget"
    spent = usage_total(service, url)
    assert event["payload"]["reason"] == f"the token budget is spent ({spent:,} of 1)"
    assert event["payload"]["tokens"] == spent
    resumed = service.post(f"{url}/resume", json={"budget": {"tokens": 10_000_000}})
    assert resumed.status_code == 202
    assert wait_for_run(service, run["id"], "completed")["round"] == 2


def test_the_model_writes_the_backgrounds_and_a_bad_one_keeps_the_template(service, llm_stub):
    persona = {"model": "stub", "retries": 1}
    spec = llm_spec(llm_stub.url, rounds=1, **{"population.total": 60, "population.persona": persona})
    run = service.post("/api/v1/runs", json=spec).json()
    wait_for_run(service, run["id"], "completed")
    agents = service.get(f"/api/v1/runs/{run['id']}/agents", params={"limit": 100}).json()["data"]
    backgrounds = [
        service.get(f"/api/v1/runs/{run['id']}/agents/{a['agent_id']}").json()["background"] for a in agents
    ]
    assert all(b.startswith("I grew up in a small town") for b in backgrounds)
    events = service.get(f"/api/v1/runs/{run['id']}/events").json()["data"]
    written = next(e for e in events if e["kind"] == "backgrounds written")
    assert (written["payload"]["written"], written["payload"]["kept"]) == (60, 0)
    assert service.get(f"/api/v1/runs/{run['id']}").json()["live"]["personas"] == 60
    # What the backgrounds cost is counted apart from the round's, and in the run's total.
    usage = service.get(f"/api/v1/runs/{run['id']}/usage").json()
    assert written["payload"]["usage"]["stub"]["calls"] == llm_stub.served.personas == 60
    assert usage["models"]["stub"]["calls"] == llm_stub.served.answered
    export = service.get(f"/api/v1/runs/{run['id']}/export", params={"table": "actions", "format": "json"})
    assert usage["rounds"][0]["tokens"] == sum(a["tokens"] for a in export.json())  # the agents' own
    assert usage["total"]["tokens"] == usage["rounds"][0]["tokens"] + usage["backgrounds"]["tokens"]

    llm_stub.config.garbage_rate = 1.0  # no persona passes the checks: the template stays
    run = service.post("/api/v1/runs", json=spec).json()
    wait_for_run(service, run["id"], "completed")
    events = service.get(f"/api/v1/runs/{run['id']}/events").json()["data"]
    payload = next(e for e in events if e["kind"] == "backgrounds written")["payload"]
    assert (payload["written"], payload["kept"]) == (0, 60)
    agent = service.get(f"/api/v1/runs/{run['id']}/agents/0").json()
    assert agent["background"].startswith(agent["name"])  # the template: "NAME. gender: ...; ..."


def test_a_stop_cuts_the_writing_of_backgrounds_short(service, llm_stub):
    llm_stub.config.latency = 0.2  # 2,000 personas, 40 at a time on each of 2 hosts: 5 s at least
    spec = llm_spec(llm_stub.url, **{"population.total": 2000, "population.persona": {"model": "stub"}})
    run = service.post("/api/v1/runs", json=spec).json()
    url = f"/api/v1/runs/{run['id']}"
    wait_for_run(
        service,
        run["id"],
        done=lambda r: bool(r["live"].get("personas")),
        what="its first backgrounds",
        timeout=60,
        every=0.1,
    )
    assert service.post(f"{url}/stop").status_code == 202
    stopped = wait_for_run(service, run["id"], "stopped", "completed")
    assert (stopped["status"], stopped["round"]) == ("stopped", 0)
    asked = llm_stub.served.personas
    assert asked < 2000  # it did not wait for the writing to end
    time.sleep(1.0)
    assert llm_stub.served.personas == asked  # and the hosts asked for no more
    kinds = [e["kind"] for e in service.get(f"{url}/events").json()["data"]]
    assert kinds == ["stopped", "backgrounds cut short", "queued"]
    # The calls made before the stop are on the run's bill.
    usage = service.get(f"{url}/usage").json()
    assert usage["backgrounds"]["tokens"] > 0
    assert usage["models"]["stub"]["calls"] <= asked


def test_a_worker_taking_over_gives_the_hosts_the_stored_backgrounds(
    tmp_path, redis_url, ray_cluster, llm_stub
):
    llm_stub.config.latency = 0.3  # rounds slow enough to stop the first worker mid-run
    settings = driving_settings(f"sqlite:///{tmp_path / 'takeover.db'}", redis_url)
    spec = llm_spec(
        llm_stub.url, rounds=4, **{"population.total": 40, "population.persona": {"model": "stub"}}
    )
    with TestClient(driving_app(settings), headers=API) as first:
        run = first.post("/api/v1/runs", json=spec).json()
        wait_for_run(first, run["id"], done=lambda r: r["round"] >= 1, what="round 1", timeout=60, every=0.1)
    # Leaving the service stops its worker, which hands the run back at a round boundary.
    assert llm_stub.served.personas == 40
    with TestClient(driving_app(settings), headers=API) as second:
        done = wait_for_run(second, run["id"], "completed")
        events = [
            e["kind"]
            for e in second.get(f"/api/v1/runs/{run['id']}/events", params={"limit": 1000}).json()["data"]
        ]
        background = second.get(f"/api/v1/runs/{run['id']}/agents/7").json()["background"]
    assert done["attempts"] == 2
    assert "released" in events
    assert events.count("backgrounds written") == 1
    assert llm_stub.served.personas == 40  # the second worker wrote none: it restored them
    assert background.startswith("I grew up in a small town")


def test_a_worker_leaving_while_writing_backgrounds_passes_on_what_it_was_told(
    tmp_path, redis_url, ray_cluster, llm_stub
):
    llm_stub.config.latency = 0.2  # 2,000 personas, 40 at a time on each of 2 hosts: 5 s at least
    settings = driving_anew(tmp_path / "leaving.db", redis_url)
    persona = {"population.total": 2000, "population.persona": {"model": "stub"}}
    spec = llm_spec(llm_stub.url, rounds=2, **persona)
    with TestClient(driving_app(settings), headers=API) as first:
        run = first.post("/api/v1/runs", json=spec).json()
        url = f"/api/v1/runs/{run['id']}"

        def written() -> int:
            return first.get(url).json()["live"].get("personas") or 0

        def report_after(seen: int) -> None:
            wait_for(lambda: written() != seen, f"a progress report after {seen} backgrounds", 60)

        wait_for(written, "the first backgrounds", 60)
        assert first.post(f"{url}/pause").status_code == 202
        for _ in range(2):  # two progress reports later, the writer has taken the pause
            report_after(written())
    # Leaving stopped the writing; the next worker writes the backgrounds and then pauses.
    with TestClient(driving_app(settings), headers=API) as second:
        paused = wait_for_run(second, run["id"], "paused")
        kinds = [e["kind"] for e in second.get(f"{url}/events").json()["data"]]
        assert second.post(f"{url}/stop").status_code == 202
        wait_for_run(second, run["id"], "stopped")
    assert paused["round"] == 0
    assert kinds[::-1] == [
        "queued",
        "backgrounds cut short",
        "released",
        "resumed",
        "backgrounds written",
        "started",
        "paused",  # told the first worker
    ]


def test_llm_agents_take_part_in_the_social_network(service, llm_stub):
    spec = llm_spec(
        llm_stub.url,
        rounds=4,
        scenario={"name": "social", "params": {"following": 5, "seeds": 10, "topic": "a new bridge"}},
        **{
            "population.total": 200,
            "population.kinds": [
                {"kind": "llm_social", "share": 50, "params": {"model": "stub"}},
                {"kind": "voter", "share": 50},
            ],
        },
    )
    run = service.post("/api/v1/runs", json=spec).json()
    wait_for_run(service, run["id"], "completed")
    rounds = service.get(f"/api/v1/runs/{run['id']}/rounds").json()["data"]
    for r in rounds:
        stats = r["stats"]
        assert stats["posts"] + stats["reposts"] + stats["silent"] == 200
        assert stats["seen"] >= stats["adopted"] > 0
    assert sum(r["usage"]["stub"]["calls"] for r in rounds) == llm_stub.served.answered > 0
    actions = service.get(
        f"/api/v1/runs/{run['id']}/export", params={"table": "actions", "format": "json"}
    ).json()
    llm_acts = [a["payload"]["act"] for a in actions if a["tokens"]]
    assert set(llm_acts) <= {"post", "repost", "silent", "unreadable"}  # e.g. a repost of nothing
    assert llm_acts.count("post") + llm_acts.count("repost") > len(llm_acts) / 2  # answers were acted on
    kinds = {e["kind"] for e in service.get(f"/api/v1/runs/{run['id']}/events").json()["data"]}
    assert "news_reached" in kinds  # the scenario's milestones reach the event feed
    poster = next(a for a in actions if a["payload"]["act"] == "post")
    service.get(f"/login?token={TOKEN}")
    page = service.get(f"/runs/{run['id']}/agents/{poster['agent_id']}").text
    assert f"post: “{poster['payload']['text']}”" in page  # its posts, on its page


def test_an_archetype_run_asks_per_archetype_and_shows_the_calls_saved(service, llm_stub):
    archetypes = {"by": ["gender", "education"], "samples": 3}  # 2 × 2 archetypes, on both hosts
    params = {"model": "stub", "extract": False, "turn_timeout": 5, "archetypes": archetypes}
    data = llm_spec(
        llm_stub.url, **{"population.kinds": [{"kind": "llm_guess", "share": 100, "params": params}]}
    )
    run = service.post("/api/v1/runs", json=data).json()
    done = wait_for_run(service, run["id"], "completed")
    calls = 3 * 2 * 4 * 3  # rounds × hosts × archetypes × samples
    assert llm_stub.served.answered == calls
    usage = service.get(f"/api/v1/runs/{run['id']}/usage").json()["models"]["stub"]
    assert (usage["calls"], usage["saved"]) == (calls, 3 * AGENTS - calls)
    rounds = service.get(f"/api/v1/runs/{run['id']}/rounds").json()["data"]
    assert [r["stats"]["cnt"] for r in rounds] == [AGENTS] * 3
    service.get(f"/login?token={TOKEN}")
    page = service.get(f"/runs/{run['id']}").text
    assert f"instead of {3 * AGENTS:,} (archetypes saved {3 * AGENTS - calls:,})" in page
    assert done["status"] == "completed"
