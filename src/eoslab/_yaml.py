r"""YAML reading with the YAML 1.2 core schema's numbers, and no arbitrary objects.

PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent: ``1e-3``, ``5e4``
and ``1E-3`` are *strings* there, so ``lr: 1e-3`` would fail validation as "not a number".
YAML 1.2's core schema (the one JSON, most editors and every other YAML library use) reads
them as floats. :func:`safe_load` is ``yaml.safe_load`` (no Python objects, no pickle) with
the float rule of the YAML 1.2 core schema:

    [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?   and ±.inf, .nan

Integers and booleans are read as before (``5`` is an int, ``true`` a bool). Every file and
``--set`` value eoslab reads as configuration goes through this one loader.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["safe_load"]

# The YAML 1.2 core-schema float, minus bare integers (which stay ints).
_FLOAT_12 = re.compile(
    r"""^(?![-+]?[0-9]+$)
    (?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose implicit float rule is YAML 1.2's (see the module docstring)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node)
    low = text.lower()
    if low in (".inf", "+.inf"):
        return float("inf")
    if low == "-.inf":
        return float("-inf")
    if low == ".nan":
        return float("nan")
    return float(text)


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def safe_load(text: str) -> Any:
    """Parse YAML ``text`` like ``yaml.safe_load``, with YAML 1.2 core-schema floats.

    ``1e-3``, ``5e4``, ``1.0e-3``, ``1E-3``, ``.5`` and ``1.`` are floats; ``5`` stays an int.

    Raises:
        yaml.YAMLError: for text that is not YAML.
    """
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
