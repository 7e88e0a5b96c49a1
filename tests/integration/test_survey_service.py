"""The survey service on a stored run, without asking anything of a model or a worker: how a
survey ends when its asker and a reader disagree, how large a sample may be and how it is drawn,
and the budgets that refuse a survey."""

from agents.spec import RunSpec
from agents.survey import SurveySpec
from backend import services
from backend.services.surveys import _Asking
from backend.store import runs
from backend.store import surveys as store
from backend.store.models import Run
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
