"""APEL's loader splits a message on every ``%%``, not only on separator lines."""

from __future__ import annotations

import pytest

from egi_notebooks.services.accounting.apel import clean, export
from egi_notebooks.services.accounting.dirq_queue import OutgoingQueue
from egi_notebooks.services.accounting.store import Store

from .test_apel import all_records, read_queue, renderer
from .test_store import T0, obs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("%%", "%"),
        ("a%%b", "a%b"),
        ("x %% VMUUID: forged", "x % VMUUID: forged"),
        ("%%%%%", "%"),
        ("50% off", "50% off"),
        ("%", "%"),
    ],
)
def test_clean_never_leaves_a_separator_inside_a_value(value, expected):
    assert clean(value) == expected
    assert "%%" not in clean(value)


def test_a_value_containing_the_separator_cannot_split_a_record(sessions, tmp_path):
    user = "mallory %% VMUUID: forged-record"
    Store(sessions).apply_poll([obs(user, image="img%%x"), obs("bob")], T0 + 60)
    queue = OutgoingQueue(tmp_path / "q")
    export(sessions, renderer(), queue.add)
    (message,) = read_queue(tmp_path / "q")
    body = message.split("\n", 1)[1]
    # How APEL's record factory cuts records: one piece per record, and nothing after the last.
    pieces = body.strip().split("%%")
    assert len(pieces) == 3 and pieces[-1] == ""
    records = all_records(tmp_path / "q")
    assert len(records) == 2 and "forged-record" not in records
    assert sorted(r["LocalUserId"] for r in records.values()) == [
        "bob",
        "mallory % VMUUID: forged-record",
    ]
