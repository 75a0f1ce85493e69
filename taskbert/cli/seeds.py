"""``taskbert run SPEC --seeds N``: the same spec trained with N seeds, and the spread.

Seeds are ``train.seed``, ``train.seed + 1``, ... ; seed ``K`` runs in ``<output>/seed-K``
(a complete run folder each). ``<output>/seeds.json`` holds every run's final metrics
and, for every numeric metric, the mean and the sample standard deviation (n - 1 in the
denominator; 0 when N is 1), so a gap between two specs can be read against the noise.
"""

import dataclasses
import math
import os
import statistics

from .. import io as tio
from ..errors import SpecError

SUMMARY_FILE = "seeds.json"
#: bookkeeping numbers in the final metrics that are not measurements
NOT_METRICS = ("step", "best_step", "epoch", "final")


def seed_specs(spec, n):
    """The N specs: seed and output folder changed, everything else the same."""
    if n < 1:
        raise SpecError(f"--seeds: {n} is not allowed; use 1 or more")
    out = []
    for k in range(n):
        seed = spec.train.seed + k
        out.append(dataclasses.replace(spec, train=dataclasses.replace(spec.train, seed=seed),
                                       output=os.path.join(spec.output, f"seed-{seed}")))
    return out


def summarize(runs):
    """``{"mean": {...}, "std": {...}, "n": {...}}`` over ``runs`` (``{seed: metrics}``),
    for every numeric metric that some run reports."""
    keys = []
    for metrics in runs.values():
        keys.extend(k for k, v in metrics.items() if k not in keys and k not in NOT_METRICS
                    and isinstance(v, float))   # an int is a count (QA's has_ans_total), not a score
    mean, std, count = {}, {}, {}
    for key in keys:
        values = [m[key] for m in runs.values() if isinstance(m.get(key), (int, float))
                  and math.isfinite(m[key])]
        count[key] = len(values)
        if not values:
            continue
        mean[key] = statistics.fmean(values)
        std[key] = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": count}


def run_seeds(spec, n, resume=False, overwrite=False, echo=print):
    """Train ``n`` seeds one after another; write and return the summary.

    Each seed folder follows ``--resume``/``--overwrite`` on its own; with ``--resume``
    a seed whose folder has no checkpoint yet starts fresh.
    """
    from ..run import execute
    from ..run_folder import check_output

    specs = seed_specs(spec, n)
    for s in specs:  # refuse before the first run trains, not after it
        check_output(s, resume=resume and os.path.isdir(os.path.join(s.output, "checkpoint")),
                     overwrite=overwrite)
    runs = {}
    for s in specs:
        echo(f"seed {s.train.seed}: {s.output}")
        again = resume and os.path.isdir(os.path.join(s.output, "checkpoint"))
        runs[s.train.seed] = execute(s, resume=again, overwrite=overwrite)
    summary = {"seeds": [s.train.seed for s in specs],
               "runs": {str(seed): m for seed, m in runs.items()}, **summarize(runs)}
    tio.atomic_json(os.path.join(spec.output, SUMMARY_FILE), summary)
    return summary


def summary_lines(summary):
    """``validation/accuracy 0.9100 ± 0.0141 (n=3)``, one line per metric."""
    return [f"{key} {summary['mean'][key]:.4f} ± {summary['std'][key]:.4f} (n={summary['n'][key]})"
            for key in summary["mean"]]
