import json

import pytest
import torch

from eoslab.cli import main


def test_demo_writes_table_json_and_figure(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--k", "3", "--steps", "5"]) == 0
    assert torch.get_default_dtype() == torch.float32  # no global state left behind
    out = capsys.readouterr().out
    assert "top-3 Hessian eigenpairs" in out and "residual" in out
    data = json.loads((tmp_path / "spectrum.json").read_text())
    for state in data["results"].values():
        lam = state["eigenvalues"]
        assert len(lam) == 3 and lam == sorted(lam, reverse=True)
        assert all(state["converged"])
    png = (tmp_path / "spectrum.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "spectrum.pdf").read_bytes()[:4] == b"%PDF"


def test_data_show_digits(tmp_path, capsys):
    out = tmp_path / "digits.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "classes: 0, 1" in capsys.readouterr().out


def test_data_show_unknown_dataset_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown dataset 'nope'"):
        main(["data", "show", "nope"])
