"""The summary of a training run, from its `metrics.jsonl`: a table of the evaluations
(greedy, held-out tasks) and curves of team success, each agent's correctness, the
share of turns that parsed and each agent's credit. Rendered again by
`mas-credit report RUN_DIR` on a training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mas_credit.checklist import write_checklist
from mas_credit.config import TrainConfig, load_resolved
from mas_credit.outputs import read_metrics, save_figure, verify_manifest, write_text


def learning_metrics(train: list[dict], evals: list[dict], target: float) -> dict:
    """How fast the team learned, from a run's metric records (greedy evaluations on held-out
    tasks; an evaluation at iteration k follows k training iterations):

      learn/episodes_to_target  training episodes played before the first evaluation whose team
                                success reaches `target` (0 if the untrained team already does;
                                None if no evaluation does: censored at the run's budget)
      learn/auc                 area under the greedy success curve over the iterations, divided
                                by their span (trapezoids; in [0, 1]; the one value if one evaluation)
      learn/success_first, learn/success_last, learn/episodes (the run's training episodes)
      learn/learner_correct_auc the same area under the learners' greedy correctness (mean over the
                                agents that are updated, read from their `loss/agent_<i>/turns`
                                records; over games too): what each learner learned, where team
                                success cannot show it (a redundant team succeeds without it)
      learn/learner_correct_first, learn/learner_correct_last
    Multi-game runs average their games' success keys (eval/<game>/success).
    """
    keys = [k for k in (evals[0] if evals else {}) if k.startswith("eval") and k.endswith("/success")]
    if not evals or not keys:
        return {}
    iterations = np.array([r["iteration"] for r in evals], dtype=float)
    success = np.array([[r[k] for k in keys] for r in evals], dtype=float).mean(axis=1)
    per_iteration = np.zeros(int(max(iterations.max(), max((r["iteration"] for r in train), default=-1) + 1)) + 1)
    for r in train:
        per_iteration[r["iteration"] + 1] += len(r["episode_turns"])
    played = np.cumsum(per_iteration)  # played[k]: episodes before the evaluation at iteration k
    reached = np.flatnonzero(success >= target - 1e-12)
    out = {
        "learn/target": float(target),
        "learn/episodes_to_target": int(played[int(iterations[reached[0]])]) if len(reached) else None,
        "learn/auc": _auc(iterations, success),
        "learn/success_first": float(success[0]),
        "learn/success_last": float(success[-1]),
        "learn/episodes": int(played[-1]),
    }
    learners = {k.split("/")[1] for r in train for k in r if k.startswith("loss/agent_") and k.endswith("/turns")}
    correct_keys = [
        k for k in evals[0] if k.startswith("eval") and "/correct/" in k and k.rsplit("/", 1)[1] in learners
    ]
    if correct_keys:
        correct = np.array([[r[k] for k in correct_keys] for r in evals], dtype=float).mean(axis=1)
        out["learn/learner_correct_auc"] = _auc(iterations, correct)
        out["learn/learner_correct_first"] = float(correct[0])
        out["learn/learner_correct_last"] = float(correct[-1])
    return out


def _auc(iterations: np.ndarray, values: np.ndarray) -> float:
    """Area under a curve over the iterations (trapezoids), divided by their span; the one value
    if there is one point."""
    span = iterations[-1] - iterations[0]
    area = float(((values[1:] + values[:-1]) / 2 * np.diff(iterations)).sum())
    return area / span if span > 0 else float(values[0])


# lines that may coincide (every agent's credit 0, say) stay visible: each agent its own style and marker size
STYLES = [
    ("-", "o", 7),
    ("--", "s", 5.5),
    (":", "^", 4),
    ("-.", "D", 3),
    ((0, (1, 3)), "v", 2.5),
    ((0, (5, 2)), "x", 2),
    ((0, (3, 1, 1, 1)), "P", 1.5),
    ((0, (1, 1)), ".", 1),
]


def line_style(k: int) -> dict:
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
    train_x = [r["iteration"] + 1 for r in train]  # a training record ends its iteration
    success_keys = [k for k in (evals[0] if evals else {}) if k.startswith("eval") and k.endswith("/success")]
    for k, key in enumerate(success_keys):
        game = key.removeprefix("eval").removesuffix("/success").strip("/")
        success.plot(eval_x, [r[key] for r in evals], label=f"greedy, held-out tasks {game}".strip(), **line_style(k))
    if train:
        success.plot(
            train_x,
            [r["success"] for r in train],
            label="sampled (training episodes)",
            color="grey",
            **line_style(len(success_keys)),
        )
    correct_keys = [k for k in (evals[0] if evals else {}) if "/correct/" in k]
    for k, key in enumerate(correct_keys):
        correct.plot(
            eval_x, [r[key] for r in evals], label=key.removeprefix("eval/").replace("correct/", ""), **line_style(k)
        )
    if train:
        valid.plot(train_x, [r["valid_turns"] for r in train], label="turns that parsed", **line_style(0))
    credit_keys = sorted(k for k in (train[0] if train else {}) if k.startswith("credit/"))
    for k, key in enumerate(credit_keys):
        credit.plot(train_x, [r[key] for r in train], label=key.split("/")[-1], **line_style(k))
    labels = [
        (success, "team success"),
        (correct, "greedy correctness"),
        (valid, "share of turns"),
        (credit, f"mean credit ({credit_keys[0].split('/')[1]})" if credit_keys else "mean credit"),
    ]
    titles = [
        "team success",
        "each agent's correctness (greedy, held-out)",
        "valid turns (sampled)",
        "credit per agent",
    ]
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


def _target(run_dir: Path) -> float:
    """The run's train.success_target (its config.yaml), the default where it has none."""

    path = run_dir / "config.yaml"
    return float(load_resolved(path).train.success_target) if path.is_file() else TrainConfig().success_target


def render_training(run_dir: str | Path, plots: bool = True) -> str:
    run_dir = Path(run_dir)
    verify_manifest(run_dir, f"resume it from its checkpoint (mas-credit train --resume {run_dir}) or train again")
    train, evals = read_metrics(run_dir)
    keys = [
        k
        for k in (evals[0] if evals else {})
        if k.startswith("eval") and ("success" in k or "reward" in k or "correct" in k)
    ]
    lines = [
        f"# Training run: {run_dir.name}",
        "",
        f"{len(train)} iterations; evaluation is greedy decoding on held-out tasks.",
        "",
        "| iteration | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for record in evals:
        lines.append(f"| {record['iteration']} | " + " | ".join(f"{record.get(k, math.nan):.3f}" for k in keys) + " |")
    if train:
        credit_keys = sorted(k for k in train[0] if k.startswith("credit/"))
        first, last = train[0], train[-1]
        lines += [
            "",
            f"Sampled training episodes: success {first['success']:.3f} in iteration 0, {last['success']:.3f} in the "
            f"last; turns that parsed {first['valid_turns']:.3f}, then {last['valid_turns']:.3f}.",
            "Mean credit per agent over the last iteration: "
            + ", ".join(f"{k.split('/')[-1]} {train[-1][k]:.3f}" for k in credit_keys),
            f"Time per iteration: {sum(r['time/iteration_s'] for r in train) / len(train):.1f} s "
            f"(rollout {sum(r['time/rollout_s'] for r in train) / len(train):.1f} s, update "
            f"{sum(r['time/update_s'] for r in train) / len(train):.1f} s).",
        ]
        if "train/logprob_gap_max" in train[0]:  # runs from before the trainer recomputed old log-probs lack it
            lines.append(
                "Sampler vs trainer log-probabilities of the trained turns (the ratio uses the trainer's): largest "
                "gap "
                f"{max(r['train/logprob_gap_max'] for r in train):.4f} nats, mean "
                f"{sum(r['train/logprob_gap_mean'] for r in train) / len(train):.4f} nats per token."
            )
        learning = learning_metrics(train, evals, _target(run_dir))
        if learning:
            write_text(run_dir / "learning.json", json.dumps(learning, indent=1))
            reached = learning["learn/episodes_to_target"]
            lines.append(
                f"Learning: greedy success {learning['learn/success_first']:.3f} -> "
                f"{learning['learn/success_last']:.3f}; "
                f"area under the success curve {learning['learn/auc']:.3f}; greedy success reached "
                f"{learning['learn/target']:g} after "
                + (
                    f"{reached} training episodes."
                    if reached is not None
                    else f"no evaluation within {learning['learn/episodes']} training episodes."
                )
                + (
                    f" The learners' greedy correctness {learning['learn/learner_correct_first']:.3f} -> "
                    f"{learning['learn/learner_correct_last']:.3f} (area {learning['learn/learner_correct_auc']:.3f})."
                    if "learn/learner_correct_auc" in learning
                    else ""
                )
            )
        lines += ["", "![curves](curves.png)", ""]
    if (run_dir / "run.json").is_file():  # written when the run finishes
        lines.append(write_checklist(run_dir))
    text = "\n".join(lines)
    write_text(run_dir / "summary.md", text)
    if plots:
        import matplotlib.pyplot as plt

        fig = training_curves(train, evals)
        save_figure(run_dir / "curves.png", fig)
        plt.close(fig)
    return text
