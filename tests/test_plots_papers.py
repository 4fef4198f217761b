"""Paper figures and tables (eoslab.plots.papers) on synthetic but realistic run directories.

The fixture writes, with the run store, the shapes of run the experiments produce: a Lowell
2022 main grid as a sweep (2 architectures × 3 η, λ rising then flat at 2/η), an entering-EoS
run probed densely, class-count runs, exact-flow runs over N with cusp scans and summaries,
Cohen et al. sharpening/flow/momentum runs, a width/depth/data/init study sweep, Lowell 2024
exponential-Euler runs with every layerwise column of a depth-3 MLP, two hand-computed
Table-1 runs and a bare run with no telemetry.
"""

import copy
import hashlib
import json
import math
import warnings

import numpy as np
import pytest

from eoslab.fits import linear_fit, power_law_fit
from eoslab.plots import papers
from eoslab.plots.papers import FIGURES, TABLES, RunData, load_runs, study_labels
from eoslab.plots.papers.lowell2022 import densest, fig4_candidates
from eoslab.plots.papers.peaks import peak_alignment, peak_lambda_1
from eoslab.store import RunStore, StoreError

PNG = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF"


def base_config(**sections):
    cfg = {
        "name": "synthetic",
        "dtype": "float64",
        "loss": "cross_entropy",
        "data": {"name": "fashion_mnist", "n_train": 1000, "flatten": False},
        "model": {"name": "alexnet", "init": "kaiming"},
        "optimizer": {"name": "gd", "lr": 0.01, "momentum": 0.9, "adaptive": False},
        "probe": {"k": 20},
        "stop": {"max_time": 40},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_run(path, config, *, steps=(), probes=(), analysis=(), results=None):
    store = RunStore.create(path, config, {})
    for stream, rows in (("steps", steps), ("probes", probes), ("analysis", analysis)):
        for row in rows:
            store.append(stream, row)
    for name, data in (results or {}).items():
        store.write_result(name, data)
    last = max([r["step"] for r in steps] + [0])
    store.set_status("completed", step=last)
    store.close()
    return path


def write_sweep(root, entries):
    """A sweep directory: runs/<id>/ and sweep_state.json; entries are (overrides, run kwargs)."""
    state = {}
    for overrides, kw in entries:
        rid = hashlib.sha256(json.dumps(kw["config"], sort_keys=True).encode()).hexdigest()[:12]
        write_run(root / "runs" / rid, kw.pop("config"), **kw)
        state[rid] = dict(overrides=overrides, attempts=1, status="completed", error=None)
    state["0123456789ab"] = dict(overrides={"x": 1}, attempts=0, status=None, error=None)
    (root / "runs" / "junk").mkdir()  # not a run: skipped
    (root / "sweep_state.json").write_text(json.dumps(state, indent=1))
    return root


# ---------------------------------------------------------------- row generators
def eos_rows(lr, *, n_top=9, k=12, every=None, t_max=10.0, step_every=10, seed=0, dense=None):
    """GD at the edge of stability: λ_1..λ_{n_top} rise to 2/η and stay; the bulk stays low."""
    rng = np.random.default_rng(seed)
    thr = 2.0 / lr
    n_steps = int(round(t_max / lr))
    every = every or max(1, round(1 / lr))
    probe_steps = sorted(
        set(range(0, n_steps + 1, every)) | set(range(0, dense or 0, 10 if dense else 1))
    )
    probes = []
    for step in probe_steps:
        t = step * lr
        ramp = min(1.0, 0.2 + t / 4)
        lam = [thr * ramp * (1.02 - 0.01 * i) for i in range(n_top)]
        lam += [thr * 0.25 * ramp * (1 - 0.02 * j) for j in range(k - n_top)]
        lam = [v * (1 + 0.01 * rng.standard_normal()) for v in lam]
        row = dict(
            step=step,
            time=t,
            lr=lr,
            loss=2.3 * math.exp(-t / 8),
            accuracy=min(1.0, 0.1 + t / 12),
            grad_norm=1.0 + ramp,
            theta_norm=50.0,
            dist_init=0.1 * t,
            threshold=thr,
            n_top=n_top,
            sharpness=lam[0],
            proj_top=0.1 * ramp / math.sqrt(lr) * 0.01,
            proj_bulk=0.5 * math.exp(-t / 10),
            dL_top=0.002 * rng.standard_normal(),
            dL_bulk=-0.001 * (1 + 0.1 * rng.standard_normal()),
            dL_full=-0.0005,
        )
        for i, v in enumerate(lam, start=1):
            row[f"lambda_{i}"] = v
            row[f"rho_{i}"] = v / thr
            row[f"d_{i}"] = abs(rng.standard_normal()) * (10 * ramp if i <= n_top else 0.1)
        probes.append(row)
    steps = [
        dict(
            step=s,
            time=s * lr,
            lr=lr,
            loss=2.3 * math.exp(-s * lr / 8) * (1 + 0.05 * math.sin(s)),
            grad_norm=1.0,
            threshold=thr,
        )
        for s in range(0, n_steps, step_every)
    ]
    return steps, probes


def flow_rows(N, activation, *, n_steps=300):
    """Exact flow: η_t = min(0.01, 0.5/λ_1); λ_1 peaks at 0.05 N + 3 (ReLU) after step 10."""
    peak = 0.05 * N + 3 if activation == "relu" else 0.02 * N + 10
    steps, t = [], 0.0
    for s in range(n_steps):
        lam = peak * math.exp(-(((s - 150) / 60) ** 2)) + 1.0
        if activation == "tanh" and s == 2:
            lam = 5 * peak  # the initial spike, inside the ignored transient
        lr = min(0.01, 0.5 / lam)
        steps.append(
            dict(step=s, time=t, lr=lr, loss=2.3 * math.exp(-s / 100), grad_norm=1.0, sharpness=lam)
        )
        t += lr
    probes = [
        dict(step=r["step"], time=r["time"], lr=r["lr"], lambda_1=r["sharpness"], threshold=1.0)
        for r in steps[::100]
    ]
    s = np.linspace(-0.003, 0.003, 21)
    cusp = dict(step=150, lambda_1=peak, s=s.tolist(), dL=(N * 0.01 * np.abs(s)).tolist())
    summary = dict(peak_lambda_1=peak, n_train=N, steps=[100, 200])
    return steps, probes, cusp, summary, peak


def lambda_rows(lr, threshold, *, t_max=10.0, seed=0, every=25):
    """λ_1 rising to ``threshold`` then flat, with loss per step (Cohen et al.)."""
    rng = np.random.default_rng(seed)
    n = int(round(t_max / lr))
    steps = [
        dict(
            step=s,
            time=s * lr,
            lr=lr,
            loss=math.exp(-s * lr / 5),
            grad_norm=1.0,
            threshold=threshold,
        )
        for s in range(0, n, 5)
    ]
    probes = []
    for s in range(0, n + 1, every):
        lam = threshold * min(1.0, 0.3 + s * lr / 6) * (1 + 0.01 * rng.standard_normal())
        probes.append(
            dict(step=s, time=s * lr, lr=lr, lambda_1=lam, threshold=threshold, sharpness=lam)
        )
    return steps, probes


def l24_rows(N, seed):
    """Analysis rows of a depth-3 MLP with every layerwise column (λ_1(G) = ζ·E‖M‖²)."""
    rows = []
    for step in range(0, 1001, 100):
        g = 1 + step / 1000 * math.log(N) * (1 + 0.05 * seed)  # growth of the alignment
        V1, V2 = 0.01 * g**2, 0.05 * g
        Es = [1 + 20.0, 1 + 8.0, 1 + 6.0]
        EK = [2.0, 1.5]
        alpha = [V1 / V2, V2]
        C3 = 1.0 + 0.1 * step / 1000
        C2 = C3 * (Es[1] / Es[2]) * EK[1] * 1.0 * V2
        C1 = C3 * (Es[0] / Es[2]) * EK[0] * EK[1] * 1.0 * V1
        em2 = 0.8 * (C1 + C2 + C3)
        zeta = 0.6 - 0.1 * step / 1000
        lam_g = zeta * em2
        row = dict(step=step, time=step * 0.01, lambda_G=lam_g, lambda_H=1.05 * lam_g)
        row.update(lambda_R=0.05 * lam_g, EM2=em2, zeta=zeta, sum_C=C1 + C2 + C3)
        row.update(layer_sharpness_0=0.9 * lam_g, layer_sharpness_2=0.2, layer_sharpness_4=0.1)
        for ell, (C, es) in enumerate(zip((C1, C2, C3), Es), start=1):
            row[f"C_{ell}"], row[f"Es_{ell}"] = C, es
            row[f"EA_{ell}"], row[f"gamma_{ell}"] = C / es, 1.0
        for ell in (1, 2):
            row[f"EK_{ell}"], row[f"alpha_{ell}"] = EK[ell - 1], alpha[ell - 1]
        row.update(comp1_I=C3, comp1_II=Es[0] / Es[2], comp1_III=EK[0] * EK[1], comp1_IV=1.0)
        row.update(comp1_V=V1, comp2_I=C3, comp2_II=Es[1] / Es[2], comp2_III=EK[1], comp2_IV=1.0)
        row.update(comp2_V=V2)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- the fixture
STUDY_MODELS = [
    {"name": "mlp", "width": 50, "depth": 3, "activation": "tanh", "init": "pytorch_default"},
    {"name": "mlp", "width": 100, "depth": 3, "activation": "tanh", "init": "pytorch_default"},
    {"name": "mlp", "width": 400, "depth": 3, "activation": "tanh", "init": "pytorch_default"},
    {"name": "mlp", "width": 200, "depth": 2, "activation": "tanh", "init": "pytorch_default"},
    {"name": "mlp", "width": 200, "depth": 4, "activation": "tanh", "init": "pytorch_default"},
    {"name": "mlp", "width": 200, "depth": 3, "activation": "tanh", "init": "pytorch_default"},
    {"name": "mlp", "width": 200, "depth": 3, "activation": "tanh", "init": "pytorch_default"},
    {
        "name": "mlp",
        "width": 200,
        "depth": 3,
        "activation": "tanh",
        "init": "kaiming",
        "parametrization": "ntk",
    },
]
STUDY_N = [1000, 1000, 1000, 1000, 1000, 500, 2000, 1000]
CE_ALIGN = dict(a=0.002, b=0.4)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("papers")
    # Lowell 2022 main grid, as a sweep
    archs = [
        {"name": "alexnet", "init": "kaiming", "conv_width": 8, "activation": "relu"},
        {"name": "vgg11", "init": "kaiming", "base_width": 4, "activation": "tanh"},
    ]
    entries = []
    for i, arch in enumerate(archs):
        for j, lr in enumerate((0.03, 0.01, 0.003)):
            steps, probes = eos_rows(lr, seed=10 * i + j)
            cfg = base_config(model=arch, optimizer={"lr": lr})
            over = {"model": arch, "optimizer.lr": lr}
            entries.append((over, dict(config=cfg, steps=steps, probes=probes)))
    write_sweep(root / "grid", entries)
    # entering the EoS: probes every 10 steps
    steps, probes = eos_rows(0.01, t_max=5.0, every=100, dense=500, seed=99)
    write_run(root / "entering", base_config(name="entering"), steps=steps, probes=probes)
    # class counts
    for classes in ([0, 1], [0, 1, 2], [0, 1, 2, 3, 4]):
        n_top = len(classes) - 1
        steps, probes = eos_rows(0.01, n_top=n_top, k=n_top + 3, t_max=5.0, seed=len(classes))
        cfg = base_config(data={"classes": classes})
        write_run(root / f"classes_{len(classes)}", cfg, steps=steps, probes=probes)
    # exact flow over N
    for act in ("relu", "tanh"):
        for N in (250, 500, 1000, 2000):
            steps, probes, cusp, summary, _ = flow_rows(N, act)
            cfg = base_config(
                model={"activation": act},
                data={"n_train": N},
                optimizer={"adaptive": True, "c": 0.5},
            )
            write_run(
                root / f"flow_{act}_{N}",
                cfg,
                steps=steps,
                probes=probes,
                results={"cusp": cusp, "analysis_summary": summary},
            )
    # Lowell 2022 Table 1 by hand: ρ_9 > 0.7 at probes 1, 2, 3 only
    rho9 = [0.5, 0.8, 0.9, 0.75, math.nan]
    d_top = [9.0, 0.002, 0.004, 0.006, 9.0]
    d_bulk = [-1.0, -0.001, -0.002, -0.003, -1.0]
    hand = [
        dict(step=10 * i, time=0.2 * i, lr=0.02, n_top=9, rho_9=r, rho_10=0.2, dL_top=a, dL_bulk=b)
        for i, (r, a, b) in enumerate(zip(rho9, d_top, d_bulk))
    ]
    cfg = base_config(name="hand", model={"activation": "tanh"}, optimizer={"lr": 0.02})
    write_run(root / "table1_hand", cfg, probes=hand)
    few = [dict(row, rho_9=0.8 if i < 2 else 0.1) for i, row in enumerate(hand)]
    cfg = base_config(name="few", model={"name": "vgg16"}, optimizer={"lr": 0.05})
    write_run(root / "table1_few", cfg, probes=few)
    # Cohen et al.: sharpening (MSE/CE × η), flow vs GD, momentum
    mlp = {"name": "mlp", "width": 200, "depth": 3, "activation": "tanh"}
    for loss in ("mse", "cross_entropy"):
        for lr in (0.02, 0.04):
            steps, probes = lambda_rows(lr, 2 / lr, seed=int(lr * 100))
            cfg = base_config(loss=loss, model=mlp, optimizer={"lr": lr})
            write_run(root / f"cohen_{loss}_{lr}", cfg, steps=steps, probes=probes)
    steps, probes = lambda_rows(0.01, 300.0, t_max=10.0)
    for r in steps + probes:
        r["threshold"] = 2.785 / r["lr"] * (1 + 0.01 * math.sin(r["step"]))
    cfg = base_config(loss="mse", model=mlp, optimizer={"name": "rk4", "lr": 0.2, "adaptive": True})
    write_run(root / "cohen_rk4", cfg, steps=steps, probes=probes)
    for opt in ("heavy_ball", "nesterov"):
        for lr in (0.005, 0.01):
            thr = 3.8 / lr if opt == "heavy_ball" else 3.8 / (2.8 * lr)
            steps, probes = lambda_rows(lr, thr, t_max=5.0)
            cfg = base_config(loss="mse", model=mlp, optimizer={"name": opt, "lr": lr})
            write_run(root / f"momentum_{opt}_{lr}", cfg, steps=steps, probes=probes)
    # Cohen et al. studies, as a sweep with zip overrides
    entries = []
    for i, (model, n) in enumerate(zip(STUDY_MODELS, STUDY_N)):
        steps, probes = lambda_rows(0.04, 50.0, t_max=8.0, seed=i)
        cfg = base_config(loss="mse", model=model, data={"n_train": n}, optimizer={"lr": 0.04})
        entries.append(
            ({"model": model, "data.n_train": n}, dict(config=cfg, steps=steps, probes=probes))
        )
    write_sweep(root / "studies", entries)
    # Lowell 2024: exponential Euler, depth-3 MLP, analysis rows and summaries
    entries = []
    for loss in ("cross_entropy", "mse"):
        for N in (300, 600, 1200):
            for seed in (0, 1):
                rows = l24_rows(N, seed)
                if loss == "cross_entropy":
                    peak_align = CE_ALIGN["a"] * N ** CE_ALIGN["b"]
                else:
                    peak_align = 0.001 * N**0.2 * (1 + 0.05 * (seed - 0.5))
                kept = [r for r in rows if r["step"] >= 10]
                summary = dict(
                    n_train=N,
                    steps=[r["step"] for r in kept],
                    peak_lambda_1=3.0 * N**0.5,
                    peak_alignment=peak_align,
                    counterfactual_lambda_G=[0.5 * rows[0]["lambda_G"] for _ in kept],
                    counterfactual_stable_lr=[4.0 / rows[0]["lambda_G"] for _ in kept],
                    lr=1.0,
                )
                model = {"name": "mlp", "width": 16, "depth": 3, "activation": "elu"}
                cfg = base_config(
                    loss=loss,
                    data={"name": "dice", "n_train": N},
                    model={**model, "init": "xavier", "init_seed": seed},
                    optimizer={"name": "exp_euler", "lr": 1.0},
                    probe={"enabled": False},
                )
                steps = [
                    dict(
                        step=s,
                        time=s * 0.01,
                        lr=0.01,
                        loss=1.0 / (1 + s),
                        sharpness=3.0 * N**0.5 * min(1.0, (s + 20) / 500),
                    )
                    for s in range(0, 1000, 20)
                ]
                over = {"data.n_train": N, "model.init_seed": seed, "loss": loss}
                entries.append(
                    (
                        over,
                        dict(
                            config=cfg,
                            steps=steps,
                            analysis=rows,
                            results={"analysis_summary": summary},
                        ),
                    )
                )
    write_sweep(root / "l24", entries)
    # a bare run: per-step loss only
    bare = [dict(step=s, time=0.01 * s, lr=0.01, loss=1.0, grad_norm=1.0) for s in range(20)]
    write_run(root / "bare", base_config(name="bare", probe={"enabled": False}), steps=bare)
    (root / "not_a_run").mkdir()
    return root


@pytest.fixture(scope="module")
def runs(root):
    return load_runs(root)


def pick(runs, *prefixes):
    """The runs whose directory (or sweep directory) name starts with one of ``prefixes``."""
    out = []
    for r in runs:
        name = r.path.parts[-3] if r.path.parent.name == "runs" else r.name
        if any(name.startswith(p) for p in prefixes):
            out.append(r)
    return out


def check_files(files, base):
    assert [f.suffix for f in files] == [".png", ".pdf"]
    assert all(f.with_suffix("") == base for f in files)
    assert files[0].read_bytes()[:8] == PNG and files[0].stat().st_size > 5000
    assert files[1].read_bytes()[:4] == PDF


# ---------------------------------------------------------------- load_runs
def test_load_runs_sweep_run_dir_list_and_bad_paths(root, tmp_path):
    grid = load_runs(root / "grid")
    assert len(grid) == 6 and all(isinstance(r, RunData) for r in grid)
    assert {r.lr for r in grid} == {0.03, 0.01, 0.003}
    assert all(set(r.overrides) == {"model", "optimizer.lr"} for r in grid)
    assert {r.arch for r in grid} == {"AlexNet-ReLU", "VGG-11-Tanh"}
    one = load_runs(grid[0].path)  # a run inside a sweep keeps its overrides
    assert len(one) == 1 and one[0].overrides == grid[0].overrides
    assert one[0].status["status"] == "completed" and one[0].summary is None
    flow = load_runs(root / "flow_relu_500")[0]
    assert flow.overrides == {} and flow.n_train == 500 and flow.cusp["lambda_1"] == 28.0
    assert flow.summary["n_train"] == 500 and flow.is_flow and len(flow.steps) == 300
    with pytest.warns(UserWarning, match="no such file"):
        mixed = load_runs([root / "entering", root / "not_a_run", tmp_path / "nope", root / "grid"])
    assert len(mixed) == 7 and mixed[0].name == "entering"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StoreError, match="no runs found"):
            load_runs(tmp_path / "nope")
    with pytest.raises(StoreError, match="no runs found"):
        load_runs(root / "not_a_run")
    with pytest.raises(StoreError, match="no runs found"):
        load_runs([])


def test_load_runs_folder_of_sweeps_and_runs(runs):
    names = {r.name for r in runs}
    assert "bare" in names and "entering" in names and "junk" not in names
    assert len(runs) == 6 + 1 + 3 + 8 + 2 + 4 + 1 + 4 + 8 + 12 + 1
    assert len({r.path for r in runs}) == len(runs)


def test_run_properties(runs):
    by = {r.name: r for r in runs}
    assert by["classes_3"].n_top == 2 and by["classes_3"].n_classes == 3
    assert by["entering"].n_top == 9 and by["entering"].n_classes == 10
    assert by["bare"].n_top is None
    assert by["cohen_rk4"].is_flow and not by["cohen_mse_0.02"].is_flow
    assert by["table1_few"].arch == "VGG-16-ReLU"  # default activation of the model
    assert by["entering"].time_of(30) == pytest.approx(0.3)


# ---------------------------------------------------------------- registry and rendering
def test_registry_shapes():
    expected = {
        "l22_fig1",
        "l22_fig2",
        "l22_fig3",
        "l22_fig4",
        "l22_fig5",
        "l22_fig6",
        "cohen_sharpness",
        "cohen_flow_vs_gd",
        "cohen_momentum",
        "cohen_studies",
        "l24_gauss_newton",
        "l24_layerwise",
        "l24_factors",
        "l24_ratios",
        "l24_counterfactual",
    }
    assert set(FIGURES) == expected and set(TABLES) == {"l22_table1", "l24_table2"}
    for name, spec in {**FIGURES, **TABLES}.items():
        assert spec.name == name and spec.paper and spec.caption
        assert callable(spec.func) and callable(spec.needs)
        assert spec.func.__doc__ and any(p in spec.func.__doc__ for p in ("Lowell", "Cohen"))


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_renders_from_all_runs(runs, tmp_path, name):
    spec = FIGURES[name]
    assert spec.needs(runs) is None
    files = spec(runs, tmp_path / name)
    check_files(files, tmp_path / name)


SUBSETS = {
    "l22_fig1": ("grid",),
    "l22_fig2": ("classes_",),
    "l22_fig3": ("grid",),
    "l22_fig4": ("grid", "entering"),
    "l22_fig5": ("flow_",),
    "l22_fig6": ("flow_relu",),
    "cohen_sharpness": ("cohen_mse", "cohen_cross"),
    "cohen_flow_vs_gd": ("cohen_rk4", "cohen_mse"),
    "cohen_momentum": ("momentum_",),
    "cohen_studies": ("studies",),
    "l24_gauss_newton": ("l24",),
    "l24_layerwise": ("l24",),
    "l24_factors": ("l24",),
    "l24_ratios": ("l24",),
    "l24_counterfactual": ("l24",),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_renders_from_its_experiment(runs, tmp_path, name):
    sub = pick(runs, *SUBSETS[name])
    assert sub and FIGURES[name].needs(sub) is None
    out = tmp_path / "sub" / f"{name}.png"  # a suffix is replaced
    check_files(FIGURES[name].func(sub, out), tmp_path / "sub" / name)


@pytest.mark.parametrize("name", sorted(FIGURES) + sorted(TABLES))
def test_needs_gives_a_reason_for_runs_without_the_data(runs, name):
    spec = FIGURES.get(name) or TABLES[name]
    bare = pick(runs, "bare")
    for subset in ([], bare):
        reason = spec.needs(subset)
        assert isinstance(reason, str) and len(reason) > 10
    with pytest.raises(ValueError, match=".{10}"):
        spec.func(bare, "/nonexistent/x") if name in FIGURES else spec.func(bare)


def test_needs_distinguishes_experiments(runs):
    grid = pick(runs, "grid")
    assert FIGURES["l22_fig1"].needs(grid) is None
    for name in ("l22_fig6", "cohen_momentum", "l24_factors", "l24_counterfactual"):
        assert isinstance(FIGURES[name].needs(grid), str), name
    assert "flow" in FIGURES["cohen_flow_vs_gd"].needs(pick(runs, "cohen_mse"))
    assert "GD" in FIGURES["cohen_flow_vs_gd"].needs(pick(runs, "cohen_rk4"))
    assert isinstance(TABLES["l24_table2"].needs(grid), str)
    assert TABLES["l22_table1"].needs(pick(runs, "l24")) is not None


def test_figure4_uses_the_densest_probed_run(runs):
    run, n_top = densest(fig4_candidates(runs))
    assert run.name == "entering" and n_top == 9


def test_peak_lambda_ignores_the_transient_and_is_linear_in_N(runs):
    relu = sorted(pick(runs, "flow_relu"), key=lambda r: r.n_train)
    peaks = [peak_lambda_1(r) for r in relu]
    assert peaks == pytest.approx([0.05 * r.n_train + 4 for r in relu], rel=1e-3)
    fit = linear_fit([r.n_train for r in relu], peaks)
    assert fit.slope == pytest.approx(0.05, rel=1e-3) and fit.r2 == pytest.approx(1.0, abs=1e-9)
    tanh = pick(runs, "flow_tanh_250")[0]
    assert peak_lambda_1(tanh) == pytest.approx(0.02 * 250 + 11, rel=1e-3)
    assert peak_lambda_1(tanh, transient=0) == pytest.approx(5 * (0.02 * 250 + 10))


def test_table1_matches_hand_computation(runs):
    text = TABLES["l22_table1"](pick(runs, "grid", "table1_"))
    lines = text.splitlines()
    assert lines[0].startswith("| η | Architecture |")
    # probes with ρ_9 > 0.7: ΔL_top = 0.002, 0.004, 0.006 (mean 0.004, sample std 0.002),
    # ΔL_bulk = −0.001, −0.002, −0.003 (mean −0.002, std 0.001); ρ = 0.5 and NaN excluded
    assert "| 0.02 | AlexNet-Tanh | 0.004 (0.002) | -0.002 (0.001) | 3 |" in lines
    assert "Omitted" in text and "VGG-16-ReLU η=0.05" in text  # only 2 probes qualify
    grid = pick(runs, "grid")
    r = next(x for x in grid if x.arch == "VGG-11-Tanh" and x.lr == 0.01)
    keep = [p for p in r.probes if p["rho_9"] > 0.7]
    top = np.array([p["dL_top"] for p in keep])
    bulk = np.array([p["dL_bulk"] for p in keep])
    row = (
        f"| 0.01 | VGG-11-Tanh | {top.mean():.4g} ({top.std(ddof=1):.4g}) | "
        f"{bulk.mean():.4g} ({bulk.std(ddof=1):.4g}) | {len(keep)} |"
    )
    assert row in lines
    # runs sharing architecture and η are told apart by what else differs
    everything = TABLES["l22_table1"](runs)
    assert "| 0.01 | AlexNet-ReLU [classes=[0,1]] |" in everything
    assert "| 0.01 | AlexNet-ReLU [entering] |" in everything
    # rows grouped by architecture, η descending
    etas = [float(x.split("|")[1]) for x in lines[2:] if x.startswith("| ") and "AlexNet-ReLU" in x]
    assert etas == sorted(etas, reverse=True) == [0.03, 0.01, 0.003]


def test_table1_selection_options(runs, root, tmp_path):
    hand = pick(runs, "table1_hand")
    # t ≥ 0.4 leaves probes 2 and 3 with ρ_9 > 0.7: too few, so the run is omitted
    text = TABLES["l22_table1"](hand, min_time=0.4)
    assert "Omitted (fewer than 3 probes with ρ_(n_c−1) > 0.7 and t ≥ 0.4)" in text
    # no ρ condition, t ≥ 0.2: probes 1–4, the NaN-ρ probe included
    text = TABLES["l22_table1"](hand, min_rho=None, min_time=0.2)
    top = np.array([0.002, 0.004, 0.006, 9.0])
    bulk = np.array([-0.001, -0.002, -0.003, -1.0])
    row = (
        f"| 0.02 | AlexNet-Tanh | {top.mean():.4g} ({top.std(ddof=1):.4g}) | "
        f"{bulk.mean():.4g} ({bulk.std(ddof=1):.4g}) | 4 |"
    )
    assert row in text.splitlines() and "Probes: t ≥ 0.2." in text
    assert "Probes: every probe." in TABLES["l22_table1"](hand, min_rho=None)
    # a numeric threshold is used as given: ρ_9 > 0.4 keeps probes 0–3 (ρ = 0.5 too) ...
    text = TABLES["l22_table1"](hand, min_rho=0.4)
    top4 = np.array([9.0, 0.002, 0.004, 0.006])
    assert f"| {top4.mean():.4g} ({top4.std(ddof=1):.4g}) |" in text and "| 4 |" in text
    # ... and a NaN ρ (negative λ) fails every number, 0 included (5 probes if it passed)
    assert "| 4 |" in TABLES["l22_table1"](hand, min_rho=0)
    for name in ("min_time", "min_rho"):
        for bad in (-1, "3", math.inf, True):
            with pytest.raises(ValueError, match=f"{name} must be a non-negative number"):
                TABLES["l22_table1"](hand, **{name: bad})
    # the same through `eoslab plot --kw`
    from eoslab.cli import main

    out = tmp_path / "t"
    hand_dir = str(root / "table1_hand")
    args = ["plot", hand_dir, "--figure", "l22_table1", "--out", str(out)]
    assert main([*args, "--kw", "min_rho=none", "--kw", "min_time=0.2"]) == 0
    assert row in (out / "l22_table1.md").read_text().splitlines()
    with pytest.raises(SystemExit, match="has no option 'foo'; its options: min_rho, min_time"):
        main([*args, "--kw", "foo=1"])
    with pytest.raises(SystemExit, match="expects KEY=VALUE"):
        main([*args, "--kw", "min_time"])
    with pytest.raises(SystemExit, match="min_time must be a non-negative number"):
        main([*args, "--kw", "min_time=-2"])
    for bad in ("min_time=", "min_time=[", "min_rho=abc"):
        with pytest.raises(SystemExit, match="needs a number or none"):
            main([*args, "--kw", bad])
    (out / "l22_table1.md").unlink()  # the next call must write it again
    assert main([*args, "--kw", "min_rho=null", "--kw", "min_time=2e-1"]) == 0
    assert row in (out / "l22_table1.md").read_text().splitlines()
    with pytest.raises(SystemExit, match="go to one table"):
        main(["plot", hand_dir, "--kw", "min_time=1", "--out", str(out)])


def test_table2_power_law(runs):
    text = TABLES["l24_table2"](pick(runs, "l24"))
    lines = text.splitlines()
    assert lines[0] == "| Dataset | Criterion | Quantity | a | b | R² | runs | N |"
    ce = [x for x in lines if "| dice | cross-entropy | peak alignment (V) |" in x]
    assert ce == [
        "| dice | cross-entropy | peak alignment (V) | 0.002 | 0.400 | 1.000 | 6 | 300–1200 |"
    ]
    lam = [x for x in lines if "| dice | MSE | peak λ_1 |" in x]
    assert lam == ["| dice | MSE | peak λ_1 | 3 | 0.500 | 1.000 | 6 | 300–1200 |"]
    mse = next(x for x in lines if "| dice | MSE | peak alignment (V) |" in x).split("|")
    assert float(mse[5]) == pytest.approx(0.2, abs=0.01) and 0.5 < float(mse[6]) < 1.0
    fit = power_law_fit([1, 2, 4], [3, 3 * 2**0.7, 3 * 4**0.7])
    assert (fit.a, fit.b, fit.r2) == pytest.approx((3.0, 0.7, 1.0))


def test_peak_alignment_falls_back_to_analysis_rows(runs):
    r = copy.copy(pick(runs, "l24")[0])
    r.summary = None
    expected = max(x["comp1_V"] for x in r.analysis if x["step"] >= 10)
    assert peak_alignment(r) == pytest.approx(expected)


def test_study_labels_name_what_differs(runs):
    studies = pick(runs, "studies")
    labels = study_labels(studies)
    assert sorted(labels) == sorted(
        [
            "width=50",
            "width=100",
            "width=400",
            "depth=2",
            "depth=4",
            "n_train=500",
            "n_train=2000",
            "init=kaiming, parametrization=ntk",
        ]
    )
    # without overrides the differing config entries are used
    plain = [copy.copy(r) for r in pick(runs, "cohen_mse", "cohen_cross")]
    for r in plain:
        r.overrides = {}
    # ties go to the first run's value: cross-entropy, η = 0.02
    assert [r.name for r in plain] == [
        "cohen_cross_entropy_0.02",
        "cohen_cross_entropy_0.04",
        "cohen_mse_0.02",
        "cohen_mse_0.04",
    ]
    assert study_labels(plain) == ["baseline", "lr=0.04", "loss=mse", "loss=mse, lr=0.04"]


def test_render_all(runs, tmp_path):
    done = papers.render_all(pick(runs, "grid", "entering", "table1_"), tmp_path / "all")
    assert set(done) == set(FIGURES) | set(TABLES)
    assert isinstance(done["l24_factors"], str) and isinstance(done["l22_fig6"], str)
    assert [p.name for p in done["l22_fig1"]] == ["l22_fig1.png", "l22_fig1.pdf"]
    md = done["l22_table1"][0].read_text()
    assert "0.004 (0.002)" in md
    with pytest.raises(KeyError, match="unknown"):
        papers.render_all(runs, tmp_path, names=["fig99"])
