"""Survey specs, prompts and the reading of answers; the counting of answers; the guessing kinds'
survey hook."""

import asyncio
import types

import pytest
import redis

from agents.core import Profile
from agents.kinds.guessing import Adaptive, LevelK
from agents.kinds.llm_guess import read_number as llm_read_number
from agents.llm_stub import answer
from agents.personas import in_character
from agents.spec import RunSpec
from agents.survey import (
    Question,
    SurveySpec,
    SurveySpecError,
    Unreadable,
    prompt,
    read,
    read_choice,
    read_number,
)
from backend.services.roster import AgentView
from backend.services.surveys import _Asking, _numbers, _settle, _summarize
from backend.store.models import SurveyRow
from tests.conftest import spec_data

NUMBER = {"text": "How sure are you, 0 to 10?", "type": "number", "min": 0, "max": 10}
CHOICE = {"text": "Will the mean fall?", "type": "choice", "options": ["Yes", "No", "Not sure"]}


def problems(data) -> list[str]:
    with pytest.raises(SurveySpecError) as caught:
        SurveySpec.parse(data)
    assert str(caught.value).startswith("invalid survey:")
    return caught.value.problems


def test_a_survey_defaults_to_every_agent():
    spec = SurveySpec.parse({"questions": [{"text": "Why?"}, NUMBER, CHOICE]})
    assert spec.sample.all is True
    assert [q.type for q in spec.questions] == ["text", "number", "choice"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"questions": []}, "questions: List should have at least 1 item after validation, not 0"),
        ({"questions": [{"text": "?"}] * 21}, "questions: List should have at most 20 items"),
        ({"questions": [{"text": "  "}]}, "questions.0.text: a question needs words"),
        ({"questions": [NUMBER | {"max": None}]}, "questions.0.max: a number question needs"),
        ({"questions": [NUMBER | {"min": 10}]}, "questions.0.max: must be above min (10)"),
        ({"questions": [NUMBER | {"max": "10"}]}, "questions.0.max: Input should be a valid number"),
        ({"questions": [CHOICE | {"options": ["Yes"]}]}, "questions.0.options: List should have at least 2"),
        ({"questions": [CHOICE | {"options": ["Yes", "yes "]}]}, "questions.0.options: two"),
        ({"questions": [CHOICE | {"options": ["1", "2"]}]}, "questions.0.options: an option"),
        ({"questions": [CHOICE | {"options": None}]}, "questions.0.options: a choice question"),
        ({"questions": [{"text": "?", "min": 1}]}, "questions.0.min: only a number question"),
        ({"questions": [NUMBER | {"options": ["a", "b"]}]}, "questions.0.options: only a choice"),
        ({"questions": [{"text": "?", "type": "essay"}]}, "questions.0.type: Input should be 'text'"),
        ({"questions": [{"text": "?"}], "sample": {"random": 0}}, "sample.random: Input should be greater"),
        (
            {"questions": [{"text": "?"}], "sample": {"random": 100_001}},
            "sample.random: Input should be less than or equal to 100000",
        ),
        ({"questions": [{"text": "?"}], "sample": {"all": True, "random": 5}}, "sample: give"),
        ({"questions": [{"text": "?"}], "sample": {}}, "sample: give exactly one"),
        ({"questions": [{"text": "?"}], "sample": {"kinds": []}}, "sample.kinds: List should have at least"),
        ({"questions": [{"text": "?"}], "colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_each_problem_names_its_field(data, expected):
    assert any(p.startswith(expected) for p in problems(data)), problems(data)


def test_a_filter_may_name_attributes_and_kinds_together():
    spec = SurveySpec.parse(
        {"questions": [NUMBER], "sample": {"where": {"gender": "f"}, "kinds": ["uniform"]}}
    )
    assert spec.sample.where == {"gender": "f"}
    assert spec.sample.kinds == ["uniform"]


def test_prompts_ask_for_a_readable_answer():
    number, choice = Question(**NUMBER), Question(**CHOICE)
    assert prompt(number).endswith(
        "Answer with a number between 0 and 10; if you explain it, end with the number."
    )
    assert prompt(choice).splitlines()[1:] == [
        "Answer with exactly one of these options, nothing else:",
        "1. Yes",
        "2. No",
        "3. Not sure",
    ]
    assert prompt(Question(text="Why?")) == "Why?"


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("7", 7.0),
        ("7.5, I think", 7.5),
        ("Maybe 3 or 4", 4.0),
        ("1,0 no: 10", 10.0),
        ("-0", 0.0),
        ("Between 0 and 10, I pick 7", 7.0),
        ("In round 5 I guess 3", 3.0),
        ("I pick 7, not 11", 7.0),  # the last number in range
        ("0-10: 6", 6.0),  # a range's dash is no minus sign
    ],
)
def test_a_number_is_the_last_in_range_in_the_reply(reply, value):
    assert read_number(reply, 0, 10) == value


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        (".5", 0.5),
        ("1e+06", 1_000_000.0),
        ("2.5E3 it is", 2500.0),
        ("3,5", 3.5),  # a decimal comma
        ("3,25.", 3.25),
        ("1,000", 1000.0),  # a comma before groups of three digits separates thousands
        ("1,000,000.5", 1_000_000.5),
        ("3,5,7", 7.0),  # a list
        ("-2.5", -2.5),
    ],
)
def test_numbers_are_read_however_they_are_written(reply, value):
    assert read_number(reply, -10, 10_000_000) == value


def test_the_guessing_game_reads_numbers_the_same_way():
    assert llm_read_number("Between 0 and 100, I pick 33", 100) == 33
    assert llm_read_number("In round 5 I guess 33.5", 100) == 33.5
    assert llm_read_number("nothing", 100) is None


@pytest.mark.parametrize("last", [1_000_000, 1e6, 33.0, 0.1, 123456.789, 1e14, 1234567890123.5, 2.5e-7, -4])
def test_a_guessers_survey_answer_reads_back_exactly(last):
    profile = Profile(1, "Bo", "level_k", {}, "")
    question = Question(text="Your guess?", type="number", min=-1e15, max=1e15)
    said = LevelK.survey(LevelK.Params(), profile, question, {1: last})
    assert said is not None
    assert "e+" not in said  # 1000000, not 1e+06
    assert read(question, said) == (float(last), None)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("no idea", "unreadable: no number in the answer"),
        ("11 for sure", "unreadable: 11 is outside 0..10"),
        ("12 or 11", "unreadable: 11 is outside 0..10"),
    ],
)
def test_a_number_that_is_missing_or_out_of_range_is_unreadable(reply, why):
    with pytest.raises(Unreadable, match=f"^{why}$"):
        read_number(reply, 0, 10)


@pytest.mark.parametrize(
    ("reply", "option"),
    [
        ("Yes", "Yes"),
        ("  not SURE. ", "Not sure"),
        ("“No”", "No"),
        ("2", "No"),
        ("3. Not sure", "Not sure"),
        ("Option 1", "Yes"),
        ("I would say not sure, honestly", "Not sure"),
    ],
)
def test_a_choice_is_its_option_or_its_number(reply, option):
    assert read_choice(reply, ["Yes", "No", "Not sure"]) == option


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("Perhaps", "unreadable: it names none of the options"),
        ("4", "unreadable: it names none of the options"),
        ("Yes and no", "unreadable: it names 2 options: Yes, No"),
    ],
)
def test_a_choice_that_names_none_or_several_options_is_unreadable(reply, why):
    with pytest.raises(Unreadable, match=f"^{why}$"):
        read_choice(reply, ["Yes", "No", "Not sure"])


@pytest.mark.parametrize(
    ("reply", "option"),
    [("Yes", "Yes!"), ("yes!", "Yes!"), ("I'd say no!", "No?"), ("“No?”", "No?"), ("not  SURE", "Not sure.")],
)
def test_an_option_ending_in_punctuation_is_read(reply, option):
    assert read_choice(reply, ["Yes!", "No?", "Not sure."]) == option


@pytest.mark.parametrize(
    ("reply", "option"),
    [
        ("I strongly agree", "strongly agree"),
        ("Strongly agree.", "strongly agree"),
        ("I agree", "agree"),
        ("I disagree", "disagree"),
        ("I'd say strongly disagree", "strongly disagree"),
    ],
)
def test_the_longest_option_named_is_read(reply, option):
    options = ["agree", "strongly agree", "disagree", "strongly disagree"]
    assert read_choice(reply, options) == option


def test_options_the_same_but_for_punctuation_are_refused():
    assert "questions.0.options: two options are the same" in problems(
        {"questions": [CHOICE | {"options": ["Yes", "Yes!"]}]}
    )
    assert any(
        p.startswith("questions.0.options: an option needs a word")
        for p in problems({"questions": [CHOICE | {"options": ["?!", "No"]}]})
    )


def test_read_gives_a_value_an_option_or_nothing_for_text():
    assert read(Question(**NUMBER), "4") == (4.0, None)
    assert read(Question(**CHOICE), "yes") == (None, "Yes")
    assert read(Question(text="Why?"), "Because.") == (None, None)
    with pytest.raises(Unreadable, match="empty"):
        read(Question(text="Why?"), "  ")


def test_the_stand_in_server_answers_a_survey_readably_and_the_same_every_time():
    profile = Profile(7, "Ada Lovelace", "llm", {}, "A mathematician.")
    for question in (Question(**NUMBER), Question(**CHOICE)):
        messages = in_character(profile, "You play a game.", "You chose 3.", prompt(question))
        reply = answer(messages)
        assert reply == answer(messages)
        read(question, reply)  # does not raise


def test_guessers_answer_a_number_question_with_their_last_guess():
    profile = Profile(1, "Bo", "level_k", {}, "")
    number = Question(**NUMBER)
    assert LevelK.survey(LevelK.Params(), profile, number, {1: 5.0, 2: 3.0}) == "3"
    assert Adaptive.survey(Adaptive.Params(), profile, number, {}) is None  # nothing guessed yet
    assert LevelK.survey(LevelK.Params(), profile, Question(**CHOICE), {1: 5.0}) is None


def test_numbers_are_counted_from_value_counts_by_hand():
    # 2 x 1, 1 x 4, 1 x 7: n 4, mean 13/4, sd sqrt((2 * 2.25^2 + 0.75^2 + 3.75^2) / 3)
    counted = _numbers([(1.0, 2), (4.0, 1), (7.0, 1)], 0, 10)
    assert counted["n"] == 4
    assert counted["mean"] == 3.25
    assert counted["sd"] == pytest.approx(((2 * 2.25**2 + 0.75**2 + 3.75**2) / 3) ** 0.5)
    assert (counted["min"], counted["max"]) == (1.0, 7.0)
    assert counted["histogram"]["labels"] == [str(i) for i in range(11)]
    assert counted["histogram"]["counts"] == [0, 2, 0, 0, 1, 0, 0, 1, 0, 0, 0]


def test_a_wide_or_fractional_range_has_twenty_bins_the_last_closed():
    counted = _numbers([(0.0, 1), (49.9, 2), (100.0, 3)], 0, 100)
    assert len(counted["histogram"]["labels"]) == 20
    assert counted["histogram"]["labels"][0] == "0–5"
    assert counted["histogram"]["counts"][0] == 1
    assert counted["histogram"]["counts"][9] == 2
    assert counted["histogram"]["counts"][19] == 3
    assert _numbers([], 0, 10) | {"histogram": None} == {
        "n": 0, "mean": None, "sd": None, "min": None, "max": None, "histogram": None,
    }  # fmt: skip


def test_outcomes_are_counted_apart_and_choices_per_option():
    rows = [
        ("read", None, "Yes", 3),
        ("read", None, "No", 1),
        ("unreadable", None, None, 2),
        ("skipped", None, None, 4),
        ("failed", None, None, 1),
    ]
    summary = _summarize(Question(**CHOICE), rows)
    assert summary == {
        "answers": 11,
        "read": 4,
        "unreadable": 2,
        "skipped": 4,
        "failed": 1,
        "counts": {"Yes": 3, "No": 1, "Not sure": 0},
    }


class _Fragile:
    """A kind whose survey hook and interview fail for agent 1 alone."""

    @classmethod
    def survey(cls, params, profile, question, answers):
        if profile.id == 1:
            raise RuntimeError("no words today")
        return "7"

    @classmethod
    def interview(cls, params, profile, game, answers, question):
        raise KeyError("persona")


def _asking(kind) -> _Asking:
    spec = RunSpec.parse(spec_data())
    asked = SurveySpec.parse({"questions": [NUMBER]})
    asking = _Asking(None, SurveyRow(id=1, run_id=1, round=1), spec, asked, [0, 1])
    asking.kinds = {"fragile": ("fragile", kind, None)}
    return asking


def _agent(agent_id: int) -> AgentView:
    return AgentView(agent_id, "Bo", "fragile", {}, "", None, None)


async def test_an_agent_whose_survey_hook_raises_fails_alone():
    asking = _asking(_Fragile)
    question = asking.questions[0]
    rows = await asyncio.gather(*(asking._answer(_agent(i), [], 0, question) for i in (0, 1, 2)))
    assert [r.get("value") for r in rows] == [7.0, None, 7.0]
    assert rows[1] == {
        "agent_id": 1, "question": 0, "tokens": 0, "error": "failed: RuntimeError: no words today",
    }  # fmt: skip


async def test_an_agent_whose_interview_raises_fails_alone():
    asking = _asking(_Fragile)
    asking.client = object()  # a model to ask: the interview fails first
    (row,) = [await asking._answer(_agent(0), [], 0, asking.questions[0])]
    assert row["error"] == "failed: KeyError: 'persona'"


class _DownLive:
    """A live layer that does not answer."""

    async def surveys_asked(self, ids):
        raise redis.ConnectionError("Connection refused")


async def test_a_survey_is_shown_as_stored_when_the_live_layer_is_down():
    rt = types.SimpleNamespace(live=_DownLive(), sessions=None)  # marking it would need a session
    running = SurveyRow(id=987_654, run_id=1, round=1, status="running", agents=5, spec={})
    assert await _settle(rt, [running]) == [running]
    assert running.status == "running"
