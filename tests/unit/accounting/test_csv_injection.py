"""The usage CSV is opened in spreadsheets: a text cell must never be read as a formula."""

from __future__ import annotations

import csv
import io
import json

import pytest

from egi_notebooks.services.accounting.report import UsageRow, per_vo, to_csv, to_json

FORMULAS = [
    '=HYPERLINK("http://evil.example/","x")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A2)",
    "\tpadded",
    "\rcarriage",
]


def cells(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("name", FORMULAS)
def test_text_cells_starting_a_formula_are_prefixed(name):
    rows = [UsageRow(vo=name, user=name, sessions=1, wall_hours=0.5, cpu_hours=1.0)]
    (row,) = cells(to_csv(rows))
    assert row["vo"] == "'" + name
    assert row["user"] == "'" + name
    # Numbers are written as numbers (durations and counts are never negative).
    assert (row["sessions"], row["wall_hours"], row["cpu_hours"]) == ("1", "0.5", "1.0")
    (total,) = cells(to_csv(per_vo(rows)))
    assert total["vo"] == "'" + name and "user" not in total


def test_ordinary_names_are_unchanged_and_json_keeps_the_data():
    rows = [
        UsageRow("vo.example.org", "alice@egi.eu", 2, 1.25, 2.5),
        UsageRow("", "a=b", 1, 0.0, 0.0),  # a formula character later in the cell is harmless
    ]
    assert [(r["vo"], r["user"]) for r in cells(to_csv(rows))] == [
        ("vo.example.org", "alice@egi.eu"),
        ("", "a=b"),
    ]
    odd = [UsageRow("=vo", "@user", 1, 0.5, 0.5)]
    assert json.loads(to_json(odd))[0]["user"] == "@user"


def test_line_breaks_inside_a_cell_stay_inside_it():
    rows = [UsageRow("vo\rx", "a\nb", 1, 0.5, 0.5), UsageRow("vo", "c", 1, 0.5, 0.5)]
    text = to_csv(rows)
    assert [(r["vo"], r["user"]) for r in cells(text)] == [("vo\rx", "a\nb"), ("vo", "c")]
    assert text.endswith("\r\n")
