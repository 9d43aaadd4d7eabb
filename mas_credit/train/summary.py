"""The summary of a training run, from its `metrics.jsonl`: a table of the evaluations
(greedy, held-out tasks) and curves of reward, success and per-agent credit. Rendered
again by `mas-credit report RUN_DIR` on a training run."""
from __future__ import annotations

import json
import math
from pathlib import Path

from mas_credit.outputs import save_figure, write_text


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if r["kind"] == "train"], [r for r in records if r["kind"] == "eval"]


def render_training(run_dir: str | Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train, evals = read_metrics(run_dir)
    keys = [k for k in (evals[0] if evals else {}) if k.startswith("eval") and ("success" in k or "reward" in k or "correct" in k)]
    lines = [f"# Training run: {run_dir.name}", "",
             f"{len(train)} iterations; evaluation is greedy decoding on held-out tasks.", "",
             "| iteration | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for record in evals:
        lines.append(f"| {record['iteration']} | " + " | ".join(f"{record.get(k, math.nan):.3f}" for k in keys) + " |")
    if train:
        credit_keys = sorted(k for k in train[0] if k.startswith("credit/"))
        lines += ["", "Mean credit per agent over the last iteration: "
                  + ", ".join(f"{k.split('/')[-1]} {train[-1][k]:.3f}" for k in credit_keys),
                  f"Time per iteration: {sum(r['time/iteration_s'] for r in train) / len(train):.1f} s "
                  f"(rollout {sum(r['time/rollout_s'] for r in train) / len(train):.1f} s, update "
                  f"{sum(r['time/update_s'] for r in train) / len(train):.1f} s)."]
        if "train/logprob_gap_max" in train[0]:                # runs from before the trainer recomputed old log-probs lack it
            lines.append(f"Sampler vs trainer log-probabilities of the trained turns (the ratio uses the trainer's): largest gap "
                         f"{max(r['train/logprob_gap_max'] for r in train):.4f} nats, mean "
                         f"{sum(r['train/logprob_gap_mean'] for r in train) / len(train):.4f} nats per token.")
        lines += ["", "![curves](curves.png)", ""]
    if (run_dir / "run.json").is_file():                  # written when the run finishes
        from mas_credit.checklist import write_checklist

        lines.append(write_checklist(run_dir))
    text = "\n".join(lines)
    write_text(run_dir / "summary.md", text)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        axes[0].plot([r["iteration"] for r in train], [r["reward"] for r in train], label="train reward")
    if evals:
        for k in keys:
            if k.endswith("success") or k.endswith("reward"):
                axes[0].plot([r["iteration"] for r in evals], [r[k] for r in evals], marker="o", label=k)
        axes[0].legend(fontsize=7)
    axes[0].set_xlabel("iteration")
    axes[0].set_title("reward and evaluation")
    if train:
        for k in sorted(k for k in train[0] if k.startswith("credit/")):
            axes[1].plot([r["iteration"] for r in train], [r[k] for r in train], label=k.split("/")[-1])
        axes[1].legend(fontsize=7)
    axes[1].set_xlabel("iteration")
    axes[1].set_title("mean credit per agent")
    save_figure(run_dir / "curves.png", fig)
    plt.close(fig)
    return text
