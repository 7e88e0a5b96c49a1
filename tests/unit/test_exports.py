"""Exports as a spreadsheet opens them."""

import csv

from backend.services import exports


async def _batches(rows):
    yield rows


async def test_csv_cells_that_look_like_formulas_are_made_inert(tmp_path):
    rows = [
        {"agent_id": 1, "name": '=HYPERLINK("http://evil.example","click")', "value": -3.5},
        {"agent_id": 2, "name": "@SUM(A1:A9)", "value": 2.0},
        {"agent_id": 3, "name": "Ada Lovelace", "value": None},
    ]
    out = tmp_path / "agents.csv"
    assert await exports._write_csv(_batches(rows), out) == 3
    with out.open(newline="", encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["name"] for r in read] == [
        '\'=HYPERLINK("http://evil.example","click")',
        "'@SUM(A1:A9)",
        "Ada Lovelace",
    ]
    assert [r["value"] for r in read] == ["-3.5", "2.0", ""]  # numbers stay numbers


async def _in_batches(*batches):
    for batch in batches:
        yield batch


async def test_parquet_takes_a_column_that_is_empty_in_the_first_batch(tmp_path):
    """A column all null in the first batch (no agent failed yet) is typed by its table, not as
    pyarrow's null, which the later batch's values could not be cast to (the export was a 500)."""
    import pyarrow.parquet as pq

    first = [{"round": 1, "agent_id": a, "value": 1.5, "payload": None, "error": None} for a in range(3)]
    later = [{"round": 2, "agent_id": 0, "value": None, "payload": {"text": "hi"}, "error": "timeout"}]
    out = tmp_path / "actions.parquet"
    assert await exports._write_parquet(_in_batches(first, later), out) == 4
    table = pq.read_table(out)
    assert table.column("error").to_pylist() == [None, None, None, "timeout"]
    assert table.column("payload").to_pylist() == [None, None, None, '{"text": "hi"}']
    assert table.column("value").to_pylist() == [1.5, 1.5, 1.5, None]


async def test_an_empty_table_s_csv_still_has_its_header(tmp_path):
    """A run at round 0 has no rounds yet: its CSV names the columns (it was 0 bytes)."""
    out = tmp_path / "rounds.csv"
    assert await exports._write_csv(_in_batches(), out, header=["round", "time"]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == ["round,time"]
