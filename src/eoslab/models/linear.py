"""Deep linear networks: f(x) = W_L ⋯ W_2 W_1 x.

Cohen et al. 2021 (slides: "Simplest architecture with this behavior: Deep (20) Linear
Network"; their code, github.com/locuslab/edge-of-stability ``src/archs.py``
``make_deeplinear(L=20, d=50)``: 20 bias-free 50×50 Linear layers with
``nn.init.xavier_normal_``) show progressive sharpening and the edge of stability without
any nonlinearity.

:class:`DeepLinear` is an :class:`~eoslab.models.mlp.MLP` with the identity activation and,
by default, no biases, so it inherits the MLP's forward (``return_preactivations``,
flattening), ``linear_layers()``, the NTK parametrisation and the layerwise analysis of
``docs/methods.md`` §5 (σ' ≡ 1, so K_ℓ = W_{ℓ+1}). Its own initialisations make the end-to-end
matrix well conditioned (Saxe et al. 2014, "Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks"; Hardt & Ma 2017 and Bartlett et al. 2018 for
identity initialisation).
"""

from __future__ import annotations

import torch

from eoslab.models.init import INIT_SCHEMES, init_model
from eoslab.models.mlp import MLP

__all__ = ["DEEP_LINEAR_INITS", "DeepLinear"]

DEEP_LINEAR_INITS = ("orthogonal", "identity", *INIT_SCHEMES)
"""Initialisations of :class:`DeepLinear`: its own ``orthogonal`` and ``identity`` (scaled by
``init_scale``) and every scheme of :data:`~eoslab.models.init.INIT_SCHEMES` (through
:func:`~eoslab.models.init.init_model` with the identity gain 1)."""


def _orthogonal(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """A Haar-random [m, n] matrix with orthonormal rows (m ≤ n) or columns (m > n), float64.

    QR of a Gaussian matrix with the signs of R's diagonal moved into Q (Mezzadri 2007), so the
    distribution is exactly Haar, not merely orthogonal.
    """
    m, n = shape
    a = torch.randn(max(m, n), min(m, n), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)  # q [max, min] with orthonormal columns
    q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
    return q if m >= n else q.T


class DeepLinear(MLP):
    """A deep linear network f(x) = c_L W_L ⋯ c_1 W_1 x (+ biases if ``bias``).

    Layer sizes are those of :class:`~eoslab.models.mlp.MLP`: ``depth`` Linear layers,
    in_dim → width → … → width → n_out (``depth=1``: a single in_dim → n_out layer).
    Parameter names are ``layers.{ℓ−1}.weight`` (and ``.bias``). Cohen et al.'s network is
    ``DeepLinear(50, 50, depth=20, width=50, init="xavier")``.

    Initialisations (``init``; all seeded, drawn in float64 on a CPU generator, biases zero
    except for ``"pytorch_default"``; with the NTK parametrisation the stored weights are
    the effective weights divided by c_ℓ, as :func:`~eoslab.models.init.init_model` does):

    - ``"xavier"`` (default): W ~ N(0, 2/(fan_in + fan_out)), Cohen et al.'s
      ``xavier_normal_``. ``"kaiming"``: N(0, 1/fan_in). ``"pytorch_default"``: U(±1/√fan_in).
      For these, cond(W_L ⋯ W_1) grows exponentially with depth (products of Gaussian
      matrices).
    - ``"orthogonal"``: W_ℓ = s·Q_ℓ with Q_ℓ Haar-random with orthonormal rows (fan_out ≤
      fan_in) or columns (fan_out > fan_in). When in_dim ≥ width ≥ n_out (in particular for
      square layers) every row-orthonormal product is row-orthonormal, so **all n_out
      singular values of the end-to-end matrix equal s^L** (condition number 1). Otherwise
      (width > in_dim or n_out > width) a random subspace is lost between layers and the
      singular values are at most s^L.
    - ``"identity"``: W_ℓ = s·I (rectangular: ones on the main diagonal), deterministic. The
      end-to-end matrix is s^L on the first min(in_dim, width, n_out) diagonal entries and
      zero elsewhere; layers are identical, a symmetric starting point.

    ``init_scale`` s applies to ``"orthogonal"`` and ``"identity"`` only; s^L is the
    end-to-end gain (s = 1 keeps the product an isometry on its range).

    Args:
        in_dim: D, the number of input features after flattening.
        n_out: number of outputs.
        depth: L ≥ 1, the number of Linear layers (20 in Cohen et al.).
        width: units of every hidden layer.
        bias: whether the layers have biases (Cohen et al.: none).
        init: a key of :data:`DEEP_LINEAR_INITS`.
        init_scale: s for ``"orthogonal"`` and ``"identity"``.
        parametrization: ``"standard"`` or ``"ntk"`` (c_ℓ = 1/√fan_in, the identity gain).
        dtype: parameter dtype (default: ``torch.get_default_dtype()``).
        device: parameter device (default: CPU).
        seed: seed of the initialisation.

    Raises:
        ValueError: on a non-positive size or init_scale, an unknown init or parametrisation,
            or ``init_scale`` ≠ 1 with a scheme that does not use it.
    """

    def __init__(
        self,
        in_dim: int,
        n_out: int,
        *,
        depth: int = 20,
        width: int,
        bias: bool = False,
        init: str = "xavier",
        init_scale: float = 1.0,
        parametrization: str = "standard",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
    ):
        self._check_init(init, init_scale)
        super().__init__(
            in_dim,
            n_out,
            depth=depth,
            width=width,
            activation="identity",
            bias=bias,
            parametrization=parametrization,
            dtype=dtype,
            device=device,
            seed=seed,
        )
        self.init = init
        self.init_scale = float(init_scale)
        if init != "pytorch_default":  # the MLP constructor has drawn that one already
            self.initialize(init, seed=seed, init_scale=init_scale)

    @staticmethod
    def _check_init(init: str, init_scale: float) -> None:
        if init not in DEEP_LINEAR_INITS:
            raise ValueError(f"unknown init {init!r}; known: {list(DEEP_LINEAR_INITS)}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale!r}")
        if init not in ("orthogonal", "identity") and init_scale != 1.0:
            raise ValueError(
                f"init_scale applies to the 'orthogonal' and 'identity' inits only, not {init!r}"
            )

    def initialize(self, init: str, *, seed: int, init_scale: float = 1.0) -> DeepLinear:
        """Re-initialise in place with ``init`` (class docstring) from ``seed``; return self.

        Raises:
            ValueError: as the constructor does for ``init`` and ``init_scale``.
        """
        self._check_init(init, init_scale)
        if init in INIT_SCHEMES:
            return init_model(self, init, seed=seed)
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for layer, c in zip(self.linear_layers(), self.weight_multipliers):
                shape = tuple(layer.weight.shape)
                if init == "orthogonal":
                    w = _orthogonal(shape, generator)
                else:
                    w = torch.eye(*shape, dtype=torch.float64)
                w = w * (init_scale / c)
                layer.weight.copy_(w.to(dtype=layer.weight.dtype, device=layer.weight.device))
                if layer.bias is not None:
                    layer.bias.zero_()
        return self

    def end_to_end_matrix(self) -> torch.Tensor:
        """A = (c_L W_L) ⋯ (c_1 W_1) [n_out, in_dim], the network's linear part.

        f(x) = A x when ``bias`` is False; with biases f(x) = A x + f(0).
        """
        a = None
        for layer, c in zip(self.linear_layers(), self.weight_multipliers):
            w = layer.weight if c == 1.0 else layer.weight * c
            a = w if a is None else w @ a
        return a

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return (
            f"in_dim={self.in_dim}, n_out={self.n_out}, depth={self.depth}, width={self.width}, "
            f"bias={self.has_bias}, init={self.init!r}, init_scale={self.init_scale}, "
            f"parametrization={self.parametrization!r}"
        )
