"""Train the same team with several estimators and seeds on the same budget and print
each run's evaluation curve (greedy team success on held-out tasks) and the mean credit
each estimator gave every agent; the lazy agent's credit is the one to watch.

Usage: python benchmarks/train_compare.py [--experiment experiments/compare_lazy.yaml]
       [--estimators grpo,sharp,c3] [--seeds 0,1,2] [--out runs/compare_lazy]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_credit.config import load_experiment, validate_train  # noqa: E402
from mas_credit.train.trainer import train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/compare_lazy.yaml")
    parser.add_argument("--estimators", default="grpo,sharp,c3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/compare_lazy")
    args = parser.parse_args()
    rows = []
    for estimator in args.estimators.split(","):
        for seed in args.seeds.split(","):
            cfg = load_experiment(args.experiment, [f"estimators=[{estimator}]", f"seeds=[{seed}]", "train.tensorboard=false"])
            validate_train(cfg, args.experiment)
            start = time.perf_counter()
            run = train(cfg, out_dir=Path(args.out) / f"{estimator}_seed{seed}", progress=False)
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            evals = [(r["iteration"], r["eval/success"]) for r in records if r["kind"] == "eval"]
            train_records = [r for r in records if r["kind"] == "train"]
            credit = {k.split("/")[-1]: float(np.mean([r[k] for r in train_records])) for k in train_records[0] if k.startswith("credit/")}
            rows.append((estimator, seed, evals, credit, time.perf_counter() - start))
            print(f"{estimator:<8} seed {seed}: eval success by iteration {evals}; mean credit {credit}; "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    print("\nestimator  eval success (first -> last, mean over seeds)  mean credit of agent_0 / agent_1 / agent_2 (lazy)")
    for estimator in args.estimators.split(","):
        mine = [r for r in rows if r[0] == estimator]
        first = np.mean([r[2][0][1] for r in mine])
        last = np.mean([r[2][-1][1] for r in mine])
        credit = [np.mean([r[3][f"agent_{i}"] for r in mine]) for i in range(3)]
        print(f"{estimator:<10} {first:.3f} -> {last:.3f}{'':<28}{credit[0]:.3f} / {credit[1]:.3f} / {credit[2]:.3f}")


if __name__ == "__main__":
    main()
