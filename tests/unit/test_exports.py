"""Exports as a spreadsheet opens them."""

import csv

from backend import services


async def _batches(rows):
    yield rows


async def test_csv_cells_that_look_like_formulas_are_made_inert(tmp_path):
    rows = [
        {"agent_id": 1, "name": '=HYPERLINK("http://evil.example","click")', "value": -3.5},
        {"agent_id": 2, "name": "@SUM(A1:A9)", "value": 2.0},
        {"agent_id": 3, "name": "Ada Lovelace", "value": None},
    ]
    out = tmp_path / "agents.csv"
    assert await services._write_csv(_batches(rows), out) == 3
    with out.open(newline="", encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["name"] for r in read] == [
        '\'=HYPERLINK("http://evil.example","click")',
        "'@SUM(A1:A9)",
        "Ada Lovelace",
    ]
    assert [r["value"] for r in read] == ["-3.5", "2.0", ""]  # numbers stay numbers
