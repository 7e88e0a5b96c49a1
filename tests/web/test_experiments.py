"""An experiment's pages on one the embedded service drove to its end: the list, the experiment's
grid, charts and effects, its results to download, and its controls."""

import csv
import html
import io
import json
import re

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API, driving_app, driving_settings, sign_in, spec_data
from tests.waiting import wait_for


def experiment_data(**changes) -> dict:
    """2 ratios × 2 replicates of a small, quick game."""
    base = spec_data(rounds=3, placement={"hosts": 1}, **{"population.total": 200})
    return {
        "name": "ratios",
        "base": base,
        "vary": {"scenario.params.ratio": ["2/3", "1/2"]},
        "replicates": 2,
        "seed": 5,
        "max_parallel": 2,
        **changes,
    }


def wait_for_experiment(client: TestClient, experiment_id: int, *statuses: str) -> dict:
    def ask() -> dict | None:
        found = client.get(f"/api/v1/experiments/{experiment_id}", headers=API).json()
        return found if found["status"] in statuses else None

    return wait_for(ask, f"experiment {experiment_id} to be {' or '.join(statuses)}", timeout=240)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, redis_url, ray_cluster):
    """(signed-in client, experiment) for an experiment whose 4 runs completed."""
    db = tmp_path_factory.mktemp("experiments") / "site.db"
    with TestClient(
        driving_app(driving_settings(f"sqlite:///{db}", redis_url)), follow_redirects=False
    ) as client:
        sign_in(client)
        created = client.post("/api/v1/experiments", json=experiment_data(), headers=API)
        assert created.status_code == 201, created.text
        yield client, wait_for_experiment(client, created.json()["id"], "completed")


def charts_of(html: str) -> list[dict]:
    return [json.loads(found) for found in re.findall(r'class="chart-data">(.*?)</script>', html, re.S)]


def test_the_list_shows_the_experiment(finished):
    client, experiment = finished
    page = client.get("/experiments")
    assert page.status_code == 200
    row = page.text[page.text.index(f"#{experiment['id']} ratios") :]
    assert 'class="status completed"' in row[:600]
    assert "4 / 4" in row[:600]
    assert '/experiments">Experiments</a>' in client.get("/").text  # in the nav


def test_the_page_shows_every_run_in_its_cell_the_charts_and_the_effects(finished):
    client, experiment = finished
    page = client.get(f"/experiments/{experiment['id']}")
    assert page.status_code == 200
    cells = client.get(f"/api/v1/experiments/{experiment['id']}/cells", headers=API).json()["data"]
    grid = page.text[
        page.text.index('class="cells"') : page.text.index("</table>", page.text.index('class="cells"'))
    ]
    rows = grid.split("<tr>")[2:]
    assert len(rows) == 2
    for row, cell in zip(rows, cells, strict=True):
        assert f"<td>{cell['values']['scenario.params.ratio']}</td>" in row
        for run in cell["runs"]:
            assert f'/runs/{run["id"]}">#{run["id"]}</a>' in row
            assert "completed</span> 3/3" in row
    assert "hx-trigger" not in page.text  # ended: nothing to follow

    comparison, *finals = charts_of(page.text)
    results = client.get(f"/api/v1/experiments/{experiment['id']}/results", headers=API).json()
    assert comparison["rounds"] == [1, 2, 3]
    assert [s["label"] for s in comparison["series"]] == ["ratio=2/3", "ratio=1/2"]
    for drawn, series in zip(comparison["series"], results["series"], strict=True):
        assert drawn["mean"] == series["band"]["mean"]
        assert drawn["low"] == series["band"]["low"]
        assert drawn["target"] == series["target"]["mean"]
    assert [f["histogram"] for f in finals] == [s["histogram"] for s in results["series"]]
    assert all(sum(f["histogram"]) == 400 for f in finals)  # 2 runs of 200 agents

    effects = page.text[page.text.index('class="stats effects"') :]
    level = results["effects"][0]["levels"][1]
    assert "<caption>scenario.params.ratio</caption>" in effects
    assert f"<td>{level['difference']:+.2f}</td>" in effects
    assert f"[{level['low']:.2f}, {level['high']:.2f}]" in effects


def test_the_results_download_has_a_row_per_run_and_round(finished):
    client, experiment = finished
    download = client.get(f"/experiments/{experiment['id']}/export", params={"format": "csv"})
    assert download.status_code == 200
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len(rows) == 4 * 3
    assert {r["scenario.params.ratio"] for r in rows} == {"2/3", "1/2"}
    assert {(r["run"], r["round"]) for r in rows} == {
        (str(i), str(n)) for i in {int(r["run"]) for r in rows} for n in (1, 2, 3)
    }


def test_an_ended_experiment_cannot_be_paused(finished):
    client, experiment = finished
    page = client.get(f"/experiments/{experiment['id']}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    answer = client.post(
        f"/experiments/{experiment['id']}/pause",
        data={"csrf": csrf},
        headers={"HX-Request": "true", "HX-Target": "experiment-live"},
    )
    assert answer.status_code == 200
    assert "has ended; it cannot pause" in answer.text
    assert client.post(f"/experiments/{experiment['id']}/pause").status_code == 403  # no CSRF token


def test_a_missing_experiment_is_a_page_saying_so(finished):
    client, _ = finished
    assert client.get("/experiments/999999").status_code == 404


def test_the_page_follows_an_experiment_and_its_buttons_pause_resume_and_stop_it(finished):
    client, _ = finished
    base = spec_data(rounds=50, **{"population.total": 200})
    data = experiment_data(name="to stop", base=base, budget={"tokens": 1000})
    experiment = client.post("/api/v1/experiments", json=data, headers=API).json()
    url = f"/experiments/{experiment['id']}"
    page = client.get(url).text
    assert 'hx-trigger="every 2s"' in page  # not ended: it asks for itself again
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    fragment = {"HX-Request": "true", "HX-Target": "experiment-live"}
    paused = client.post(f"{url}/pause", data={"csrf": csrf}, headers=fragment)
    assert paused.text.lstrip().startswith('<div id="experiment-live"')  # the live part alone
    assert "pause sent" in paused.text
    assert ">Resume</button>" in paused.text
    assert '<input type="number" name="tokens" min="1" value="1000">' in paused.text  # its budget
    resumed = client.post(f"{url}/resume", data={"csrf": csrf, "tokens": "5,000"}, headers=fragment)
    assert "resume sent" in resumed.text
    spec = client.get(f"/api/v1/experiments/{experiment['id']}", headers=API).json()["spec"]
    assert spec["budget"]["tokens"] == 5000
    refused = client.post(f"{url}/resume", data={"csrf": csrf, "tokens": "lots"}, headers=fragment)
    assert "a budget is a number of tokens and a cost" in refused.text
    # Without htmx, the form goes back to the page.
    stopped = client.post(f"{url}/stop", data={"csrf": csrf})
    assert (stopped.status_code, stopped.headers["location"]) == (303, f"http://testserver{url}")
    wait_for_experiment(client, experiment["id"], "stopped")
    page = client.get(url).text
    assert "hx-trigger" not in page
    assert ">Stop</button>" not in page


def spec_of(page: str) -> str:
    return html.unescape(re.search(r'<textarea name="spec"[^>]*>(.*?)</textarea>', page, re.S)[1])


def test_the_new_form_says_what_the_example_makes(finished):
    client, _ = finished
    page = client.get("/experiments/new")
    assert page.status_code == 200
    assert "scenario.params.ratio: [&#34;2/3&#34;, &#34;1/2&#34;]" in page.text  # the example, prefilled
    assert "This makes <strong>4 runs</strong>, <strong>4,000 agents</strong> in all." in page.text


def test_the_new_form_puts_a_bad_factor_beside_the_field_and_creates_a_good_one(finished):
    client, _ = finished
    form = client.get("/experiments/new").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)[1]
    example = spec_of(form)
    bad = example.replace('["2/3", "1/2"]', '["2/3", "x"]')
    problem = "<li><code>vary.scenario.params.ratio</code>: x: Input is not a valid fraction</li>"

    checked = client.post("/experiments/new/check", data={"spec": bad, "csrf": csrf})
    assert checked.status_code == 200
    assert problem in checked.text
    assert "This makes" not in checked.text

    refused = client.post("/experiments/new", data={"spec": bad, "csrf": csrf})
    assert refused.status_code == 422
    assert problem in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert spec_of(refused.text) == bad  # as typed, to mend

    small = example.replace("total: 1000", "total: 100").replace("rounds: 5", "rounds: 2")
    created = client.post("/experiments/new", data={"spec": small, "csrf": csrf})
    assert created.status_code == 303
    experiment_id = int(created.headers["location"].rsplit("/", 1)[1])
    found = client.get(f"/api/v1/experiments/{experiment_id}", headers=API).json()
    assert (found["name"], sum(found["runs"].values())) == ("ratios", 4)
    wait_for_experiment(client, experiment_id, "completed")


def test_runs_chosen_on_the_list_are_compared_one_line_each(finished):
    client, experiment = finished
    cells = client.get(f"/api/v1/experiments/{experiment['id']}/cells", headers=API).json()["data"]
    first, second = cells[0]["runs"][0]["id"], cells[1]["runs"][0]["id"]
    listed = client.get("/").text
    assert f'<input type="checkbox" name="ids" value="{first}" form="compare"' in listed
    assert 'action="http://testserver/runs/compare"' in listed

    page = client.get("/runs/compare", params={"ids": [first, second]})
    assert page.status_code == 200
    for run_id in (first, second):
        assert f'/runs/{run_id}">#{run_id} ' in page.text
    chart = charts_of(page.text)[0]
    assert [s["label"] for s in chart["series"]] == [
        f"run {first}: ratios [ratio=2/3] #1",
        f"run {second}: ratios [ratio=1/2] #1",
    ]
    own = client.get(f"/api/v1/runs/{first}/rounds", headers=API).json()["data"]
    assert chart["series"][0]["mean"] == [r["stats"]["avg"] for r in own]
    assert chart["series"][0]["low"] == [None, None, None]  # one run: no band

    assert client.get("/runs/compare", params={"ids": list(range(1, 22))}).status_code == 422
    assert client.get("/runs/compare").status_code == 422
    assert client.get("/runs/compare", params={"ids": [999999]}).status_code == 404
