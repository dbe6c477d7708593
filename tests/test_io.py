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


def test_folder_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with io.FolderLock(tmp_path, "first") as lock:
        assert lock.stale_holder is None
        with pytest.raises(io.FolderInUseError, match=rf"in use by process {os.getpid()} on .* \(first\)"):
            io.FolderLock(tmp_path, "second").__enter__()
    with io.FolderLock(tmp_path, "third") as lock:  # released on exit: no stale holder reported
        assert lock.stale_holder is None


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    import signal
    import subprocess
    import sys

    code = ("import sys, time; from kopaths.io import FolderLock; l = FolderLock(sys.argv[1], 'victim').__enter__(); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(io.FolderInUseError, match=f"process {proc.pid} .*victim"):
        io.FolderLock(tmp_path).__enter__()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with io.FolderLock(tmp_path, "heir") as lock:
        assert lock.stale_holder is not None and f"process {proc.pid}" in lock.stale_holder
