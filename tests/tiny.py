"""The tiny run shared by the run, config, store, reliability and live-view tests.

A digits subset, a small tanh MLP, MSE, GD: a run of a few hundred milliseconds.
"""

import json
import math

from eoslab.run import parse_config

# a run that takes a few hundred milliseconds: digits subset, a small tanh MLP, MSE, GD
TINY = {
    "name": "tiny",
    "data": {"n_train": 120, "classes": [0, 1, 2]},
    "model": {"width": 12, "depth": 2, "activation": "tanh", "init": "pytorch_default"},
    "optimizer": {"name": "gd", "lr": 0.2},
    "probe": {"every": 10, "k": 4},
    "snapshot_every": 20,
    "checkpoint_every": 7,
    "stop": {"max_steps": 40},
}


def tiny_raw(base=None, **over):
    """A copy of ``base`` (default TINY) with ``section__field=value`` overrides."""
    raw = json.loads(json.dumps(TINY if base is None else base))
    for key, value in over.items():
        node = raw
        *path, last = key.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return raw


def cfg_of(**over):
    """The validated TINY config with overrides (see :func:`tiny_raw`)."""
    return parse_config(tiny_raw(**over))


def strip_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall"} for r in rows]


def same_rows(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(strip_wall(a), strip_wall(b)):
        assert ra.keys() == rb.keys()
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and math.isnan(va):
                assert isinstance(vb, float) and math.isnan(vb), k
            else:
                assert va == vb, (k, va, vb)
