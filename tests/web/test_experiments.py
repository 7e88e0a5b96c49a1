"""An experiment's pages on one the embedded service drove to its end: the list, the experiment's
grid, charts and effects, its results to download, and its controls."""

import csv
import html
import io
import json
import re
import threading

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import API, csrf_of, driving_app, driving_settings, sign_in, spec_data
from tests.waiting import wait_for
from tests.web.test_new_run import FORM, slot


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
    assert "sse-connect" not in page.text  # ended: nothing to follow

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


def test_each_run_names_its_experiment_cell_and_replicate(finished):
    client, experiment = finished
    cells = client.get(f"/api/v1/experiments/{experiment['id']}/cells", headers=API).json()["data"]
    last = cells[1]["runs"][1]
    run = client.get(f"/api/v1/runs/{last['id']}", headers=API).json()
    assert (run["experiment_id"], run["cell"], run["replicate"]) == (experiment["id"], 1, 1)
    page = client.get(f"/runs/{last['id']}").text
    assert (
        f'Replicate 2 of cell 2 of <a href="http://testserver/experiments/{experiment["id"]}">'
        f"experiment #{experiment['id']}</a>"
    ) in page


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
    assert f'sse-connect="http://testserver/live{url}"' in page  # not ended: its stream follows it
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
    # Without htmx, the form goes back to the page; the page's stream sends the stop as it happens.
    stopped = []
    stopper = threading.Timer(1.5, lambda: stopped.append(client.post(f"{url}/stop", data={"csrf": csrf})))
    stopper.start()
    with client.stream("GET", f"/live{url}") as stream:
        text = stream.read().decode()
    stopper.join()
    assert (stopped[0].status_code, stopped[0].headers["location"]) == (303, f"http://testserver{url}")
    events = re.findall(r"^event: (\w+)$", text, re.M)
    assert events[-1] == "done"
    assert set(events[:-1]) == {"progress"}
    first, *_, last = text.split("event: progress")[1:]  # as the page shows it, then the stop
    assert 'class="status stopped"' not in first
    assert '<span class="status stopped">stopped</span>' in last
    wait_for_experiment(client, experiment["id"], "stopped")
    page = client.get(url).text
    assert "sse-connect" not in page
    assert ">Stop</button>" not in page


def test_the_stream_of_an_ended_experiment_sends_its_live_part_then_done(finished):
    client, experiment = finished
    with client.stream("GET", f"/live/experiments/{experiment['id']}") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = stream.read().decode()
    assert re.findall(r"^event: (\w+)$", text, re.M) == ["progress", "done"]
    assert 'data: <div id="experiment-live">' in text
    assert client.get("/live/experiments/999999").status_code == 404


def experiment_form(csrf: str, **changes: str) -> dict[str, str]:
    """The new-experiment form: the new-run form's fields, two factors and the experiment's own
    (4 cells of one run each: 600 agents in all)."""
    factors = {
        "factor.0.path": "scenario.params.ratio",
        "factor.0.values": "2/3, 1/2",
        "factor.1.path": "population.total",
        "factor.1.values": "100, 200",
    }
    own = {"replicates": "1", "max_parallel": "4", "experiment_tokens": "1,000"}
    return FORM | {"hosts": "1", "csrf": csrf} | factors | own | changes


def spec_of(page: str) -> str:
    return html.unescape(re.search(r'<textarea name="spec"[^>]*>(.*?)</textarea>', page, re.S)[1])


def input_of(page: str, name: str) -> str:
    return re.search(rf'<input[^>]* name="{re.escape(name)}"[^>]*>', page)[0]


def test_the_new_form_is_the_run_form_with_an_example_factor(finished):
    client, _ = finished
    page = client.get("/experiments/new")
    assert page.status_code == 200
    assert page.context["errors"] == {}
    assert 'value="scenario.params.ratio"' in input_of(page.text, "factor.0.path")
    assert 'value="2/3, 1/2"' in input_of(page.text, "factor.0.values")
    assert 'value="2"' in input_of(page.text, "replicates")
    assert 'value="1000"' in input_of(page.text, "total")  # the 1,000-agent preset
    assert ">Add kind</button>" in page.text
    assert ">Add factor</button>" in page.text
    assert "This makes <strong>4 runs</strong>, <strong>4,000 agents</strong> in all." in page.text
    pasted = yaml.safe_load(spec_of(page.text))  # the same experiment, as a spec to paste instead
    assert (pasted["vary"], pasted["replicates"]) == ({"scenario.params.ratio": ["2/3", "1/2"]}, 2)
    assert 'value="100000"' in input_of(client.get("/experiments/new?preset=probe").text, "total")


def test_the_form_says_what_it_makes_and_puts_each_problem_beside_its_field(finished):
    client, _ = finished
    csrf = csrf_of(client.get("/experiments/new").text)
    checked = client.post("/experiments/new/check", data=experiment_form(csrf))
    assert checked.status_code == 200
    assert "This makes <strong>4 runs</strong>, <strong>600 agents</strong> in all." in checked.text
    assert slot(checked.text, "factors.0") == slot(checked.text, "factors.1") == ""

    bad = experiment_form(csrf, **{"factor.0.values": "2/3, x"})
    checked = client.post("/experiments/new/check", data=bad)
    assert "This makes" not in checked.text
    assert "see the fields marked in red" in checked.text
    assert slot(checked.text, "factors.0") == "x: Input is not a valid fraction"  # beside its row
    assert slot(checked.text, "factors.1") == ""
    checked = client.post("/experiments/new/check", data=experiment_form(csrf, rounds="0", replicates="many"))
    assert slot(checked.text, "experiment.replicates") == "“many” is not a number"
    checked = client.post("/experiments/new/check", data=experiment_form(csrf, rounds="0"))
    # A base field's problem is beside that field.
    assert slot(checked.text, "rounds") == "Input should be greater than or equal to 1"
    unread = experiment_form(csrf, **{"factor.1.path": "seed", "factor.1.values": "[1"})
    assert slot(client.post("/experiments/new/check", data=unread).text, "factors.1").startswith(
        "not valid YAML"
    )
    twice = experiment_form(csrf, **{"factor.1.path": "scenario.params.ratio"})
    checked = client.post("/experiments/new/check", data=twice)
    assert slot(checked.text, "factors.1") == "scenario.params.ratio is varied in an earlier row"

    refused = client.post("/experiments/new", data=bad)
    assert refused.status_code == 422
    row = input_of(refused.text, "factor.0.values")
    assert 'value="2/3, x"' in row  # as typed, to mend
    assert 'aria-invalid="true"' in row
    assert "x: Input is not a valid fraction" in refused.text


def test_factors_of_one_zip_group_move_together(finished):
    client, _ = finished
    csrf = csrf_of(client.get("/experiments/new").text)
    zipped = experiment_form(csrf, **{"factor.0.zip": "a", "factor.1.zip": "a"})
    checked = client.post("/experiments/new/check", data=zipped)
    assert "This makes <strong>2 runs</strong>, <strong>300 agents</strong> in all." in checked.text
    uneven = zipped | {"factor.1.values": "100"}
    checked = client.post("/experiments/new/check", data=uneven)
    assert slot(checked.text, "factors.0") == "its lists must have the same length, to move together"
    invalid = zipped | {"factor.1.values": "100, x"}
    checked = client.post("/experiments/new/check", data=invalid)
    assert slot(checked.text, "factors.0") == "x: Input should be a valid integer"  # at the group's first row
    created = client.post("/experiments/new", data=zipped | {"max_parallel": "2"})
    assert created.status_code == 303
    experiment_id = int(created.headers["location"].rsplit("/", 1)[1])
    spec = client.get(f"/api/v1/experiments/{experiment_id}", headers=API).json()["spec"]
    assert (spec["vary"], spec["zip"]) == (
        {},
        [{"scenario.params.ratio": ["2/3", "1/2"], "population.total": [100, 200]}],
    )
    wait_for_experiment(client, experiment_id, "completed")


def test_the_form_adds_factor_rows_and_drops_cleared_ones(finished):
    client, _ = finished
    csrf = csrf_of(client.get("/experiments/new").text)
    form = client.post(
        "/experiments/new/form", data=experiment_form(csrf, add="factor", **{"factor.0.path": ""})
    )
    assert 'value="population.total"' in input_of(form.text, "factor.0.path")
    assert 'value=""' in input_of(form.text, "factor.1.path")  # the row added
    assert 'name="factor.2.path"' not in form.text
    assert 'name="factor.0.zip" value=""' in form.text


def test_a_good_form_queues_the_experiment_with_its_factors(finished):
    client, _ = finished
    csrf = csrf_of(client.get("/experiments/new").text)
    created = client.post("/experiments/new", data=experiment_form(csrf))
    assert created.status_code == 303
    experiment_id = int(created.headers["location"].rsplit("/", 1)[1])
    found = client.get(f"/api/v1/experiments/{experiment_id}", headers=API).json()
    spec = found["spec"]
    assert spec["vary"] == {"scenario.params.ratio": ["2/3", "1/2"], "population.total": [100, 200]}
    assert (spec["name"], spec["replicates"], spec["seed"], spec["max_parallel"]) == (
        "from the form",
        1,
        11,
        4,
    )
    assert spec["budget"]["tokens"] == 1000
    assert spec["base"]["rounds"] == 3
    assert sum(found["runs"].values()) == 4
    wait_for_experiment(client, experiment_id, "completed")


def test_a_pasted_spec_is_checked_as_typed_and_queued(finished):
    client, _ = finished
    form = client.get("/experiments/new").text
    csrf = csrf_of(form)
    example = spec_of(form)
    bad = example.replace("- 2/3\n  - 1/2", "- 2/3\n  - x")
    assert bad != example
    problem = "<li><code>vary.scenario.params.ratio</code>: x: Input is not a valid fraction</li>"
    checked = client.post("/experiments/new/spec", data={"spec": bad, "csrf": csrf})
    assert problem in checked.text
    assert "This makes" not in checked.text
    refused = client.post("/experiments/new", data={"spec": bad, "csrf": csrf})
    assert refused.status_code == 422
    assert problem in refused.text
    assert spec_of(refused.text) == bad  # as typed, to mend

    small = yaml.safe_load(example)
    small["base"] |= {"rounds": 2, "population": small["base"]["population"] | {"total": 100}}
    created = client.post("/experiments/new", data={"spec": json.dumps(small), "csrf": csrf})
    assert created.status_code == 303
    experiment_id = int(created.headers["location"].rsplit("/", 1)[1])
    found = client.get(f"/api/v1/experiments/{experiment_id}", headers=API).json()
    assert sum(found["runs"].values()) == 4
    wait_for_experiment(client, experiment_id, "completed")


def test_a_run_page_makes_an_experiment_of_its_run(finished):
    client, experiment = finished
    run = client.get(f"/api/v1/experiments/{experiment['id']}/cells", headers=API).json()["data"][0]["runs"][
        0
    ]
    assert (
        f'/experiments/new?run={run["id"]}">Make an experiment of this run</a>'
        in client.get(f"/runs/{run['id']}").text
    )
    page = client.get("/experiments/new", params={"run": run["id"]})
    assert page.status_code == 200
    assert page.context["errors"] == {}
    assert 'value="200"' in input_of(page.text, "total")
    assert 'value="3"' in input_of(page.text, "rounds")
    assert "This makes <strong>4 runs</strong>, <strong>800 agents</strong> in all." in page.text
    assert client.get("/experiments/new", params={"run": 999999}).status_code == 404


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
