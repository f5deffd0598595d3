"""Statuses are enums whose values are the old strings (issue 10, item 5): code and tests
compare members, while the TOML profile, JSON output and the spool database keep the
very same strings.
"""

from __future__ import annotations

import json
import sqlite3
import time
import tomllib
from pathlib import Path

from acrnema_writer import encode, header

from bridge.ingest import IngestResult, IngestStatus, ingest_file
from bridge.profile import REFERENCE, LinkStatus, profile_from_mapping, to_toml
from bridge.spool.store import STATES, DeliveryState, ObjectInfo, Spool

DEST = "pacs"


def test_the_reference_status_table_is_keyed_by_link_status() -> None:
    statuses = REFERENCE.application.statuses
    assert list(statuses) == list(LinkStatus)
    assert all(type(name) is LinkStatus for name in statuses)
    assert statuses[LinkStatus.CANNOT_UNDERSTAND] == statuses["cannot_understand"] == 0xC000
    # the TOML format does not change: plain names, the same codes
    text = to_toml(REFERENCE)
    assert "success = 0x0000" in text and "cannot_understand = 0xC000" in text
    assert "LinkStatus" not in text
    loaded = profile_from_mapping(tomllib.loads(text))
    assert loaded.application.statuses == statuses
    assert loaded.application.statuses[LinkStatus.OUT_OF_RESOURCES] == 0xA700


def test_an_ingest_result_is_an_ingest_status_and_its_json_the_old_string(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.register([DEST])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = ingest_file(spool, text)
    assert result.status is IngestStatus.SKIPPED
    assert json.loads(json.dumps(result.__dict__))["status"] == "skipped"
    assert IngestResult("x", "failed").status is IngestStatus.FAILED  # old call sites
    acr = tmp_path / "slice.acr"
    acr.write_bytes(encode(header() + [(0x7FE00010, "b", bytes(128))]))
    assert ingest_file(spool, acr).status is IngestStatus.SPOOLED
    assert ingest_file(spool, acr).status is IngestStatus.SKIPPED  # the same content again
    spool.close()


def test_delivery_states_are_members_and_the_database_keeps_the_strings(tmp_path: Path) -> None:
    assert STATES == tuple(DeliveryState) == ("ready", "in_flight", "done", "failed")
    spool = Spool(tmp_path)
    spool.register([DEST])
    info = ObjectInfo("1.2.3.4", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1", "OT")
    spool.put(b"object" * 100, info)
    [delivery] = spool.deliveries(state=DeliveryState.READY)
    assert delivery.state is DeliveryState.READY
    counts = spool.counts(DEST)
    assert counts == {DeliveryState.READY: 1, "in_flight": 0, "done": 0, "failed": 0}
    assert all(type(state) is DeliveryState for state in counts)
    spool.claim(DEST, now=time.time())
    assert spool.deliveries()[0].state is DeliveryState.IN_FLIGHT
    spool.close()
    with sqlite3.connect(tmp_path / "spool.db") as db:
        (schema,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'deliveries'").fetchone()
        (stored,) = db.execute("SELECT state FROM deliveries").fetchone()
    check = ", ".join(f"'{state}'" for state in DeliveryState)
    assert f"CHECK (state IN ({check}))" in schema and stored == "in_flight"


def test_a_convert_report_entry_is_a_convert_status_and_its_json_the_old_string(
    tmp_path: Path,
) -> None:
    from bridge.batch import ConvertStatus, ReportEntry, run_batch
    from bridge.dicom.core import ConvertOptions

    acr = tmp_path / "slice.acr"
    acr.write_bytes(encode(header() + [(0x7FE00010, "b", bytes(128))]))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    out = tmp_path / "out"
    converted, skipped = run_batch([acr, text], out, options=ConvertOptions())
    assert converted.status is ConvertStatus.CONVERTED
    assert skipped.status is ConvertStatus.SKIPPED
    assert run_batch([acr], out, options=ConvertOptions())[0].status is ConvertStatus.SKIPPED
    assert [json.loads(json.dumps(e.to_json()))["status"] for e in (converted, skipped)] == [
        "converted",
        "skipped",
    ]
    assert ReportEntry("x", "pending").status is ConvertStatus.PENDING  # old call sites
    assert list(ConvertStatus) == ["converted", "skipped", "failed", "pending"]
