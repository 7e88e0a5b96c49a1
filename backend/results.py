"""Writing a run's results to a folder: the spec, every round as JSON and CSV, and the hosts."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from agents.host import HostStats
from agents.scenarios import RoundResult
from agents.spec import RunSpec

__all__ = ["write_results"]


def write_results(
    folder: Path, spec: RunSpec, results: Sequence[RoundResult], hosts: Sequence[HostStats]
) -> None:
    """Write spec.json, rounds.json, rounds.csv and hosts.json into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    rounds = [dataclasses.asdict(r) for r in results]
    (folder / "rounds.json").write_text(json.dumps(rounds, indent=1), encoding="utf-8")
    (folder / "hosts.json").write_text(
        json.dumps([dataclasses.asdict(h) for h in hosts], indent=1), encoding="utf-8"
    )
    stat_names = list(results[0].stats) if results else []
    with (folder / "rounds.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["round", *stat_names, "time", "failures"])
        for r in results:
            writer.writerow([r.round, *(r.stats[n] for n in stat_names), r.time, r.failures])
