"""A strict parser of APEL cloud usage messages v0.4, written independently of apel.py.

Anything the APEL repository would refuse or misread is an AssertionError: unknown or
repeated keys, empty values, non-integers where APEL stores integers, a wrong Status, an end
before the start, a WallDuration that does not match the times.
"""

from __future__ import annotations

import re

HEADER = "APEL-cloud-message: v0.4"
KNOWN = {
    "VMUUID", "SiteName", "CloudComputeService", "MachineName", "LocalUserId", "LocalGroupId",
    "GlobalUserName", "FQAN", "Status", "StartTime", "EndTime", "SuspendDuration",
    "WallDuration", "CpuDuration", "CpuCount", "NetworkType", "NetworkInbound",
    "NetworkOutbound", "PublicIPCount", "Memory", "Disk", "BenchmarkType", "Benchmark",
    "StorageRecordId", "ImageId", "CloudType",
}  # fmt: skip
INTEGER = {
    "StartTime", "EndTime", "SuspendDuration", "WallDuration", "CpuDuration", "CpuCount",
    "NetworkInbound", "NetworkOutbound", "PublicIPCount", "Memory", "Disk",
}  # fmt: skip
MANDATORY = {"VMUUID", "SiteName", "Status", "StartTime", "WallDuration", "CloudType"}
STATUS = {"started", "completed", "suspended"}
EPOCH_MIN, EPOCH_MAX = 946684800, 4102444800  # 2000-01-01 .. 2100-01-01
LINE = re.compile(r"^([A-Za-z]+): (\S(?:.*\S)?)$")


def parse_message(text: str) -> list[dict]:
    assert text.endswith("\n"), "message must end with a newline"
    lines = text[:-1].split("\n")
    assert lines[0] == HEADER, f"bad header {lines[0]!r}"
    assert lines[-1] == "%%", "message must end with a %% separator"
    records, current = [], {}
    for line in lines[1:]:
        if line == "%%":
            assert current, "empty record"
            records.append(check_record(current))
            current = {}
            continue
        match = LINE.match(line)
        assert match, f"not a 'Key: value' line: {line!r}"
        key, value = match.groups()
        assert "%%" not in value, f"APEL splits records at the %% in {key}: {value!r}"
        assert key in KNOWN, f"unknown field {key}"
        assert key not in current, f"repeated field {key}"
        current[key] = value
    return records


def check_record(raw: dict[str, str]) -> dict:
    missing = MANDATORY - raw.keys()
    assert not missing, f"missing mandatory fields {missing}"
    record: dict = {}
    for key, value in raw.items():
        if key in INTEGER:
            assert re.fullmatch(r"[0-9]+", value), f"{key} must be an integer >= 0: {value!r}"
            record[key] = int(value)
        elif key == "Benchmark":
            record[key] = float(value)
        else:
            record[key] = value
    assert record["Status"] in STATUS, record["Status"]
    assert EPOCH_MIN <= record["StartTime"] <= EPOCH_MAX, "StartTime is not epoch seconds"
    if record["Status"] == "completed":
        assert "EndTime" in record, "completed record without EndTime"
    if "EndTime" in record:
        assert EPOCH_MIN <= record["EndTime"] <= EPOCH_MAX, "EndTime is not epoch seconds"
        assert record["EndTime"] >= record["StartTime"], "EndTime before StartTime"
        assert record["WallDuration"] == record["EndTime"] - record["StartTime"], "WallDuration"
    if "CpuCount" in record:
        assert record["CpuCount"] >= 1
    if "Benchmark" in record:
        assert "BenchmarkType" in record
    return record
