"""The service's vocabulary: a run's status, the lifecycle rules between statuses, and the kinds
of event a run records. The store, the workflow, the services and their callers all speak it."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FINAL", "EventKind", "IllegalTransition", "RunStatus", "check_transition"]


class RunStatus(StrEnum):
    """queued → running ⇄ paused → completed | stopped | failed (a failed run can be queued again)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"


FINAL = frozenset({RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.FAILED})

_NEXT: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.STOPPED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.PAUSED, RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.FAILED}
    ),
    RunStatus.PAUSED: frozenset({RunStatus.RUNNING, RunStatus.STOPPED, RunStatus.FAILED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.STOPPED: frozenset(),
    RunStatus.FAILED: frozenset(),
}


class IllegalTransition(ValueError):
    """A status change the lifecycle does not allow, e.g. resuming a completed run."""


def check_transition(run_id: int, current: str, target: RunStatus) -> None:
    if RunStatus(target) not in _NEXT[RunStatus(current)]:
        raise IllegalTransition(f"run {run_id} is {current}; it cannot become {target}")


class EventKind(StrEnum):
    """What a run's events (its feed, its history) say happened. A scenario may record kinds of
    its own besides these."""

    QUEUED = "queued"
    STARTED = "started"
    ROUND = "round"
    PAUSED = "paused"
    RESUMED = "resumed"
    RESUME_REQUESTED = "resume requested"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    RELEASED = "released"  # a worker handed the run back (shutting down)
    WORKER_LOST = "worker lost"  # its lease ran out; another worker takes it over
    NODE_LOST = "node lost"
    HOST_LOST = "host lost"
    RECOVERED = "recovered"
    OUTAGE = "outage"  # the database or the live layer was away for a while
    BUDGET = "budget"  # paused: the run's budget is spent
    BUDGET_RAISED = "budget raised"
    BACKGROUNDS_WRITTEN = "backgrounds written"
    BACKGROUNDS_CUT_SHORT = "backgrounds cut short"
    INJECTED = "injected"
    DELIVERED = "delivered"
    MESSAGES = "messages"
    FAILURES = "failures"
    INTERVIEW = "interview"
    SURVEY = "survey"  # a survey of the run's agents: what it asked and spent
