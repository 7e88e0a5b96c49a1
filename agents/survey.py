"""A survey: questions put to a sample of a run's agents, and how their answers are read.

A question asks for free text, a number in a range, or one of a few options. Its prompt asks the
agent for an answer in a form that can be read back (`prompt`); `read` turns the reply into the
number or the option, or raises `Unreadable` saying why not. The spec is validated like a run
spec: strictly, bounded, each error naming its field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agents.numbers import last_number, numbers
from agents.spec import MAX_NAME, MAX_PARTS, Name, SpecError, _Strict, read_spec_file

__all__ = [
    "MAX_QUESTIONS",
    "MAX_SAMPLE",
    "Question",
    "Sample",
    "SurveySpec",
    "SurveySpecError",
    "Unreadable",
    "load_survey",
    "normal",
    "prompt",
    "read",
    "read_choice",
    "read_number",
]

MAX_QUESTIONS = 20
MAX_OPTIONS = 20
MAX_QUESTION = 2_000  # characters of a question
MAX_OPTION = 200  # characters of an option: the stored answer's `choice`
MAX_SAMPLE = 100_000  # agents a survey asks at most: all that match, or drawn at random
LIMIT = 1e15  # a number question's bounds: a float that still prints exactly

Option = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_OPTION, pattern=r"^[^\n\r]*\S[^\n\r]*$")
]


class SurveySpecError(SpecError):
    """A survey that cannot be asked; `problems` holds one line per field, as `path: what is wrong`."""

    what = "survey"


class Question(_Strict):
    """One question: free `text`, a `number` between `min` and `max`, or a `choice` of `options`.
    Each check is a field's own (it runs even for a default), so an error names that field."""

    text: str = Field(min_length=1, max_length=MAX_QUESTION)
    type: Literal["text", "number", "choice"] = "text"
    min: float | None = Field(
        None, ge=-LIMIT, le=LIMIT, validate_default=True, description="a number question's lowest answer"
    )
    max: float | None = Field(
        None, ge=-LIMIT, le=LIMIT, validate_default=True, description="a number question's highest answer"
    )
    options: list[Option] | None = Field(
        None,
        min_length=2,
        max_length=MAX_OPTIONS,
        validate_default=True,
        description="a choice question's options",
    )

    @field_validator("text")
    @classmethod
    def _has_words(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("a question needs words")
        return text

    @field_validator("min", "max")
    @classmethod
    def _bound(cls, bound: float | None, info: ValidationInfo) -> float | None:
        if not _takes(info, "number", "min and max", bound):
            return bound
        if bound is None:
            raise ValueError("a number question needs min and max")
        low = info.data.get("min")
        if info.field_name == "max" and low is not None and bound <= low:
            raise ValueError(f"must be above min ({low:g})")
        return bound

    @field_validator("options")
    @classmethod
    def _options(cls, options: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if not _takes(info, "choice", "options", options):
            return options
        if options is None:
            raise ValueError(f"a choice question needs 2 to {MAX_OPTIONS} options")
        folded = [normal(o) for o in options]
        if not all(folded):
            raise ValueError("an option needs a word or a number, not only punctuation")
        if len(set(folded)) != len(folded):
            raise ValueError("two options are the same")
        if any(o.isdigit() for o in folded):
            raise ValueError("an option may not be a bare number (a reply of 2 means the second option)")
        return options


def _takes(info: ValidationInfo, kind: str, what: str, given: Any) -> bool:
    """Whether the question being checked is a `kind` question, which takes these fields (`what`);
    a question of another type must not be `given` them."""
    if info.data.get("type") == kind:
        return True
    if given is not None:
        raise ValueError(f"only a {kind} question has {what}, not a {info.data.get('type')} question")
    return False


class Sample(_Strict):
    """Who is asked: every agent (`all`), `random` N of them, or those `where` attributes have these
    values and whose kind is one of `kinds` (either or both)."""

    all: Literal[True] | None = None
    random: int | None = Field(None, ge=1, le=MAX_SAMPLE, description="this many agents, drawn at random")
    where: dict[Name, Name] | None = Field(None, min_length=1, max_length=MAX_PARTS)
    kinds: list[Annotated[str, StringConstraints(min_length=1, max_length=1_000)]] | None = Field(
        None, min_length=1, max_length=MAX_PARTS, description="kinds' labels"
    )

    @model_validator(mode="after")
    def _one_way(self) -> Sample:
        ways = [
            self.all is not None,
            self.random is not None,
            self.where is not None or self.kinds is not None,
        ]
        if sum(ways) != 1:
            raise ValueError("give exactly one of all: true, random: N, or where and/or kinds")
        return self


class SurveySpec(_Strict):
    name: str = Field("", max_length=MAX_NAME, pattern=r"^[^\n\r]*$")
    questions: list[Question] = Field(min_length=1, max_length=MAX_QUESTIONS)
    sample: Sample = Field(default_factory=lambda: Sample(all=True))

    @classmethod
    def parse(cls, data: Any) -> SurveySpec:
        """Validate a survey; `SurveySpecError` names each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SurveySpecError.from_validation(e) from None


def load_survey(path: str | Path) -> SurveySpec:
    """Read a survey from a YAML or JSON file."""
    return SurveySpec.parse(read_spec_file(path, "survey", SurveySpecError))


# -- asking and reading ----------------------------------------------------------------------------


class Unreadable(ValueError):
    """A reply that holds no answer of the kind asked; its message starts `unreadable: `."""

    def __init__(self, why: str) -> None:
        super().__init__(f"unreadable: {why}")


def prompt(question: Question) -> str:
    """The question as put to an agent, asking for an answer that `read` can read."""
    if question.type == "number":
        assert question.min is not None
        assert question.max is not None
        return (
            f"{question.text}\nAnswer with a number between {question.min:g} and {question.max:g}; "
            "if you explain it, end with the number."
        )
    if question.type == "choice":
        assert question.options is not None
        listed = "\n".join(f"{i}. {o}" for i, o in enumerate(question.options, 1))
        return f"{question.text}\nAnswer with exactly one of these options, nothing else:\n{listed}"
    return question.text


_QUOTES = " \t\r\n\"'“”‘’`*.,;:!?()[]"


def read_number(reply: str, low: float, high: float) -> float:
    """The last number in `reply` that lies in [low, high] (what a rambling answer settles on;
    `agents.numbers` says how numbers are written)."""
    if (value := last_number(reply, low, high)) is not None:
        return value
    if not (found := numbers(reply)):
        raise Unreadable("no number in the answer")
    raise Unreadable(f"{found[-1]:g} is outside {low:g}..{high:g}")


def normal(text: str) -> str:
    """Words as a reply and an option are compared: in any case, runs of white space as one, quotes
    and punctuation around them aside ("Yes!" and “yes” are the same)."""
    return " ".join(text.casefold().split()).strip(_QUOTES)


def read_choice(reply: str, options: Sequence[str]) -> str:
    """The option `reply` gives: the option itself (compared as `normal` forms), its number (`2`,
    `2.`, `option 2`), or the one option named in a longer reply. An option named inside a longer
    one that the reply names ("agree" in "I strongly agree") does not count: the longest wins."""
    said = normal(reply)
    folded = [normal(o) for o in options]
    if said in folded:
        return options[folded.index(said)]
    if (numbered := re.fullmatch(r"(?:option\s*)?(\d+)(?:[.)]\s*(.*))?", said)) and (
        1 <= (n := int(numbered.group(1))) <= len(options)
    ):
        return options[n - 1]
    named, rest = [], said
    for i in sorted(range(len(options)), key=lambda i: -len(folded[i])):
        words = re.compile(rf"(?<!\w){re.escape(folded[i])}(?!\w)")
        if words.search(rest):
            named.append(i)
            rest = words.sub("\0", rest)  # spent: a shorter option inside it is not named again
    if len(named) == 1:
        return options[named[0]]
    if named:
        raise Unreadable(f"it names {len(named)} options: {', '.join(options[i] for i in sorted(named))}")
    raise Unreadable("it names none of the options")


def read(question: Question, reply: str) -> tuple[float | None, str | None]:
    """What `reply` answers to `question`: (value, None) for a number, (None, option) for a
    choice, (None, None) for free text; `Unreadable` if it answers nothing."""
    if question.type == "number":
        assert question.min is not None
        assert question.max is not None
        return read_number(reply, question.min, question.max), None
    if question.type == "choice":
        assert question.options is not None
        return None, read_choice(reply, question.options)
    if not reply.strip():
        raise Unreadable("the answer is empty")
    return None, None
