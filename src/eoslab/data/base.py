"""The in-memory data set every loader returns, and the seeded ways to cut it down.

The toolkit trains full-batch (``docs/methods.md`` §1: L(θ) = (1/N) Σ_n ℓ(f(x_n; θ), y_n) over a
finite training set T), so a data set is simply two tensors, X [N, ...] and integer labels
y [N], plus the class names and a record of where the data came from. Every operation
returns a *new* :class:`Dataset` and appends a line to its provenance, so a run can state
exactly which samples it saw.

The experiments of ``docs/methods.md`` §8 need three cuts, all seeded:

- :meth:`Dataset.subset` — random subsets of a chosen size N (Lowell 2022's exact-flow runs
  on subsets of varying N; Lowell 2024's "multiple randomly selected subsets of each of the
  training datasets, varying the size by factors of 2"), balanced across classes by default.
- :meth:`Dataset.select_classes` — keep some classes and relabel them 0..n_c−1 (Lowell 2022's
  class-count runs with 2, 3 and 5 CIFAR-10 classes).
- :func:`train_test_split` — a stratified split, for data sets that ship without one.

Randomness comes only from explicit integer seeds through a CPU ``torch.Generator``
(``docs/architecture.md`` rule 6), so the same seed selects the same samples on every machine and
device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["Dataset", "Provenance", "train_test_split"]


@dataclass(frozen=True)
class Provenance:
    """Where a data set came from and what was done to it.

    Attributes:
        source: origin of the raw data (authors, repository, URL).
        licence: licence the data are distributed under.
        checksum: digest of the raw file as loaded (e.g. ``"sha256:…"``); empty for
            generated data.
        notes: free text (how the file was made, caveats).
        steps: the derivations applied since loading, oldest first, each as a call
            (e.g. ``"subset(n=100, seed=0, balanced=True)"``).
    """

    source: str
    licence: str
    checksum: str = ""
    notes: str = ""
    steps: tuple[str, ...] = ()

    def with_step(self, step: str) -> Provenance:
        """A copy with ``step`` appended to :attr:`steps`."""
        return dataclasses.replace(self, steps=(*self.steps, step))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled data set held as tensors: inputs X [N, ...] and class labels y [N].

    Instances are immutable: every method returns a new ``Dataset`` (sharing storage with
    the old one where no copy is needed) and never writes into X or y.

    Attributes:
        X: inputs, [N, ...] (e.g. [N, C, H, W] images or [N, D] vectors).
        y: class labels, int64 [N], each in 0..n_classes−1.
        classes: class names; label k means ``classes[k]``.
        provenance: source, licence, checksum and the derivation steps.
        name: short name of the data set (e.g. ``"digits"``).

    Raises:
        ValueError: if X and y disagree in length, y is not a 1-D int64 tensor, labels lie
            outside 0..len(classes)−1, or class names repeat.
    """

    X: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    provenance: Provenance
    name: str = field(default="dataset")

    def __post_init__(self):
        if not isinstance(self.X, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise TypeError(
                f"X and y must be torch tensors, got {type(self.X).__name__} "
                f"and {type(self.y).__name__}"
            )
        if self.X.dim() < 1:
            raise ValueError(
                f"X must have a leading sample dimension, got shape {tuple(self.X.shape)}"
            )
        if self.y.dim() != 1:
            raise ValueError(f"y must be 1-D [N], got shape {tuple(self.y.shape)}")
        if self.y.dtype != torch.int64:
            raise ValueError(f"y must be int64 class labels, got dtype {self.y.dtype}")
        if self.X.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"X has {self.X.shape[0]} samples (shape {tuple(self.X.shape)}) but y has "
                f"{self.y.shape[0]}"
            )
        classes = [str(c) for c in self.classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be distinct, got {classes}")
        object.__setattr__(self, "classes", classes)
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= len(classes)):
            raise ValueError(
                f"labels must lie in 0..{len(classes) - 1} for {len(classes)} classes, got "
                f"range {int(self.y.min())}..{int(self.y.max())}"
            )

    # ------------------------------------------------------------------ basic facts

    def __len__(self) -> int:
        """N, the number of samples."""
        return self.X.shape[0]

    @property
    def n_classes(self) -> int:
        """n_c, the number of classes (``len(classes)``, whether or not all occur)."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, ``X.shape[1:]``."""
        return tuple(self.X.shape[1:])

    def class_counts(self) -> torch.Tensor:
        """Number of samples of each class, int64 [n_classes]."""
        return torch.bincount(self.y, minlength=self.n_classes)

    def one_hot(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """onehot(y) [N, n_classes], the MSE target of ``docs/methods.md`` §1.

        Args:
            dtype: dtype of the result; by default X's dtype when X is floating point,
                otherwise int64.
        """
        if dtype is None:
            dtype = self.X.dtype if self.X.is_floating_point() else torch.int64
        return torch.nn.functional.one_hot(self.y, self.n_classes).to(dtype)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, N={len(self)}, input_shape={self.input_shape}, "
            f"n_classes={self.n_classes}, dtype={self.X.dtype}, device={self.X.device})"
        )

    # ------------------------------------------------------------------ derivations

    def _derive(self, step: str, **changes) -> Dataset:
        return dataclasses.replace(self, provenance=self.provenance.with_step(step), **changes)

    def _take(self, index: torch.Tensor, step: str) -> Dataset:
        index = index.to(self.X.device)
        return self._derive(step, X=self.X[index], y=self.y[index.to(self.y.device)])

    def subset(self, n: int, *, seed: int, balanced: bool = True) -> Dataset:
        """A seeded random subset of n samples, in their original order.

        Balanced (default): every class gets ⌊n/n_c⌋ samples and n mod n_c classes get one
        more; which classes get the extra sample is drawn from the seed. Unbalanced: n
        samples drawn uniformly without replacement.

        Subsets drawn with the same seed are nested: ``subset(n1, seed=s)`` ⊆
        ``subset(n2, seed=s)`` whenever n1 ≤ n2, so a sweep over data-set sizes
        (``docs/methods.md`` §3, §8) grows one sample pool rather than drawing unrelated ones.

        Args:
            n: number of samples, 1 ≤ n ≤ N.
            seed: integer seed of the CPU ``torch.Generator`` that draws the samples.
            balanced: equal counts per class as far as n allows.

        Returns:
            A new Dataset with the same classes.

        Raises:
            ValueError: if n is outside 1..N, or (balanced) some class has too few samples.
        """
        N = len(self)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= N:
            raise ValueError(
                f"subset size n must be an integer in 1..{N} (len of {self.name}), got {n!r}"
            )
        g = torch.Generator().manual_seed(int(seed))
        step = f"subset(n={n}, seed={seed}, balanced={balanced})"
        if not balanced:
            index = torch.randperm(N, generator=g)[:n]
            return self._take(index.sort().values, step)

        n_c = self.n_classes
        y = self.y.cpu()
        counts = torch.bincount(y, minlength=n_c)
        base, extra = divmod(n, n_c)
        # Draw everything that does not depend on n first, so subsets with one seed nest.
        class_order = torch.randperm(n_c, generator=g)
        per_class = [torch.nonzero(y == c).flatten() for c in range(n_c)]
        per_class = [idx[torch.randperm(idx.numel(), generator=g)] for idx in per_class]

        short = [c for c in range(n_c) if counts[c] < base]
        if short:
            details = ", ".join(f"{self.classes[c]!r} has {int(counts[c])}" for c in short)
            raise ValueError(
                f"cannot draw a balanced subset of n={n} from {self.name}: each of its "
                f"{n_c} classes needs at least {base} samples, but {details}; use a smaller n "
                "or balanced=False"
            )
        # The n mod n_c extra samples go to the first classes of the seeded order that can
        # spare one, so the per-class counts grow monotonically in n.
        take = [base] * n_c
        spare = [int(c) for c in class_order if counts[int(c)] > base]
        if len(spare) < extra:
            raise ValueError(
                f"cannot draw a balanced subset of n={n} from {self.name}: {extra} classes need "
                f"{base + 1} samples but only {len(spare)} have that many (class counts "
                f"{counts.tolist()}); use a smaller n or balanced=False"
            )
        for c in spare[:extra]:
            take[c] += 1
        index = torch.cat([per_class[c][: take[c]] for c in range(n_c)])
        return self._take(index.sort().values, step)

    def select_classes(self, classes: Sequence[str | int]) -> Dataset:
        """Keep only the given classes and relabel them 0..n_c−1 in the order given.

        As in Lowell 2022's class-count runs (``docs/methods.md`` §8): e.g.
        ``select_classes(["cat", "dog"])`` gives a 2-class data set with cat = 0, dog = 1.

        Args:
            classes: class names (str) or current integer labels; at least one, no repeats.

        Returns:
            A new Dataset whose ``classes`` are the selected names in the given order.

        Raises:
            ValueError: on an empty selection, an unknown class, or a repeated class.
        """
        if isinstance(classes, (str, int)):
            raise ValueError(f"classes must be a sequence of names or labels, got {classes!r}")
        if len(classes) == 0:
            raise ValueError("classes must name at least one class, got an empty sequence")
        labels = []
        for c in classes:
            if isinstance(c, str):
                if c not in self.classes:
                    raise ValueError(f"unknown class {c!r}; {self.name} has classes {self.classes}")
                labels.append(self.classes.index(c))
            elif isinstance(c, int) and not isinstance(c, bool):
                if not 0 <= c < self.n_classes:
                    raise ValueError(
                        f"class label {c} out of range 0..{self.n_classes - 1} for {self.name}"
                    )
                labels.append(c)
            else:
                raise ValueError(f"classes must be str names or int labels, got {c!r}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"classes must not repeat, got {list(classes)}")
        # old label -> new label, −1 for dropped classes
        relabel = torch.full((self.n_classes,), -1, dtype=torch.int64, device=self.y.device)
        relabel[torch.tensor(labels, device=self.y.device)] = torch.arange(
            len(labels), device=self.y.device
        )
        new_y = relabel[self.y]
        keep = torch.nonzero(new_y >= 0).flatten()
        names = [self.classes[k] for k in labels]
        return dataclasses.replace(
            self,
            X=self.X[keep.to(self.X.device)],
            y=new_y[keep],
            classes=names,
            provenance=self.provenance.with_step(f"select_classes({names})"),
        )

    def flatten(self) -> Dataset:
        """Inputs reshaped to [N, D] with D = prod(input_shape) (row-major, C-order)."""
        return self._derive("flatten()", X=self.X.reshape(len(self), -1))

    def feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and (population) standard deviation over the samples.

        Compute them on a training set and pass them to :meth:`standardize` of its test set
        so both are transformed identically.

        Returns:
            (mean, std), each of shape ``input_shape`` and X's dtype (float64 for integer X).

        Raises:
            ValueError: if the data set is empty.
        """
        if len(self) == 0:
            raise ValueError(f"feature_stats needs at least one sample; {self.name} is empty")
        X = self.X if self.X.is_floating_point() else self.X.to(torch.float64)
        return X.mean(dim=0), X.std(dim=0, correction=0)

    def standardize(
        self, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ) -> Dataset:
        """Per-feature standardisation x ↦ (x − mean) / std.

        With neither argument the statistics are this data set's own
        (:meth:`feature_stats`). Features with std = 0 (e.g. digits' always-blank corner
        pixels) are centred but not scaled, i.e. divided by 1.

        Args:
            mean: per-feature means, broadcastable to ``input_shape`` (e.g. from the
                training set's :meth:`feature_stats`).
            std: per-feature standard deviations, same shape rules; give both or neither.

        Returns:
            A new Dataset with floating-point X (float64 if X was integer).

        Raises:
            ValueError: if only one of mean/std is given or a shape does not broadcast.
        """
        if (mean is None) != (std is None):
            raise ValueError(
                "standardize needs both mean and std or neither, got "
                f"mean={'None' if mean is None else 'tensor'}, "
                f"std={'None' if std is None else 'tensor'}"
            )
        step = "standardize()" if mean is None else "standardize(mean, std)"
        X = self.X if self.X.is_floating_point() else self.X.to(torch.float64)
        if mean is None:
            mean, std = self.feature_stats()
        mean = torch.as_tensor(mean, dtype=X.dtype, device=X.device)
        std = torch.as_tensor(std, dtype=X.dtype, device=X.device)
        for arg, t in (("mean", mean), ("std", std)):
            try:
                shape = torch.broadcast_shapes(t.shape, self.input_shape)
            except RuntimeError:
                shape = None
            if shape != self.input_shape:
                raise ValueError(
                    f"{arg} of shape {tuple(t.shape)} does not broadcast to input_shape "
                    f"{self.input_shape}"
                )
        std = torch.where(std > 0, std, torch.ones_like(std))
        return self._derive(step, X=(X - mean) / std)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Dataset:
        """Move to ``device`` and cast X (only X; labels stay int64) to ``dtype``.

        Args:
            device: target device; None keeps the current one.
            dtype: floating dtype for X; None keeps the current one.

        Raises:
            ValueError: if dtype is not a floating-point dtype.
        """
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype applies to X and must be floating point, got {dtype}")
        X = self.X.to(device=device, dtype=dtype)
        y = self.y.to(device=device)
        if X is self.X and y is self.y:
            return self
        return self._derive(f"to(device={device}, dtype={dtype})", X=X, y=y)


def train_test_split(ds: Dataset, test_fraction: float, *, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded split, stratified by class.

    Each class c with N_c samples sends round(test_fraction · N_c) of them (drawn from the
    seed; Python's round, halves to even) to the test set and the rest to the training set,
    so class proportions are kept up to rounding. Both parts keep the original sample order.

    Args:
        ds: the data set to split.
        test_fraction: fraction of each class for the test set, 0 < test_fraction < 1.
        seed: integer seed of the CPU ``torch.Generator``.

    Returns:
        (train, test) Datasets.

    Raises:
        ValueError: if test_fraction is outside (0, 1) or either part would be empty.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    g = torch.Generator().manual_seed(int(seed))
    y = ds.y.cpu()
    train_idx, test_idx = [], []
    for c in range(ds.n_classes):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_test = int(round(float(test_fraction) * idx.numel()))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx, test_idx = torch.cat(train_idx), torch.cat(test_idx)
    if train_idx.numel() == 0 or test_idx.numel() == 0:
        raise ValueError(
            f"test_fraction={test_fraction} splits {ds.name} (N={len(ds)}) into "
            f"{train_idx.numel()} train and {test_idx.numel()} test samples; both must be non-empty"
        )
    step = f"train_test_split(test_fraction={test_fraction}, seed={seed})"
    train = ds._take(train_idx.sort().values, f"{step}[train]")
    test = ds._take(test_idx.sort().values, f"{step}[test]")
    return train, test
