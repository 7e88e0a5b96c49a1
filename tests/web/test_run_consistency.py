"""A run's page shows one round at a time: the progress, the statistics table and the chart all
show the newest round the database has, though the worker's live state is ahead of it by the
rounds still being written; the bar says which round is being computed, apart."""

import json
import re

from sqlalchemy import update

from backend.store.models import RoundRow, Run
from tests.conftest import API, csrf_of, spec_data


async def _ahead(rt, run_id: int, recorded: int, stepped: int) -> None:
    """`recorded` rounds in the database, as a worker would have written them, while its live
    state says it has stepped `stepped` (the rounds between are still being written)."""
    async with rt.sessions() as session:
        for n in range(1, recorded + 1):
            histogram = [0] * 101
            histogram[40 - n] = 1000
            stats = {"win": 26.0 - n, "cnt": 1000, "avg": 40.0 - n}
            session.add(
                RoundRow(
                    run_id=run_id,
                    round=n,
                    stats=stats,
                    details={"histogram": histogram},
                    time=0.1,
                    failures=0,
                )
            )
        await session.execute(update(Run).where(Run.id == run_id).values(status="running", round=recorded))
        await session.commit()
    await rt.live.set_state(run_id, status="running", round=stepped, rounds=10)


def shown(html: str) -> dict[str, object]:
    """The round each part of a run page (or of a live update) shows."""
    chart = re.search(r'<script type="application/json" class="chart-data">(.*?)</script>', html, re.S)
    return {
        "bar": int(re.search(r'<span class="round">(\d+)</span>', html)[1]),
        "progress": int(re.search(r'<progress max="10" value="(\d+)">', html)[1]),
        "table": int(re.findall(r"<tr><td>(\d+)</td>", html)[-1]),
        "caption": int(re.search(r"<figcaption>Round (\d+):", html)[1]),
        "chart": json.loads(chart[1])["round"],
    }


def test_every_part_of_a_run_page_shows_the_newest_recorded_round(member):
    run = member.post("/api/v1/runs", json=spec_data(rounds=10), headers=API).json()
    member.portal.call(_ahead, member.app.state.runtime, run["id"], 3, 5)

    page = member.get(f"/runs/{run['id']}").text
    assert set(shown(page).values()) == {3}, shown(page)
    assert "computing round 6" in page  # the worker has stepped 5: rounds 4 and 5 are being written

    # The live stream sends the live part and the chart in one event, of the same round.
    with member.stream("GET", f"/live/runs/{run['id']}", params={"after": "999999"}) as stream:
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if not line and len(lines) > 2:
                break
    event = "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))
    assert lines[0] == "event: progress"
    assert '<section id="run-chart" class="card" data-following hx-swap-oob="true">' in event
    assert set(shown(event).values()) == {3}, shown(event)

    # So does the answer to a button.
    paused = member.post(f"/runs/{run['id']}/pause", headers={"X-CSRF-Token": csrf_of(page)})
    assert 'hx-swap-oob="true"' in paused.text
    assert set(shown(paused.text).values()) == {3}, shown(paused.text)


def test_the_runs_list_shows_the_round_the_run_page_shows(member):
    """The list agrees with the run's page: the newest recorded round, and the round being
    computed apart; so does its live stream (the same rows)."""
    run = member.post("/api/v1/runs", json=spec_data(rounds=10), headers=API).json()
    member.portal.call(_ahead, member.app.state.runtime, run["id"], 3, 5)
    page = member.get(f"/runs/{run['id']}").text
    assert shown(page)["bar"] == 3
    assert "computing round 6" in page

    listed = member.get("/").text
    row = re.search(
        rf'<tr>\s*<td><input[^>]*></td>\s*<td><a href="[^"]*/runs/{run["id"]}">.*?</tr>', listed, re.S
    )[0]
    assert '<progress max="10" value="3">' in row
    assert "30 %" in row
    assert re.search(r"<td>3 / 10 <span class=\"computing muted\">· computing 6</span></td>", row), row
    fragment = member.get("/", headers={"HX-Request": "true", "HX-Target": "runs-rows"}).text
    assert '<progress max="10" value="3">' in fragment
    assert "· computing 6" in fragment
