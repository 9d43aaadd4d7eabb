"""The study memory estimate (`config.check_memory`) against a measurement: for each case, a
study in a fresh process at two sizes of n_tasks; the growth of its peak RSS per added episode
beside the estimate's, and their ratio.
Usage: python benchmarks/memory.py [--tasks 50 400]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = [  # (game, n_agents, estimators)
    ("vault", 3, ["shapley", "loo", "grpo"]),
    ("vault", 8, ["shapley", "loo", "grpo"]),
    ("vault", 8, ["shapley", "loo", "grpo", "c3", "sharp", "m_grpo", "dr_mas"]),
    ("harvest", 64, ["kernelshap", "loo"]),
]


def one(case, n_tasks: int) -> tuple[float, float, int]:
    """(peak RSS MB, estimated MB, episodes) of one study."""
    from mas_credit.config import check_memory, load_experiment
    from mas_credit.studies import run_study

    game, n, estimators = case
    cfg = load_experiment(
        ROOT / "experiments" / "study_quickstart.yaml",
        [
            f"games=[{{use: {game}, n_agents: {n}}}]",
            "team={use: scripted_trio, skills: [0.8]}",
            f"estimators=[{', '.join(estimators)}]",
            "seeds=[0]",
            f"n_tasks={n_tasks}",
            "group_size=2",
        ],
    )
    estimate = check_memory(cfg, 1) * 1e3
    with tempfile.TemporaryDirectory() as tmp:
        run_study(cfg, out_dir=Path(tmp) / "run", progress=False)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, estimate, n_tasks * 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs=2, default=[50, 400])
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    print("| game, N | estimators | measured KB / episode | estimated KB / episode | estimate / measured |")
    print("|---|---|---|---|---|")
    for case in CASES:
        out = []
        for n_tasks in args.tasks:
            with ctx.Pool(1) as pool:
                out.append(pool.apply(one, (case, n_tasks)))
        (rss0, est0, eps0), (rss1, est1, eps1) = out
        measured = (rss1 - rss0) * 1e3 / (eps1 - eps0)
        estimated = (est1 - est0) * 1e3 / (eps1 - eps0)
        ratio = estimated / measured
        print(f"| {case[0]}, {case[1]} | {len(case[2])} | {measured:.1f} | {estimated:.1f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
