"""A run's agents: their profiles and answers, what reached them, and interviews."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from agents import llm
from agents.core import Profile
from agents.kinds import KINDS
from agents.spec import KindShare, RunSpec
from backend.domain import EventKind
from backend.runtime import Runtime
from backend.services._live import tell
from backend.services.roster import AgentView, Sort, failed_in, placed, views
from backend.services.runs import get_run
from backend.store import commands, records
from backend.store.actions import RecordedAction
from backend.store.models import Run

__all__ = [
    "INTERVIEW_SECONDS",
    "AgentNotFound",
    "InterviewFailed",
    "get_agent",
    "interview",
    "list_agents",
    "messages",
]

INTERVIEW_SECONDS = 60.0


class InterviewFailed(RuntimeError):
    """The agent's language model did not answer."""


class AgentNotFound(LookupError):
    def __init__(self, run_id: int, agent_id: int) -> None:
        super().__init__(f"agent {agent_id} not found in run {run_id}")


async def list_agents(
    rt: Runtime,
    run_id: int,
    *,
    kind: str | None = None,
    attributes: dict[str, str] | None = None,
    host: int | None = None,
    node: str | None = None,
    name: str | None = None,
    failed: bool = False,
    sort: Sort = "id",
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AgentView], int]:
    """A page of the run's agents and how many match: of `kind` (a label), with `attributes`, on
    `host` or `node`, named starting with `name`, that failed in the run's last stored round.
    A run's agents are there once it is placed (none while it is queued)."""
    run = await get_run(rt, run_id)
    if (found := await placed(rt, run)) is None:
        return [], 0
    roster, hosts = found
    failures = await failed_in(rt, run_id, run.round) if failed else None

    def page() -> tuple[list[int], int]:  # array work: off the event loop
        chosen = roster.select(
            hosts, kind=kind, attributes=attributes, host=host, node=node, name=name, failed=failures
        )
        return roster.page(chosen, sort, descending, hosts, limit, offset)

    ids, count = await asyncio.to_thread(page)
    return await views(rt, run_id, roster, ids, hosts), count


async def get_agent(rt: Runtime, run_id: int, agent_id: int) -> tuple[AgentView, Sequence[RecordedAction]]:
    """An agent's profile and its stored actions, round by round."""
    _, agent, actions = await _agent_of(rt, run_id, agent_id)
    return agent, actions


async def _agent_of(
    rt: Runtime, run_id: int, agent_id: int
) -> tuple[Run, AgentView, Sequence[RecordedAction]]:
    run = await get_run(rt, run_id)
    if not 0 <= agent_id < run.agents or (found := await placed(rt, run)) is None:
        raise AgentNotFound(run_id, agent_id)
    roster, hosts = found
    (agent,) = await views(rt, run_id, roster, [agent_id], hosts)
    async with rt.sessions() as session:
        return (
            run,
            agent,
            await records.agent_actions(session, run_id=run_id, agent_id=agent_id, rounds=run.round),
        )


async def interview(rt: Runtime, run_id: int, agent_id: int, question: str) -> str:
    """Ask an agent a question. An LLM agent answers in character, through the run's model, from
    its background and recorded answers; a rule-based agent answers from its profile, its kind's
    rule and its recorded answers. Every interview is recorded as an event of the run, with the
    language-model use it cost (counted in the run's usage and budget)."""
    run, agent, actions = await _agent_of(rt, run_id, agent_id)
    spec = RunSpec.stored(run.spec)
    part = next((k for k in spec.population.kinds if k.label == agent.kind), None)
    kind = KINDS.get(part.kind) if part is not None else None
    answers = [f"round {a.round}: {answer_text(a)}" for a in actions]
    if part is not None and spec.llm is not None and hasattr(kind, "interview"):
        answer, error, used = await _interview_in_character(
            spec, spec.llm, part, kind, agent, answers, question
        )
    else:
        answer, error, used = _answer_by_rule(kind, agent, answers, question), None, {}
    asked = {"agent": agent_id, "question": question, "answer": answer, "error": error, "usage": used}
    async with rt.sessions() as session:
        await records.add_event(
            session, run_id=run_id, round=run.round, kind=EventKind.INTERVIEW, payload=asked
        )
        await session.commit()
    await tell(rt.live.emit(run_id, EventKind.INTERVIEW, run.round, asked))  # into the run page's feed
    if answer is None:
        raise InterviewFailed(f"{agent.name} could not answer: {error}")
    return answer


def _answer_by_rule(kind: Any, agent: AgentView, answers: list[str], question: str) -> str:
    rule = ""
    if kind is not None:
        doc = (kind.__doc__ or "").strip().splitlines()
        rule = f" My rule: {doc[0].rstrip('.')}." if doc else ""
    history = f" My latest answers — {', '.join(answers[-5:])}." if answers else " I have not answered yet."
    return (
        f"You asked: “{question}”. I am {agent.name}, a {agent.kind} agent. {agent.background}{rule}{history}"
    )


async def _interview_in_character(
    spec: RunSpec,
    models: llm.LLMSpec,
    part: KindShare,
    kind: Any,
    agent: AgentView,
    answers: list[str],
    question: str,
) -> tuple[str | None, str | None, dict[str, dict[str, int]]]:
    """The agent's model answers for it, called from this process (with this process's keys):
    its reply, or None and why the model gave none; and the calls it took."""
    params = kind.Params.model_validate(part.params)
    messages = kind.interview(params, profile_of(agent), spec.scenario.params, answers, question)
    client = llm.LLM(models)
    try:
        reply = await client.model(params.model).chat(messages, deadline=time.monotonic() + INTERVIEW_SECONDS)
        return reply.text, None, client.take_usage()
    except llm.LLMError as e:
        return None, str(e), client.take_usage()
    finally:
        await client.close()


def profile_of(agent: AgentView) -> Profile:
    return Profile(agent.agent_id, agent.name, agent.kind, agent.attributes, agent.background)


def answer_text(action: RecordedAction) -> str:
    """A recorded action as an agent would say it: its number, its payload, or why it has none."""
    if action.error is not None:
        return f"no answer ({action.error})"
    value = action.value if action.value is not None else action.payload
    return f"{value:g}" if isinstance(value, float) else json.dumps(value)


async def messages(rt: Runtime, run_id: int, agent: AgentView) -> list[dict[str, Any]]:
    """What was injected into the run and reached `agent`: the round it arrived in, its text, and
    whether it was public information or a message to the agent. Only what was delivered: an
    injection applied after the run's last stored round has not reached anyone yet."""
    run = await get_run(rt, run_id)
    async with rt.sessions() as session:
        injected = await commands.applied_injections(session, run_id=run_id, before=run.round)
    reached = []
    for command in injected:
        where = command.payload.get("where") or {}
        if all(agent.attributes.get(k) == v for k, v in where.items()):
            assert command.applied_round is not None
            reached.append(
                {
                    "round": command.applied_round + 1,
                    "content": command.payload["content"],
                    "public": bool(command.payload.get("public")),
                }
            )
    return reached
