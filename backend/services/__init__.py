"""The operations that the CLI, the REST API and the dashboard share, one module per subject.

None of those callers talks to the store, the live layer or the workflow directly: they call
these, and take from here the records these return (`Run`, `RoundRow`, ...) too. Every public
name of the submodules is here, so `from backend import services; services.submit(...)` reads
the same wherever it is called.
"""

from __future__ import annotations

from backend.services.agents import (
    INTERVIEW_SECONDS,
    AgentNotFound,
    InterviewFailed,
    get_agent,
    interview,
    list_agents,
    messages,
)
from backend.services.exports import (
    EXPORT_FORMATS,
    EXPORT_MEDIA,
    EXPORT_TABLES,
    ExportFormat,
    ExportTable,
    export,
    export_file,
    remove_export,
)
from backend.services.history import (
    Feed,
    events,
    feed,
    follow,
    groups,
    round_detail,
    rounds,
    run_rounds,
    usage,
)
from backend.services.monitoring import cluster, metrics, workers
from backend.services.previews import PREVIEW_CAP, preview, preview_personas
from backend.services.runs import (
    BudgetSpent,
    RunNotFound,
    admit,
    control,
    count_runs,
    delete_run,
    get_run,
    list_runs,
    live_state,
    live_states,
    reached,
    run_statuses,
    submit,
)
from backend.services.sign_ins import sign_in, sign_out, sign_out_everywhere, signed_in

# What callers need from below, named here so that they import the services only: the database's
# migration (`myriad db upgrade`), the rows the operations return, and which service a fault that
# passes belongs to (an answer of 503, not 500).
from backend.store.db import migrate
from backend.store.models import ActionRow, AgentRow, EventRow, RoundRow, RoundStats, Run
from backend.workflow.outage import transient

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_MEDIA",
    "EXPORT_TABLES",
    "INTERVIEW_SECONDS",
    "PREVIEW_CAP",
    "ActionRow",
    "AgentNotFound",
    "AgentRow",
    "BudgetSpent",
    "EventRow",
    "ExportFormat",
    "ExportTable",
    "Feed",
    "InterviewFailed",
    "RoundRow",
    "RoundStats",
    "Run",
    "RunNotFound",
    "admit",
    "cluster",
    "control",
    "count_runs",
    "delete_run",
    "events",
    "export",
    "export_file",
    "feed",
    "follow",
    "get_agent",
    "get_run",
    "groups",
    "interview",
    "list_agents",
    "list_runs",
    "live_state",
    "live_states",
    "messages",
    "metrics",
    "migrate",
    "preview",
    "preview_personas",
    "reached",
    "remove_export",
    "round_detail",
    "rounds",
    "run_rounds",
    "run_statuses",
    "sign_in",
    "sign_out",
    "sign_out_everywhere",
    "signed_in",
    "submit",
    "transient",
    "usage",
    "workers",
]
