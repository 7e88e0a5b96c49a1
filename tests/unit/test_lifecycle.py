import pytest

from backend.domain import IllegalTransition, RunStatus, check_transition

ALLOWED = {
    ("queued", "running"),
    ("queued", "stopped"),
    ("running", "paused"),
    ("running", "completed"),
    ("running", "stopped"),
    ("running", "failed"),
    ("paused", "running"),
    ("paused", "stopped"),
    ("paused", "failed"),
}


@pytest.mark.parametrize("current", list(RunStatus))
@pytest.mark.parametrize("target", list(RunStatus))
def test_only_the_lifecycle_transitions_are_allowed(current, target):
    if (current, target) in ALLOWED:
        check_transition(1, current, target)
    else:
        with pytest.raises(IllegalTransition, match=f"run 1 is {current}; it cannot become {target}"):
            check_transition(1, current, target)
