"""Background generation, second half: a language model writes each profile's persona.

As in the paper's pipeline, a profile's attributes go to the model inside a meta-prompt that asks
for the persona between delimiters; what comes back is checked (delimiters present, a sensible
length, no leftover template) and asked for again when it fails. A profile whose persona cannot be
written keeps its template background, so a run never waits on one bad answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.core import Profile
from agents.llm import LLMError, ModelPool
from agents.templates import MAX_TEMPLATE, check_template

__all__ = ["META_PROMPT", "PersonaSpec", "in_character", "read_persona", "recent", "write_persona"]

META_PROMPT = (
    "Write the background of a person taking part in a study, in the second person "
    '("You are ..."), from these facts: {facts}. Their name is {name}. Give them a believable life, '
    "work and temperament in {min_words} to {max_words} words. Write only the background, between "
    "<persona> and </persona>."
)
_BETWEEN = re.compile(r"<persona>(.*?)</persona>", re.S | re.I)


class PersonaSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(max_length=200, description="a model named in the spec's llm.models")
    prompt: str = Field(
        META_PROMPT,
        max_length=MAX_TEMPLATE,
        description="the meta-prompt; {facts}, {name}, {min_words}, {max_words}",
    )
    retries: int = Field(2, ge=0, le=10, description="new attempts when a persona fails the checks")
    min_words: int = Field(20, ge=1, le=5_000)
    max_words: int = Field(200, ge=1, le=5_000)
    timeout: float = Field(120.0, gt=0, le=3600, description="seconds for one profile, attempts included")

    @field_validator("prompt")
    @classmethod
    def _plain_fields(cls, prompt: str) -> str:
        check_template(prompt, ("facts", "name", "min_words", "max_words"), what="prompt")
        return prompt


def read_persona(text: str, spec: PersonaSpec) -> str | None:
    """The persona between the delimiters, if it passes the checks."""
    found = _BETWEEN.search(text)
    if found is None:
        return None
    persona = " ".join(found.group(1).split())
    words = len(persona.split())
    if not spec.min_words <= words <= spec.max_words or "{" in persona:
        return None
    return persona


def facts(profile: Profile) -> str:
    return "; ".join(f"{key}: {value}" for key, value in profile.attributes.items()) or "no particular facts"


async def write_persona(pool: ModelPool, profile: Profile, spec: PersonaSpec) -> str | None:
    """A checked persona for `profile`, or None when no attempt passed (or the model failed)."""
    prompt = spec.prompt.format(
        facts=facts(profile), name=profile.name, min_words=spec.min_words, max_words=spec.max_words
    )
    deadline = time.monotonic() + spec.timeout
    for _ in range(spec.retries + 1):
        try:
            reply = await pool.chat([{"role": "user", "content": prompt}], deadline=deadline)
        except LLMError:
            return None
        if (persona := read_persona(reply.text, spec)) is not None:
            return persona
    return None


def recent(answers: Sequence[str], empty: str) -> str:
    """An agent's last few recorded answers (newest last), for a prompt; `empty` when none."""
    return "; ".join(answers[-5:]) if answers else empty


def in_character(profile: Profile, setting: str, lately: str, question: str) -> list[dict[str, str]]:
    """The messages that let a model answer `question` as the agent of `profile` would: the
    interview and its `setting` (the game, the same for every agent) first, for the servers'
    prefix caches, then who the agent is and what it did `lately`."""
    system = (
        f"Someone is interviewing you: answer in character, briefly. {setting} "
        f"You are {profile.name}. {profile.background} {lately}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]
