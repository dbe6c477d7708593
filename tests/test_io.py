"""Atomic writers: complete files or none, never a half-written one."""

import json
import os

import numpy as np
import pytest

from kopaths import io


def _leftovers(folder):
    return [f for f in os.listdir(folder) if f.startswith(".tmp-")]


def test_writers_round_trip_and_leave_no_temporary_files(tmp_path):
    io.write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3), "z": (1, 2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5, "y": [0, 1, 2], "z": [1, 2]}
    io.save_npy(tmp_path / "b.npy", np.eye(2))
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), np.eye(2))
    io.save_npz(tmp_path / "c.npz", w=np.ones(3))
    np.testing.assert_array_equal(np.load(tmp_path / "c.npz")["w"], np.ones(3))
    io.atomic_copy(tmp_path / "a.json", tmp_path / "sub" / "d.json")
    assert (tmp_path / "sub" / "d.json").read_text() == (tmp_path / "a.json").read_text()
    assert not _leftovers(tmp_path) and not _leftovers(tmp_path / "sub")


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.txt"
    io.atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half of the new conte")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and not _leftovers(tmp_path)


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="table .*missing.json does not exist"):
        io.read_json(tmp_path / "missing.json", "table")
    (tmp_path / "bad.json").write_text('{"a": ')
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        io.read_json(tmp_path / "bad.json")
