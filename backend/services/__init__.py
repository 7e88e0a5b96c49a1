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
from backend.services.experiments import (
    ExperimentNotFound,
    budget_spent,
    cells,
    compare,
    control_experiment,
    count_experiments,
    experiment_comparison,
    experiment_progress,
    experiment_status,
    export_results,
    get_experiment,
    list_experiments,
    results,
    runs_of,
    submit_experiment,
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
    RoundsShown,
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
from backend.services.roster import AgentView
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
from backend.services.surveys import (
    SURVEY_SECONDS,
    SurveyNotFound,
    aggregates,
    answered,
    create_survey,
    export_survey,
    get_survey,
    list_surveys,
    stop_surveys,
    survey_answers,
    survey_file,
    survey_finished,
)
from backend.store.actions import RecordedAction

# What callers need from below, named here so that they import the services only: the database's
# migration (`myriad db upgrade`), the rows the operations return, and which service a fault that
# passes belongs to (an answer of 503, not 500).
from backend.store.db import migrate
from backend.store.models import (
    EventRow,
    ExperimentRow,
    RoundRow,
    RoundStats,
    Run,
    SurveyRow,
)
from backend.workflow.outage import transient

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_MEDIA",
    "EXPORT_TABLES",
    "INTERVIEW_SECONDS",
    "PREVIEW_CAP",
    "SURVEY_SECONDS",
    "AgentNotFound",
    "AgentView",
    "BudgetSpent",
    "EventRow",
    "ExperimentNotFound",
    "ExperimentRow",
    "ExportFormat",
    "ExportTable",
    "Feed",
    "InterviewFailed",
    "RecordedAction",
    "RoundRow",
    "RoundStats",
    "RoundsShown",
    "Run",
    "RunNotFound",
    "SurveyNotFound",
    "SurveyRow",
    "admit",
    "aggregates",
    "answered",
    "budget_spent",
    "cells",
    "cluster",
    "compare",
    "control",
    "control_experiment",
    "count_experiments",
    "count_runs",
    "create_survey",
    "delete_run",
    "events",
    "experiment_comparison",
    "experiment_progress",
    "experiment_status",
    "export",
    "export_file",
    "export_results",
    "export_survey",
    "feed",
    "follow",
    "get_agent",
    "get_experiment",
    "get_run",
    "get_survey",
    "groups",
    "interview",
    "list_agents",
    "list_experiments",
    "list_runs",
    "list_surveys",
    "live_state",
    "live_states",
    "messages",
    "metrics",
    "migrate",
    "preview",
    "preview_personas",
    "reached",
    "remove_export",
    "results",
    "round_detail",
    "rounds",
    "run_rounds",
    "run_statuses",
    "runs_of",
    "sign_in",
    "sign_out",
    "sign_out_everywhere",
    "signed_in",
    "stop_surveys",
    "submit",
    "submit_experiment",
    "survey_answers",
    "survey_file",
    "survey_finished",
    "transient",
    "usage",
    "workers",
]
