"""The summary of a training run, from its `metrics.jsonl`: a table of the evaluations
(greedy, held-out tasks) and curves of team success, each agent's correctness, the
share of turns that parsed and each agent's credit. Rendered again by
`mas-credit report RUN_DIR` on a training run."""
from __future__ import annotations

import json
import math
from pathlib import Path

from mas_credit.outputs import save_figure, write_text


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if r["kind"] == "train"], [r for r in records if r["kind"] == "eval"]


# lines that may coincide (every agent's credit 0, say) stay visible: each agent its own style and marker size
STYLES = [("-", "o", 7), ("--", "s", 5.5), (":", "^", 4), ("-.", "D", 3), ((0, (1, 3)), "v", 2.5)]


def _style(k: int) -> dict:
    linestyle, marker, size = STYLES[k % len(STYLES)]
    return {"linestyle": linestyle, "marker": marker, "markersize": size, "linewidth": 1.6}


def training_curves(train: list[dict], evals: list[dict]):
    """The four panels of curves.png: team success (greedy on held-out tasks, and sampled
    during training), each agent's greedy correctness, the share of turns that parsed, and
    each agent's mean credit per iteration. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    (success, correct), (valid, credit) = axes
    eval_x = [r["iteration"] for r in evals]
    train_x = [r["iteration"] + 1 for r in train]           # a training record ends its iteration
    success_keys = [k for k in (evals[0] if evals else {}) if k.startswith("eval") and k.endswith("/success")]
    for k, key in enumerate(success_keys):
        game = key.removeprefix("eval").removesuffix("/success").strip("/")
        success.plot(eval_x, [r[key] for r in evals], label=f"greedy, held-out tasks {game}".strip(), **_style(k))
    if train:
        success.plot(train_x, [r["success"] for r in train], label="sampled (training episodes)", color="grey",
                     **_style(len(success_keys)))
    correct_keys = [k for k in (evals[0] if evals else {}) if "/correct/" in k]
    for k, key in enumerate(correct_keys):
        correct.plot(eval_x, [r[key] for r in evals], label=key.removeprefix("eval/").replace("correct/", ""), **_style(k))
    if train:
        valid.plot(train_x, [r["valid_turns"] for r in train], label="turns that parsed", **_style(0))
    credit_keys = sorted(k for k in (train[0] if train else {}) if k.startswith("credit/"))
    for k, key in enumerate(credit_keys):
        credit.plot(train_x, [r[key] for r in train], label=key.split("/")[-1], **_style(k))
    labels = [(success, "team success"), (correct, "greedy correctness"), (valid, "share of turns"),
              (credit, f"mean credit ({credit_keys[0].split('/')[1]})" if credit_keys else "mean credit")]
    titles = ["team success", "each agent's correctness (greedy, held-out)", "valid turns (sampled)", "credit per agent"]
    for (ax, ylabel), title in zip(labels, titles):
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if ax is not credit:
            ax.set_ylim(-0.05, 1.05)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def render_training(run_dir: str | Path) -> str:
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
        first, last = train[0], train[-1]
        lines += ["", f"Sampled training episodes: success {first['success']:.3f} in iteration 0, {last['success']:.3f} in the "
                  f"last; turns that parsed {first['valid_turns']:.3f}, then {last['valid_turns']:.3f}.",
                  "Mean credit per agent over the last iteration: "
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
    fig = training_curves(train, evals)
    save_figure(run_dir / "curves.png", fig)
    plt.close(fig)
    return text
