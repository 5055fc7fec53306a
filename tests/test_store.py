import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from videobert import store


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    store.atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with store.atomic_write(target, "w") as handle:
            handle.write("new, half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "temporary file left behind"


def test_atomic_save_npy_round_trip(tmp_path):
    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    store.atomic_save_npy(tmp_path / "a.npy", array)
    loaded = np.load(tmp_path / "a.npy", allow_pickle=False)
    assert loaded.dtype == np.float16 and np.array_equal(loaded, array)


def test_killed_writer_leaves_no_partial_file_and_rerun_cleans_up(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(store.Path(store.__file__).parents[1])!r})
        from videobert import store
        with store.atomic_write({str(tmp_path / 'big.bin')!r}) as handle:
            handle.write(b"x" * 1000)
            handle.flush()
            print("writing", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "big.bin").exists()
    leftovers = list(tmp_path.glob(".big.bin.tmp.*"))
    assert len(leftovers) == 1
    store.prepare_output_dir(tmp_path)  # what every stage calls first
    assert not list(tmp_path.glob(".big.bin.tmp.*"))


def test_live_writer_temporaries_are_kept(tmp_path):
    with store.atomic_write(tmp_path / "f.txt", "w") as handle:
        handle.write("x")
        assert store.remove_stale_temporaries(tmp_path) == 0
    assert (tmp_path / "f.txt").read_text() == "x"


def test_failure_log_records_and_reads_back_shard_files(tmp_path):
    with store.FailureLog(tmp_path / store.failures_name()) as failures:
        failures.record("a", "shorter than one clip", "too_short")
    with store.FailureLog(tmp_path / store.failures_name(1, 2)) as failures:
        failures.record("b", "not a readable video", "unreadable", path="b.mp4")
    records = store.read_failures(tmp_path)
    assert [(r["id"], r["reason"]) for r in records] == [
        ("a", "shorter than one clip"),
        ("b", "not a readable video"),
    ]
    assert store.failures_name(1, 2) == "failures.shard-00001-of-00002.jsonl"
    for line in (tmp_path / "failures.jsonl").read_text().splitlines():
        json.loads(line)


def test_prepare_output_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(store.InputError, match="not a folder"):
        store.prepare_output_dir(tmp_path / "f")
