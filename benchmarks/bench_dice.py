"""Dice generation benchmark: all 6 × 20,000 images of ``docs/methods.md`` §9 at 32 × 32.

Target: under 2 minutes on 2 CPU cores. Run with
``python benchmarks/bench_dice.py`` (``--help`` for options). It times, once each:

1. a per-class breakdown on a small sample (``--breakdown-n`` images per class);
2. ``generate_dice(n_per_class)`` — sampling, rendering and the conversion to a float
   ``Dataset`` — the number the target refers to;
3. writing the cache file (compressed ``.npz`` + SHA-256) and reading it back with checksum
   verification, in a temporary folder (skip with ``--no-cache``).

It prints wall times and images per second; ``--json PATH`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eoslab.data.dice import (
    DICE_CLASSES,
    _meta,
    _read_cache,
    _write_cache,
    dice_cache_path,
    generate_dice,
    generate_dice_class,
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=20000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breakdown-n", type=int, default=1000, help="0 skips the breakdown")
    parser.add_argument("--no-cache", action="store_true", help="skip the cache write/read")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    n_total = 6 * args.n_per_class
    result = {
        "n_per_class": args.n_per_class,
        "n_images": n_total,
        "size": args.size,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "load_average": os.getloadavg(),
    }
    print(
        f"dice benchmark: {n_total} images of {args.size}x{args.size}, torch {torch.__version__}"
        f", {torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.2f}"
    )

    if args.breakdown_n > 0:
        per_class = {}
        for name in DICE_CLASSES:
            t0 = time.perf_counter()
            generate_dice_class(name, args.breakdown_n, size=args.size, seed=args.seed)
            dt = time.perf_counter() - t0
            per_class[name] = args.breakdown_n / dt
            print(f"  {name:>5}: {args.breakdown_n / dt:9.0f} images/s")
        result["breakdown_images_per_s"] = per_class

    t0 = time.perf_counter()
    ds = generate_dice(args.n_per_class, size=args.size, seed=args.seed)
    dt = time.perf_counter() - t0
    result.update(generate_s=dt, generate_images_per_s=n_total / dt)
    print(f"generate_dice: {dt:.1f} s, {n_total / dt:.0f} images/s (target < 120 s)")

    if not args.no_cache:
        X = (ds.X[:, 0] * 255).round().to(torch.uint8).numpy()
        y = ds.y.numpy()
        meta = _meta(args.size, args.n_per_class, args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = dice_cache_path(
                size=args.size, n_per_class=args.n_per_class, seed=args.seed, cache_dir=tmp
            )
            t0 = time.perf_counter()
            _write_cache(path, X, y, meta)
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            X2, _ = _read_cache(path, meta)
            t_read = time.perf_counter() - t0
            mib = path.stat().st_size / 2**20
        assert np.array_equal(X, X2)
        result.update(cache_write_s=t_write, cache_read_s=t_read, cache_mib=mib)
        print(f"cache: write {t_write:.1f} s, verified read {t_read:.1f} s, {mib:.1f} MiB")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
