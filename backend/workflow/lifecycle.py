"""The run lifecycle: queued → running ⇄ paused → completed | stopped | failed."""

from __future__ import annotations

from backend.store.models import RunStatus

__all__ = ["IllegalTransition", "check_transition"]

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
