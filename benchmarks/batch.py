"""Wall time of a batch (default: experiments/batch_quickstart.yaml) on the local executor
with 1 and 2 workers and on a local Ray instance with 2 workers, each from scratch in a
fresh folder, in the same process run; prints each time, its speed-up over 1 worker, and
whether every executor gave the same table.
Usage: python benchmarks/batch.py [--batch experiments/batch_quickstart.yaml]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_credit.batch import run_batch  # noqa: E402
from mas_credit.config import load_batch  # noqa: E402

SETTINGS = [
    ("local, 1 worker", ["executor.kind=local", "executor.workers=1"]),
    ("local, 2 workers", ["executor.kind=local", "executor.workers=2"]),
    ("ray (local instance), 2 workers", ["executor.kind=ray", "executor.workers=2"]),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="experiments/batch_quickstart.yaml")
    args = parser.parse_args()
    times, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, overrides) in enumerate(SETTINGS):
            cfg = load_batch(args.batch, overrides)
            start = time.perf_counter()
            out = run_batch(cfg, out_dir=Path(tmp) / f"setting_{k}", progress=False)
            times[label] = time.perf_counter() - start
            text = (out / "batch.md").read_text()
            tables[label] = text.split("## Results", 1)[1].split("## Failed runs", 1)[0]
            print(f"{label:<34} {times[label]:7.1f} s   {len(list(out.glob('runs/*')))} runs", flush=True)
    base = times[SETTINGS[0][0]]
    for label, _ in SETTINGS[1:]:
        print(f"{label}: {base / times[label]:.2f}x the speed of 1 worker")
    print("same table from every executor:", len(set(tables.values())) == 1)


if __name__ == "__main__":
    main()
