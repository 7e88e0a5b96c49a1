"""The run page's event feed: every kind of event the service records reads as a sentence."""

import html
import re

import pytest

from backend.web.render import templates

# Every kind of event the worker, the service and the store record, with a payload of its shape.
EVENTS = {
    "queued": {"name": "paper"},
    "started": {"worker": "vm:41", "hosts": 2},
    "resumed": {"worker": "vm:41", "from_round": 4},
    "paused": {},
    "stopped": {},
    "completed": {},
    "failed": {"error": "RuntimeError: boom"},
    "resume requested": {},
    "budget": {"reason": "tokens over budget: raise it to resume", "tokens": 1200, "cost": 0.5},
    "budget raised": {"budget": {"tokens": 5000, "cost": None}},
    "node lost": {"nodes": ["n1"], "hosts": [0, 1], "error": "node died"},
    "host lost": {"nodes": ["n2"], "hosts": [3], "error": "actor died"},
    "recovered": {"from_round": 4, "hosts": 2, "nodes": 1},
    "released": {"worker": "vm:41", "reason": "the worker is shutting down"},
    "worker lost": {"worker": "vm:41", "by": "vm:42"},
    "outage": {"service": "database", "seconds": 2.5},
    "failures": {"count": 3, "examples": {"7": "timeout", "9": "unreadable answer"}},
    "messages": {"count": 12},
    "injected": {"content": "Low.", "where": {"gender": "female"}, "public": False},
    "delivered": {"content": "Low.", "where": {"gender": "female"}, "public": False, "reached": 500},
    "backgrounds written": {"written": 990, "kept": 10},
    "backgrounds cut short": {"usage": {"m": {"calls": 3}}},
    "first_repost": {"text": "Agent 4 reposted the news first.", "agent": 4},
    "round": {"stats": {"avg": 33.1, "cnt": 1000}, "failures": 0},
}


def feed_text(kind: str, payload: dict) -> str:
    event = {"kind": kind, "round": 3, "payload": payload, "time": 0}
    rendered = templates.get_template("run_feed.html").render(feed=[("17", event)], run_id=1)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rendered)).split())


@pytest.mark.parametrize("kind", EVENTS)
def test_every_kind_of_event_reads_as_a_sentence(kind):
    text = feed_text(kind, EVENTS[kind])
    assert text.startswith(f"round 3 {kind}")
    assert not re.search(r"[{}\[\]]|\": ", text), text  # no raw JSON: `started {"hosts": 2, …}` once


def test_what_some_events_say():
    assert feed_text("started", EVENTS["started"]) == "round 3 started on 2 hosts, driven by worker vm:41"
    assert feed_text("stopped", {}) == "round 3 stopped for good: a stopped run cannot be resumed"
    assert "3 agents did not answer, e.g. agent 7: timeout" in feed_text("failures", EVENTS["failures"])
    assert feed_text("mystery", {"a_b": 1, "c": [1, 2]}) == "round 3 mystery a b 1; c 1, 2"


def test_each_event_carries_its_id_so_the_page_shows_it_once():
    event = {"kind": "stopped", "round": 8, "payload": {}, "time": 0}
    rendered = templates.get_template("run_feed.html").render(feed=[("42", event)], run_id=1)
    assert 'data-event="42"' in rendered
