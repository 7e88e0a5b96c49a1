"""The new-run form: presets, the population editor, the live preview and errors in place."""

import re

import pytest

from backend.web.run_form import PRESETS
from tests.conftest import TOKEN, csrf_of

FORM = {
    "name": "from the form",
    "rounds": "3",
    "seed": "11",
    "record": "all",
    "scenario": "guess_two_thirds",
    "param.ratio": "1/2",
    "param.max_value": "50",
    "total": "1,000",
    "attr.0.name": "gender",
    "attr.0.shares": "female=60, male=40",
    "kind.0.kind": "level_k",
    "kind.0.share": "75",
    "kind.0.params": "k=2",
    "kind.1.kind": "uniform",
    "kind.1.share": "25",
    "kind.1.params": "",
}


def slot(html: str, path: str) -> str:
    """The text of the error slot of `path`."""
    found = re.search(rf'id="err-{path.replace(".", "-")}"[^>]*>([^<]*)<', html)
    assert found, f"no error slot for {path}"
    return found.group(1)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_fills_a_valid_form(member, preset):
    page = member.get("/runs/new", params={"preset": preset})
    assert page.status_code == 200
    assert page.context["errors"] == {}
    assert len(page.context["preview"]["profiles"]) == 5
    total = {"paper-1k": "1000", "paper-10k": "10000", "paper-100k": "100000", "probe": "100000"}[preset]
    assert f'name="total" value="{total}"' in page.text


def test_the_form_says_which_kinds_learn_across_rounds(member):
    """A newcomer who starts the paper's game sees its mean level off near 31: the form says why."""
    page = member.get("/runs/new", params={"preset": "paper-10k"}).text
    [hint] = re.findall(r'<p class="hint learning">(.*?)</p>', page, re.S)
    text = re.sub(r"<[^>]+>", "", hint)
    assert text.startswith("Only adaptive (its answer, moved toward each round&#39;s target), llm_guess (")
    assert "the other kinds decide each round afresh" in text


def test_preview_shows_profiles_and_kind_counts(member):
    csrf = csrf_of(member.get("/runs/new").text)
    preview = member.post("/runs/new/preview", data=FORM | {"csrf": csrf})
    assert preview.status_code == 200
    assert "1,000 agents:" in preview.text
    assert "750 level_k(k=2), 250 uniform" in preview.text
    assert preview.text.count("<li>") == 5
    assert "gender: female." in preview.text or "gender: male." in preview.text
    assert slot(preview.text, "population.attributes.0") == ""  # every slot is refreshed, empty


def test_preview_puts_each_error_beside_its_field(member):
    csrf = csrf_of(member.get("/runs/new").text)
    bad = FORM | {"csrf": csrf, "attr.0.shares": "female=60, male=30", "kind.1.share": "20", "rounds": "0"}
    preview = member.post("/runs/new/preview", data=bad)
    assert "The spec has problems" in preview.text
    assert 'hx-swap-oob="true"' in preview.text
    assert "percentages add up to 90, not 100" in slot(preview.text, "population.attributes")
    assert "kind percentages add up to 95, not 100" in slot(preview.text, "population.kinds")
    assert "greater than or equal to 1" in slot(preview.text, "rounds")
    unreadable = member.post("/runs/new/preview", data=FORM | {"csrf": csrf, "total": "many"})
    assert slot(unreadable.text, "population.total") == "“many” is not a number"
    wrong_param = member.post("/runs/new/preview", data=FORM | {"csrf": csrf, "kind.0.params": "k=9"})
    assert "k: Input should be less than or equal to 3" in slot(wrong_param.text, "population.kinds.0")
    # A check across fields lands at the field it names.
    crowded = member.post("/runs/new/preview", data=FORM | {"csrf": csrf, "hosts": "1001"})
    assert slot(crowded.text, "placement.hosts").startswith("1001 hosts for 1000 agents")


def test_submitting_the_form_queues_the_run_it_describes(member):
    csrf = csrf_of(member.get("/runs/new").text)
    refused = member.post("/runs/new", data=FORM | {"csrf": csrf, "param.ratio": "3/2"})
    assert refused.status_code == 422
    assert "ratio must lie strictly between 0 and 1" in slot(refused.text, "scenario.params.ratio")
    assert 'value="3/2"' in refused.text  # what was typed comes back
    created = member.post("/runs/new", data=FORM | {"csrf": csrf})
    assert created.status_code == 303
    run_id = int(created.headers["location"].rsplit("/", 1)[1])
    run = member.get(f"/api/v1/runs/{run_id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert run["status"] == "queued"
    assert (run["name"], run["agents"], run["rounds"], run["seed"]) == ("from the form", 1000, 3, 11)
    assert run["spec"]["scenario"]["params"] == {"ratio": "1/2", "max_value": 50, "show_last_result": False}
    assert run["spec"]["population"]["attributes"] == {"gender": {"female": 60.0, "male": 40.0}}
    assert [(k["label"], k["share"]) for k in run["spec"]["population"]["kinds"]] == [
        ("level_k(k=2)", 75.0),
        ("uniform", 25.0),
    ]
    htmx = member.post("/runs/new", data=FORM | {"csrf": csrf}, headers={"HX-Request": "true"})
    assert htmx.status_code == 204
    assert htmx.headers["HX-Location"].startswith("http://testserver/runs/")


def field(html: str, name: str) -> str:
    """The tag of the form's field `name`."""
    found = re.search(rf'<(?:input|select|textarea)[^>]*name="{re.escape(name)}"[^>]*>', html)
    assert found, f"no field {name}"
    return found.group(0)


def test_a_field_with_a_problem_is_marked_and_its_message_is_beside_it(member):
    csrf = csrf_of(member.get("/runs/new").text)
    bad = {"param.ratio": "3/2", "background": "{name} is {gendr}", "record": "sample", "sample": "0"}
    refused = member.post("/runs/new", data=FORM | {"csrf": csrf} | bad)
    assert refused.status_code == 422
    html = refused.text
    # Each message in its field's slot (a parameter's too), none at the top of the form.
    assert slot(html, "scenario.params.ratio") == "ratio must lie strictly between 0 and 1, not 3/2"
    assert "unknown fields [&#39;gendr&#39;]" in slot(html, "population.background")
    assert slot(html, "record.sample") == "Input should be greater than or equal to 1"
    assert slot(html, "spec") == slot(html, "scenario") == slot(html, "record") == ""
    # The fields are marked invalid (myriad.css draws them red) and name their message.
    for name, path in [("param.ratio", "scenario-params-ratio"), ("background", "population-background")]:
        tag = field(html, name)
        assert 'aria-invalid="true"' in tag
        assert f'aria-describedby="err-{path}"' in tag
    assert 'aria-invalid="true"' in field(html, "sample")
    assert "aria-invalid" not in field(html, "rounds")
    assert 'aria-describedby="err-rounds"' in field(html, "rounds")


def test_sample_backgrounds_without_a_model_say_why(member):
    csrf = csrf_of(member.get("/runs/new").text)
    answer = member.post("/runs/new/personas", data=FORM | {"csrf": csrf})
    assert answer.status_code == 200
    assert slot(answer.text, "personas").startswith("choose a model first")
    assert 'id="err-personas"' in member.get("/runs/new").text  # beside the button
    preview = member.post("/runs/new/preview", data=FORM | {"csrf": csrf})
    assert slot(preview.text, "personas") == ""  # the next change takes it away


def test_the_editor_adds_rows_and_drops_cleared_ones(member):
    csrf = csrf_of(member.get("/runs/new").text)
    added = member.post("/runs/new/form", data=FORM | {"csrf": csrf, "add": "attribute"})
    assert 'name="attr.1.name" value=""' in added.text
    added = member.post("/runs/new/form", data=FORM | {"csrf": csrf, "add": "kind"})
    assert 'name="kind.2.kind"' in added.text
    cleared = member.post("/runs/new/form", data=FORM | {"csrf": csrf, "attr.0.name": "", "kind.1.share": ""})
    assert 'name="attr.0.name"' not in cleared.text
    assert 'name="kind.1.kind"' not in cleared.text


def test_the_form_needs_csrf(member):
    assert member.post("/runs/new", data=FORM).status_code == 403
    assert member.post("/runs/new/preview", data=FORM).status_code == 403


def test_language_models_budget_and_sample_backgrounds(member, llm_stub):
    csrf = csrf_of(member.get("/runs/new").text)
    endpoint = f"{{url: {llm_stub.url}, concurrency: 4}}"
    models = f"models:\n  stub:\n    endpoints: [{endpoint}]\n    api_key_env: STUB_KEY\n"
    form = FORM | {
        "csrf": csrf,
        "llm": models,
        "persona": "stub",
        "budget_tokens": "50,000",
        "kind.1.kind": "llm_guess",
        "kind.1.params": "model=stub, prompt=step_by_step",
    }
    written = member.post("/runs/new/personas", data=form)
    assert written.status_code == 200
    assert written.text.count("I grew up in a small town") == 3
    assert llm_stub.served.personas == 3
    bad_yaml = member.post("/runs/new/preview", data=form | {"llm": "models: [unclosed"})
    assert slot(bad_yaml.text, "llm").startswith("not valid YAML")
    unknown = member.post("/runs/new/preview", data=form | {"persona": "gpt-9"})
    assert "population.persona.model: &#39;gpt-9&#39; is not among the spec&#39;s llm.models" in unknown.text
    created = member.post("/runs/new", data=form)
    assert created.status_code == 303
    run_id = int(created.headers["location"].rsplit("/", 1)[1])
    spec = member.get(f"/api/v1/runs/{run_id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()["spec"]
    assert spec["llm"]["models"]["stub"]["api_key_env"] == "STUB_KEY"
    assert spec["population"]["persona"]["model"] == "stub"
    assert spec["budget"] == {"tokens": 50_000, "cost": None}
    assert spec["population"]["kinds"][1]["params"]["prompt"] == "step_by_step"


def test_a_stored_spec_comes_back_whole_through_the_form():
    """A run's spec put in the form (to run it again, or as an experiment's base) and read back
    is the same spec: unset parameters stay unset (not the text "None"), nested ones (an
    archetypes mapping, a list) keep their commas."""
    from agents.spec import RunSpec
    from backend.web.run_form import Draft

    stored = RunSpec.parse(
        {
            "name": "again",
            "scenario": {"name": "guess_two_thirds"},
            "rounds": 3,
            "llm": {"models": {"m": {"endpoints": [{"url": "http://127.0.0.1:9/v1"}]}}},
            "population": {
                "total": 100,
                "attributes": {
                    "gender": {"female": 50, "male": 50},
                    "school": {"bachelor's degree": 50, "less": 50},
                },
                "kinds": [
                    {
                        "kind": "llm_guess",
                        "share": 100,
                        "params": {
                            "model": "m",
                            "max_tokens": 50,
                            "archetypes": {"by": ["gender", "school"]},
                        },
                    }
                ],
            },
        }
    ).model_dump(mode="json")
    draft = Draft.of_spec(stored)
    assert "None" not in draft.kinds[0][2]
    data, problems = draft.spec()
    assert problems == {}
    assert RunSpec.parse(data).model_dump(mode="json") == stored
