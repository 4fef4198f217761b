import json

import pytest
import torch

from eoslab.cli import main


def test_demo_runs_the_main_job_and_writes_its_figure(tmp_path, capsys):
    short = ["--set", "stop.max_steps=30", "--set", "probe.every=10", "--no-progress"]
    assert main(["demo", "--out", str(tmp_path / "demo"), *short]) == 0
    assert torch.get_default_dtype() == torch.float32  # no global state left behind
    out = capsys.readouterr().out
    assert "status   completed" in out and "λ_1" in out
    probes = [json.loads(line) for line in (tmp_path / "demo" / "probes.jsonl").open()]
    assert [p["step"] for p in probes] == [0, 10, 20, 30]
    lam = [probes[-1][f"lambda_{i}"] for i in range(1, 11)]
    assert lam == sorted(lam, reverse=True) and probes[-1]["eig_converged"] == 1.0
    assert (tmp_path / "demo" / "sharpness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "demo" / "sharpness.pdf").read_bytes()[:4] == b"%PDF"
    # make demo twice: the second replaces the first
    assert main(["demo", "--out", str(tmp_path / "demo"), *short]) == 0


def test_data_show_digits(tmp_path, capsys):
    out = tmp_path / "digits.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "classes: 0, 1" in capsys.readouterr().out


def test_data_show_unknown_dataset_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown dataset 'nope'"):
        main(["data", "show", "nope"])
