"""farm/stats.py on a million rows: pure Python (the base install has no numpy), measured
against numpy/scipy doing the same statistics on the same data in the same run.

Figure: CPU seconds of AUC, ECE, Pearson and Spearman with farm.stats. Baseline: the same with
numpy/scipy (scipy.stats.rankdata for the Mann–Whitney AUC, np.corrcoef, scipy.stats.spearmanr,
a numpy ECE), including the list-to-array conversion. CPU time, not wall time, so a loaded
shared machine does not inflate it. Prints one JSON document.

    python benchmarks/stats.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.process_time()
    value = work()
    return value, time.process_time() - started


def _numpy_suite(scores: list[float], labels: list[bool], other: list[float]) -> dict[str, float]:
    import numpy as np
    from scipy import stats

    s, y, o = np.asarray(scores), np.asarray(labels, dtype=bool), np.asarray(other)
    ranks = stats.rankdata(s)
    positives, negatives = int(y.sum()), int((~y).sum())
    area = (ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    bins = np.minimum((s * 10).astype(int), 9)
    counts = np.bincount(bins, minlength=10)
    present = counts > 0
    mean_s = np.bincount(bins, weights=s, minlength=10)[present] / counts[present]
    mean_y = np.bincount(bins, weights=y.astype(float), minlength=10)[present] / counts[present]
    ece = float((counts[present] / len(s) * np.abs(mean_s - mean_y)).sum())
    return {
        "auc": float(area),
        "ece": ece,
        "pearson": float(np.corrcoef(s, o)[0, 1]),
        "spearman": float(stats.spearmanr(s, o).statistic),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy  # noqa: F401 - imported before timing: the baseline is charged for its work, not its import
    import scipy.stats  # noqa: F401

    from farm.stats import auc, expected_calibration_error, pearson, spearman

    rng = random.Random(args.seed)
    labels = [rng.random() < 0.4 for _ in range(args.rows)]
    scores = [round(rng.random() * 0.5 + (0.3 if y else 0.0), 3) for y in labels]  # 3 decimals: many ties
    other = [s + rng.gauss(0, 0.1) for s in scores]
    floats = [float(y) for y in labels]

    farm: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name, work in {
        "auc": lambda: auc(scores, labels),
        "ece": lambda: expected_calibration_error(scores, floats),
        "pearson": lambda: pearson(scores, other),
        "spearman": lambda: spearman(scores, other),
    }.items():
        farm[name], seconds[name] = _cpu(work)
    baseline, baseline_s = _cpu(lambda: _numpy_suite(scores, labels, other))
    total = sum(seconds.values())
    print(
        json.dumps(
            {
                "figure": f"CPU seconds for AUC, ECE, Pearson and Spearman on {args.rows:,} rows with farm.stats (pure Python)",
                "farm_cpu_s": round(total, 3),
                "farm_cpu_s_each": {k: round(v, 3) for k, v in seconds.items()},
                "baseline": "numpy/scipy on the same rows (vectorised; not available in the base install)",
                "baseline_cpu_s": round(baseline_s, 3),
                "ratio_farm_over_baseline": round(total / baseline_s, 2) if baseline_s else None,
                "agree": {k: abs(farm[k] - baseline[k]) < 1e-9 for k in farm},
                "values": {k: round(v, 6) for k, v in farm.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
