"""The survey service on a stored run, without asking anything of a model or a worker: how a
survey ends when its asker and a reader disagree, how large a sample may be and how it is drawn,
and the budgets that refuse a survey."""

from collections import Counter

import numpy as np
import pytest
from sqlalchemy import update

from agents.placement import Slot
from agents.spec import RunSpec
from agents.survey import SurveySpec, SurveySpecError
from backend import services
from backend.domain import EventKind, IllegalTransition, RunStatus
from backend.services import surveys as surveys_service
from backend.services.roster import Roster
from backend.services.surveys import _Asking
from backend.store import agents as stored_agents
from backend.store import records, runs
from backend.store import surveys as store
from backend.store.models import ExperimentRow, Run, SurveyRow
from tests.conftest import spec_data

TEXT = {"text": "Why?"}


async def new_run(rt, **changes) -> Run:
    async with rt.sessions() as session:
        run = await runs.create_run(session, spec=RunSpec.parse(spec_data(**changes)))
        await session.commit()
        return run


async def test_an_asker_alive_after_all_records_its_true_end_over_a_readers_guess(runtime):
    run = await new_run(runtime)
    async with runtime.sessions() as session:
        survey = await store.create_survey(
            session, run_id=run.id, round=1, spec={"questions": [TEXT]}, agents=0
        )
        await store.mark(session, survey_id=survey.id, status="running")
        await session.commit()
    # Its asker was cut off from the live layer for over 30 s: a reader takes it for gone.
    await runtime.live.redis.delete(f"myriad:survey:{survey.id}")
    guessed = await services.get_survey(runtime, run.id, survey.id)
    assert (guessed.status, guessed.error) == ("interrupted", "the process asking it stopped")
    # It was asking all along, and finishes.
    asking = _Asking(runtime, survey, RunSpec.stored(run.spec), SurveySpec.parse({"questions": [TEXT]}), [])
    await asking._end("completed", None)
    ended = await services.get_survey(runtime, run.id, survey.id)
    assert (ended.status, ended.error) == ("completed", None)


async def _of_spent_experiment(rt) -> Run:
    """A completed run of an experiment whose token budget (10) its runs have spent (an interview
    of 20 tokens); the run itself has no budget."""
    run = await new_run(rt)
    async with rt.sessions() as session:
        experiment = ExperimentRow(name="e", spec={"budget": {"tokens": 10}}, max_parallel=1, paused=False)
        session.add(experiment)
        await session.flush()
        await session.execute(
            update(Run)
            .where(Run.id == run.id)
            .values(experiment_id=experiment.id, status=RunStatus.COMPLETED)
        )
        asked = {"agent": 3, "question": "Why?", "usage": {"m": {"calls": 1, "prompt_tokens": 20}}}
        await records.add_event(session, run_id=run.id, round=1, kind=EventKind.INTERVIEW, payload=asked)
        await session.commit()
        return await session.get_one(Run, run.id)


async def test_a_run_whose_experiments_budget_is_spent_is_not_surveyed(runtime):
    run = await _of_spent_experiment(runtime)
    spec = SurveySpec.parse({"questions": [TEXT]})
    with pytest.raises(IllegalTransition) as refused:
        await services.create_survey(runtime, run.id, spec)
    assert str(refused.value) == (
        f"run {run.id} cannot be surveyed: the experiment's token budget is spent (20 of 10); "
        f"raise experiment {run.experiment_id}'s budget first"
    )


async def test_a_survey_stops_between_batches_when_its_experiments_budget_is_spent(runtime):
    run = await _of_spent_experiment(runtime)
    survey = SurveyRow(id=1, run_id=run.id, round=1)
    spec, asked = RunSpec.stored(run.spec), SurveySpec.parse({"questions": [TEXT]})
    assert await _Asking(runtime, survey, spec, asked, [0])._spent() is None  # its run alone: not spent
    asking = _Asking(runtime, survey, spec, asked, [0], experiment=run.experiment_id)
    assert await asking._spent() == "the experiment's token budget is spent (20 of 10)"


async def _with_agents(rt, total: int) -> Run:
    """A completed run of `total` agents, recorded (no actions: the guessers skip)."""
    run = await new_run(rt, **{"population.total": total})
    async with rt.sessions() as session:
        await stored_agents.place(session, run_id=run.id, slots=[Slot(0, "n", range(total))], nodes={0: "n"})
        await session.execute(update(Run).where(Run.id == run.id).values(status=RunStatus.COMPLETED))
        await session.commit()
        return await session.get_one(Run, run.id)


@pytest.mark.parametrize("sample", [{"all": True}, {"where": {"gender": "female"}}])
async def test_a_sample_larger_than_a_survey_asks_is_refused(runtime, monkeypatch, sample):
    monkeypatch.setattr(surveys_service, "MAX_SAMPLE", 20)
    run = await _with_agents(runtime, 50)
    with pytest.raises(SurveySpecError) as refused:
        await services.create_survey(
            runtime, run.id, SurveySpec.parse({"questions": [TEXT], "sample": sample})
        )
    matching = 50 if "all" in sample else 25
    more = f"sample: {matching} agents match, more than a survey asks (at most 20)"
    assert refused.value.problems == [f"{more}; ask some of them with random: N"]
    assert refused.value.by_field()[0][0] == "sample"  # the field a 422 names


async def test_a_random_sample_is_drawn(runtime):
    run = await _with_agents(runtime, 50)

    survey = await services.create_survey(
        runtime, run.id, SurveySpec.parse({"questions": [TEXT], "sample": {"random": 10}})
    )
    await services.survey_finished(survey.id)
    assert survey.agents == 10
    page, count = await services.survey_answers(runtime, run.id, survey.id, limit=100, offset=0)
    asked = [a["agent_id"] for a in page]
    assert count == 10
    assert len(set(asked)) == 10
    assert asked != list(range(10))  # drawn, not the first ten


def test_a_sample_is_a_seeded_draw_of_the_matching_agents():
    spec = RunSpec.parse(spec_data(**{"population.total": 200}))
    matching = np.flatnonzero(Roster(spec).matching(attributes={"gender": "female"}))
    female = set(matching.tolist())
    assert len(female) == 100

    def draw(seed: str, n: int = 30) -> list[int]:
        return surveys_service.sample(matching, n, seed)

    first = draw("7:1")
    assert first == sorted(first)
    assert len(set(first)) == 30
    assert set(first) <= female
    assert draw("7:1") == first  # reproducible
    assert draw("7:2") != first  # each survey its own
    assert set(draw("7:1", n=1_000)) == female  # all of them, when fewer match
    # Every agent is as likely to be drawn: over many seeds, each is drawn about 30 / 100 times.
    counts: Counter[int] = Counter()
    for seed in range(200):
        counts.update(draw(f"s{seed}"))
    assert set(counts) == female
    assert max(counts.values()) < 2 * 200 * 30 / len(female)


async def test_a_run_stopped_before_it_was_placed_is_not_surveyed(runtime):
    run = await new_run(runtime, **{"population.total": 50})
    async with runtime.sessions() as session:
        await session.execute(update(Run).where(Run.id == run.id).values(status=RunStatus.STOPPED))
        await session.commit()
    with pytest.raises(IllegalTransition) as refused:
        await services.create_survey(runtime, run.id, SurveySpec.parse({"questions": [TEXT]}))
    assert str(refused.value) == f"run {run.id} was never placed: it has no agents to ask yet"
