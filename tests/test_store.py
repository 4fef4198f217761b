"""The run store: round trip, torn last lines, corrupt files."""

import math

import pytest
import torch

from eoslab.store import RunStore, StoreError


# ---------------------------------------------------------------- store
def test_store_round_trip_and_torn_last_line(tmp_path):
    store = RunStore.create(tmp_path / "r", {"a": 1}, {"torch": torch.__version__})
    for s in range(5):
        store.append("steps", {"step": s, "loss": 1.0 / (s + 1), "nan": float("nan")})
    store.close()
    with open(tmp_path / "r" / "steps.jsonl", "a") as fh:
        fh.write('{"step": 5, "lo')  # a write torn by a kill
    rows = RunStore.open(tmp_path / "r").rows("steps")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4] and math.isnan(rows[0]["nan"])
    store = RunStore.open(tmp_path / "r")
    store.truncate_metrics(3)
    assert [r["step"] for r in store.rows("steps")] == [0, 1, 2]
    theta = torch.randn(7, dtype=torch.float64)
    store.save_snapshot(3, theta, {"time": 0.3})
    back, meta = store.load_snapshot(3)
    assert torch.equal(back, theta) and meta == {"time": 0.3, "step": 3}
    store.save_checkpoint({"theta": theta, "state/v": theta[:2]}, {"step": 3})
    tensors, meta = store.load_checkpoint()
    assert torch.equal(tensors["state/v"], theta[:2]) and meta["step"] == 3
    with pytest.raises(StoreError, match="already holds a run"):
        RunStore.create(tmp_path / "r", {}, {})


def test_store_rejects_corrupt_files(tmp_path):
    store = RunStore.create(tmp_path / "r", {"a": 1}, {})
    (tmp_path / "r" / "steps.jsonl").write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(StoreError, match=r"steps.jsonl:2"):
        store.rows("steps")
    store.snapshot_path(0).write_bytes(b"\x00" * 20)
    with pytest.raises(StoreError, match="unreadable"):
        store.load_snapshot(0)
    with pytest.raises(StoreError, match="not a run directory"):
        RunStore.open(tmp_path / "nothing")
