"""The pre-built P-DATA send path (bridge.forward.fastpath), alone and against storescp."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import peers
import pytest
from pydicom import dcmread
from pydicom.filereader import read_dataset

from bridge.dicom.core import convert
from bridge.forward import fastpath
from bridge.forward.scu import Destination, Item, Sender
from bridge.spool.objects import dataset_bytes
from bridge.testing.phantom import PhantomSpec, phantom_file


def part10(tmp_path: Path, rows: int, columns: int, n: int = 0) -> Item:
    spec = PhantomSpec(rows=rows, columns=columns, slice_index=n, slices=4)
    ds = convert(phantom_file(spec)).datasets[0]
    path = tmp_path / f"obj{n}.dcm"
    path.write_bytes(dataset_bytes(ds))
    return Item(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), "1.2.840.10008.1.2.1")


def test_command_set_is_a_valid_implicit_vr_c_store_request() -> None:
    raw = fastpath.command_set("1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", 7)
    ds = read_dataset(io.BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
    assert ds.CommandGroupLength == len(raw) - 12
    assert ds.AffectedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.AffectedSOPInstanceUID == "1.2.3.45"
    assert (ds.CommandField, ds.MessageID, ds.Priority, ds.CommandDataSetType) == (1, 7, 0, 0)


@pytest.mark.parametrize(("size", "max_pdu"), [(0, 100), (94, 100), (95, 100), (1000, 100)])
def test_pdus_respect_the_peer_maximum_and_mark_the_last_fragment(size: int, max_pdu: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    pieces = fastpath.pdata_pdus(3, payload, command=False, max_pdu=max_pdu)
    headers, fragments = pieces[0::2], [bytes(f) for f in pieces[1::2]]
    assert b"".join(fragments) == payload
    for i, header in enumerate(headers):
        kind, _, pdu_len, item_len, context, control = struct.unpack(">BBLLBB", header)
        assert kind == 4 and context == 3 and pdu_len == item_len + 4 <= max_pdu
        assert item_len == 2 + len(fragments[i])
        assert control == (0x02 if i == len(headers) - 1 else 0x00)


def test_dataset_offset_skips_preamble_and_meta(tmp_path: Path) -> None:
    item = part10(tmp_path, 8, 8)
    data = item.path.read_bytes()
    offset = fastpath.dataset_offset(data)
    ds = read_dataset(io.BytesIO(data[offset:]), is_implicit_VR=False, is_little_endian=True)
    assert str(ds.SOPInstanceUID) == item.sop_instance_uid
    with pytest.raises(ValueError, match="DICM"):
        fastpath.dataset_offset(b"\x00" * 200)


def test_storescp_receives_identical_objects_through_the_fast_path(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    items = [part10(tmp_path, 512, 512, 0), part10(tmp_path, 37, 51, 1)]  # odd sizes too
    sender = Sender(Destination(storescp.ae_title, storescp.host, storescp.port))
    try:
        results = sender.send(items)
        assert fastpath.hook_problems(sender._assoc) == []
    finally:
        sender.close()
    assert [r.status for r in results] == [0, 0]
    assert sender.fast_sends == 2
    received = storescp.received()
    for item in items:
        sent, got = dcmread(item.path), dcmread(received[item.sop_instance_uid])
        np.testing.assert_array_equal(got.pixel_array, sent.pixel_array)
        assert got.PatientID == sent.PatientID and got.SOPClassUID == sent.SOPClassUID


def test_hook_check_names_what_is_missing() -> None:
    class Bare:
        pass

    problems = fastpath.hook_problems(Bare())
    assert any("_reactor_checkpoint" in p for p in problems)
    assert any("dul.socket.socket" in p for p in problems)
