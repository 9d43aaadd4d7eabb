"""Scores, tables and plots of a study, rendered from its saved results
(`credit.parquet`, `costs.json`), so `mas-credit report RUN_DIR` can redo them.

Scores per episode against exact Shapley phi* (docs/estimators.md, "How studies score"):
  rmse           sqrt(mean_i (credit_i - phi*_i)^2)
  nrmse          per seed: the RMSE over all its episodes and agents over the RMS of phi* (scale-free, so
                 teams of 3 and of 64 compare); NaN where phi* is all 0
  kendall_tau    Kendall tau-b between credit and phi* over the agents; episodes where
                 either side is all ties are left out
  top_agent      1 if the agent with the most credit is one of phi*'s top agents;
                 episodes where phi* is all ties are left out
  null_credit    mean |credit| of null players (every marginal contribution 0)
  efficiency_gap |sum_i credit_i - (R - v(empty))|
against each agent's own answer (the game's `correct` component; 0 wrong, 1 right):
  wrong_paid, right_charged       share of wrong answers with credit > 0, of right ones with credit < 0
  adv_sign_right, adv_sign_wrong  share of answers whose agent's advantage (mean over its turns)
                                  points the right way (up for right, down for wrong), or the wrong way
and, per estimator, `fallback`: the share of episodes on which it ran on its fallback
(llm_mca: the critic's answer could not be read and uniform shares were used; the
counterfactual estimators never default a coalition value here: replay is exact and
resample re-runs every value, so theirs is 0). A row that fell back on more than half
its episodes is marked † in the table, hatched in the plots, and named in the summary.
Each is averaged over a seed's episodes; across seeds: mean and 95% confidence interval
(Student t, scipy's quantile at any number of seeds). This module must not run games or estimators.
"""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from scipy.special import stdtrit  # Student t quantiles (scipy.stats, which also has them, takes 1 s to import)

from mas_credit.checklist import write_checklist
from mas_credit.config import load_resolved
from mas_credit.outputs import RunDirError, read_costs, save_figure, verify_manifest, write_text

TRUTH = "ground truth"
METRICS = [
    "rmse",
    "nrmse",
    "kendall_tau",
    "top_agent",
    "null_credit",
    "efficiency_gap",
    "wrong_paid",
    "right_charged",
    "adv_sign_right",
    "adv_sign_wrong",
]
RATES = ["fallback"]
FELL_BACK = 0.5
"""a row whose fallback rate is above this is marked: its scores are mostly its fallback's"""
SIGN_TOL = 1e-9
"""credit within this of 0 is neither paid nor charged (float noise of an exact 0)"""
COSTS = [
    "evals_per_episode",
    "llm_calls_per_episode",
    "tokens_per_episode",
    "critic_calls_per_episode",
    "ms_per_episode",
]
COLUMN_HELP = {
    "rmse": "root mean squared error of the credit against exact Shapley, per episode (0 = exact)",
    "nrmse": "the RMSE over all of a seed's episodes and agents divided by the RMS of exact Shapley (scale-free)",
    "kendall_tau": "Kendall tau-b rank agreement with exact Shapley over the agents (1 = same order)",
    "top_agent": "share of episodes whose most-credited agent is a top agent of exact Shapley",
    "null_credit": "mean |credit| given to null players (agents whose every marginal contribution is 0; sound = 0)",
    "efficiency_gap": "|sum of credit - (R - v(empty))| (0 = the credit decomposes the reward)",
    "wrong_paid": "share of wrong answers (the game's `correct` component 0) given positive credit, over episodes "
    "with one; exact Shapley can pay one where a wrong step stands in for an absent agent's (relay)",
    "right_charged": "share of right answers (`correct` 1) given negative credit, over episodes with one",
    "adv_sign_right": "share of answers whose agent's advantage (the learning signal; mean over its turns) points "
    "the right way: up for a right answer, down for a wrong one, over episodes with one",
    "adv_sign_wrong": "share of answers whose agent's advantage points the wrong way (up for a wrong answer, down "
    "for a right one); the rest get 0, no signal",
    "fallback": "share of episodes on which the estimator ran on its fallback (llm_mca: unreadable critic answer, "
    "uniform shares); † marks a row above 0.5",
    "evals_per_episode": "distinct coalition evaluations the estimator needed, per episode",
    "llm_calls_per_episode": "LLM policy calls for counterfactual re-runs, per episode (0 for scripted teams)",
    "tokens_per_episode": "response tokens of those calls, per episode",
    "critic_calls_per_episode": "critic calls, per episode",
    "ms_per_episode": "wall time of its counterfactuals plus the estimator, per episode (ms)",
}

SERVED_FAILED = {"critic": "those episodes fell back to uniform shares", "team": "those turns played the null action"}
"""what a served model's failed call (after its retries) became"""


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (NaN with one value)."""
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), math.nan
    t = float(stdtrit(len(values) - 1, 0.975))  # two-sided 95%, exact at any number of seeds
    return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(len(values)))


def kendall_tau_b(credit: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[E, N] x [E, N] -> [E] tau-b per episode; NaN where either side is all ties."""
    credit, truth = np.round(credit, 9), np.round(truth, 9)  # float noise is not a rank difference
    n = credit.shape[1]
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    dc = np.sign(credit[:, :, None] - credit[:, None, :])[:, upper]  # [E, pairs]
    dt = np.sign(truth[:, :, None] - truth[:, None, :])[:, upper]
    pairs = upper.sum()
    denom = np.sqrt((pairs - (dc == 0).sum(1)) * (pairs - (dt == 0).sum(1)).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dc * dt).sum(1) / np.where(denom > 0, denom, 1), np.nan)


def episode_scores(
    credit: np.ndarray,
    truth: np.ndarray,
    reward: np.ndarray,
    v_empty: np.ndarray,
    null: np.ndarray,
    correct: np.ndarray | None = None,
    advantage: np.ndarray | None = None,
) -> dict:
    """[E, N] arrays (reward, v_empty: [E]) -> per-episode score arrays [E] (NaN = undefined).
    `correct` [E, N]: each agent's `correct` component (1 right, 0 wrong; a share in between, or
    NaN where the game gives none, counts as neither). `advantage` [E, N]: each agent's advantage,
    mean over its turns (NaN: no turn, or not recorded)."""
    top = credit.argmax(axis=1)
    truth_top = np.isclose(truth[np.arange(len(truth)), top], truth.max(axis=1), atol=1e-9)
    all_tied = np.isclose(truth.max(axis=1), truth.min(axis=1), atol=1e-9)
    null_sum, null_count = (np.abs(credit) * null).sum(1), null.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        null_credit = np.where(null_count > 0, null_sum / np.maximum(null_count, 1), np.nan)
    correct = np.full(credit.shape, np.nan) if correct is None else correct
    wrong, right = correct == 0, correct == 1  # NaN compares False: neither
    paid, charged = credit > SIGN_TOL, credit < -SIGN_TOL
    with np.errstate(invalid="ignore", divide="ignore"):
        wrong_paid = np.where(wrong.any(1), (paid & wrong).sum(1) / wrong.sum(1), np.nan)
        right_charged = np.where(right.any(1), (charged & right).sum(1) / right.sum(1), np.nan)
    advantage = np.full(credit.shape, np.nan) if advantage is None else advantage
    answered = (wrong | right) & ~np.isnan(advantage)  # [E, N]
    up, down = advantage > SIGN_TOL, advantage < -SIGN_TOL  # NaN compares False: neither
    with np.errstate(invalid="ignore", divide="ignore"):
        count = answered.sum(1)
        sign_right = np.where(count > 0, (answered & ((right & up) | (wrong & down))).sum(1) / count, np.nan)
        sign_wrong = np.where(count > 0, (answered & ((right & down) | (wrong & up))).sum(1) / count, np.nan)
    return {
        "rmse": np.sqrt(((credit - truth) ** 2).mean(axis=1)),
        "kendall_tau": kendall_tau_b(credit, truth),
        "top_agent": np.where(all_tied, np.nan, truth_top.astype(float)),
        "null_credit": null_credit,
        "efficiency_gap": np.abs(credit.sum(axis=1) - (reward - v_empty)),
        "wrong_paid": wrong_paid,
        "right_charged": right_charged,
        "adv_sign_right": sign_right,
        "adv_sign_wrong": sign_wrong,
    }


def normalised_rmse(credit: np.ndarray, truth: np.ndarray) -> float:
    """RMSE over every entry of [E, N] over the RMS of the truth (NaN where the truth is all 0)."""
    scale = float(np.sqrt((truth**2).mean()))
    return float(np.sqrt(((credit - truth) ** 2).mean())) / scale if scale > 0 else math.nan


def score(frame, costs: list[dict]):
    """Per (game, estimator, seed): the mean of each score over episodes, and the costs per episode."""

    records = []
    cost_of = {(c["game"], c["seed"], c["estimator"]): c for c in costs}
    for (game, estimator, seed), part in frame.groupby(["game", "estimator", "seed"], sort=False):
        part = part.sort_values(["episode", "agent"])
        n_agents = part["agent"].nunique()
        shaped = {k: part[k].to_numpy().reshape(-1, n_agents) for k in ("credit", "truth", "null_player")}
        # a study written before `correct` was recorded has no such column: the two scores are "–"
        correct = part["correct"].to_numpy(float).reshape(-1, n_agents) if "correct" in part else None
        # nor, before `advantage` was, the advantage's signs
        advantage = part["advantage"].to_numpy(float).reshape(-1, n_agents) if "advantage" in part else None
        first = part.groupby("episode", sort=True).first()
        scores = episode_scores(
            shaped["credit"],
            shaped["truth"],
            first["reward"].to_numpy(),
            first["v_empty"].to_numpy(),
            shaped["null_player"].astype(bool),
            correct,
            advantage,
        )
        cost = cost_of[(game, seed, estimator)]
        episodes = cost["episodes"]
        record = {
            "game": game,
            "estimator": estimator,
            "seed": seed,
            **{k: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for k, v in scores.items()},
            "nrmse": normalised_rmse(shaped["credit"], shaped["truth"]),
            "fallback": cost.get("critic_fallback", 0.0) / episodes,
            "evals_per_episode": cost["coalition_evals"] / episodes,
            "llm_calls_per_episode": cost["llm_calls"] / episodes,
            "tokens_per_episode": cost["tokens"] / episodes,
            "critic_calls_per_episode": cost["critic_calls"] / episodes,
            "ms_per_episode": 1e3 * cost["wall_s"] / episodes,
        }
        records.append(record)
    return pd.DataFrame(records)


def summarise(per_seed):
    """Per (game, estimator): mean and 95% CI half-width of every score and cost over seeds."""

    rows = []
    for (game, estimator), part in per_seed.groupby(["game", "estimator"], sort=False):
        row = {"game": game, "estimator": estimator, "seeds": len(part)}
        for key in METRICS + RATES + COSTS:
            row[key], row[f"{key}_ci"] = mean_ci(part[key].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


# the values each metric can take: a confidence interval is cut to them
RANGES = {
    "fallback": (0.0, 1.0),
    "rmse": (0.0, math.inf),
    "nrmse": (0.0, math.inf),
    "kendall_tau": (-1.0, 1.0),
    "top_agent": (0.0, 1.0),
    "null_credit": (0.0, math.inf),
    "efficiency_gap": (0.0, math.inf),
    "wrong_paid": (0.0, 1.0),
    "right_charged": (0.0, 1.0),
    "adv_sign_right": (0.0, 1.0),
    "adv_sign_wrong": (0.0, 1.0),
    "eval_success_before": (0.0, 1.0),
    "eval_success": (0.0, 1.0),
    "eval_gain": (-1.0, 1.0),
    "auc": (0.0, 1.0),
    "reached_target": (0.0, 1.0),
    "learner_correct_auc": (0.0, 1.0),
    "learner_correct": (0.0, 1.0),
    "episodes_to_target": (0.0, math.inf),
}


def cell_text(mean: float, ci: float, digits: int = 3, bounds: tuple[float, float] | None = None) -> str:
    """mean ± ci; where the interval leaves the metric's range (`bounds`), the interval cut to
    it: 0.172 [-1.000, 1.000] (few seeds give wide t-intervals)."""
    if math.isnan(mean):
        return "–"
    if math.isnan(ci):
        return f"{mean:.{digits}f}"
    lo, hi = bounds or (-math.inf, math.inf)
    if mean - ci < lo or mean + ci > hi:
        return f"{mean:.{digits}f} [{max(lo, mean - ci):.{digits}f}, {min(hi, mean + ci):.{digits}f}]"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def table(summary, game: str) -> str:
    """The markdown table of one game."""
    heads = ["estimator", "seeds", *METRICS, *RATES, *COSTS]  # the names batch.md and the parquet files use
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for _, row in summary[summary["game"] == game].iterrows():
        mark = " †" if row["fallback"] > FELL_BACK else ""
        cells = [f"`{row['estimator']}`{mark}", str(int(row["seeds"]))]
        cells += [cell_text(row[k], row[f"{k}_ci"], bounds=RANGES[k]) for k in METRICS + RATES]
        cells += [cell_text(row[k], math.nan, 1) for k in COSTS[:4]] + [cell_text(row["ms_per_episode"], math.nan, 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fell_back_words(summary, game: str) -> list[str]:
    """A sentence for each row of `game` that fell back on more than half its episodes."""
    rows = summary[(summary["game"] == game) & (summary["fallback"] > FELL_BACK)]
    return [
        f"† **`{row['estimator']}` did not really run here:** it fell back on {100 * row['fallback']:.0f}% of its "
        f"episodes, so its scores are those of its fallback (for llm_mca, uniform shares: compare the `uniform` row)."
        for _, row in rows.iterrows()
    ] + ([""] if len(rows) else [])


def _estimator_names(run_dir: Path) -> list[str]:
    """The estimators a study ran (by name, whatever their labels)."""

    try:
        return [e.name for e in load_resolved(run_dir / "config.yaml").estimators]
    except Exception:  # noqa: BLE001 - an old or hand-edited config: name the critic rather than fail the report
        return ["llm_mca"]


def render(run_dir: str | Path) -> str:
    """(Re)write `summary.md` and the PNG plots of a run from its saved results; returns the summary text."""

    run_dir = Path(run_dir)
    for name in ("credit.parquet", "costs.json"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} has no {name}; give the folder of a finished study (runs/<name>/)")
    verify_manifest(run_dir, f"run the study again (mas-credit study ... --out {run_dir} --overwrite)")
    try:
        frame = pd.read_parquet(run_dir / "credit.parquet")
        meta = read_costs(run_dir)
    except Exception as err:  # noqa: BLE001 - pyarrow and json raise many kinds for a cut or garbled file
        raise RunDirError(
            f"{run_dir}: credit.parquet or costs.json is damaged ({type(err).__name__}); run the study again "
            f"(mas-credit study ... --out {run_dir} --overwrite)"
        ) from None
    per_seed = score(frame, meta["records"])
    summary = summarise(per_seed)
    games = list(dict.fromkeys(frame["game"]))
    n_eps = {c["game"]: c["episodes"] for c in meta["records"] if c["estimator"] == TRUTH}
    truth_records = [c for c in meta["records"] if c["estimator"] == TRUTH]
    rollout_s = sum(c["rollout_s"] for c in truth_records)
    turns, invalid = (
        sum(c.get("turns", 0) for c in truth_records),
        sum(c.get("invalid_turns", 0) for c in truth_records),
    )
    text = [
        f"# Credit study: {run_dir.name}",
        "",
        f"Team: {meta['team']}"
        + (f"; critic for llm_mca: {meta['critic']}" if "llm_mca" in _estimator_names(run_dir) else "")
        + f"; seeds {meta['seeds']}; {meta['n_tasks']} tasks x "
        f"{meta['group_size']} episodes per game and seed"
        + (f" (tree fan-out {meta['fanout']})" if meta["fanout"] else "")
        + f"; rollouts took {rollout_s:.2f} s in all"
        + (f"; {invalid} of {turns} answers did not parse and played the null action." if turns else ".")
        + "".join(
            f" Served model ({name}): {c['calls']} calls, {c['retries']} retries, {c['failures']} failed after their "
            f"retries ({SERVED_FAILED['critic' if name == 'critic' else 'team']})"
            + (f", {c['cached']} answers from the cache" if "cached" in c else "")
            + f", {c['prompt_tokens'] + c['completion_tokens']} tokens."
            for name, c in meta.get("served", {}).items()
        ),
        "Every estimator ran on the same episodes and is scored against the exact Shapley value of the replayed "
        "coalition values. Cells are the mean over seeds ± the half-width of a 95% confidence interval "
        "(Student t; no ± with one seed; an interval that leaves a metric's range is shown cut to it, in brackets; "
        "`seeds` counts the seeds of each row); – means undefined (e.g. no null player in that game, or every agent "
        "tied in exact Shapley, which leaves ranks and the top agent undefined)."
        + (
            " Tree-mode estimators pay with the fan-out rollouts, not with coalition evaluations."
            if meta["fanout"]
            else ""
        ),
        "",
    ]
    for game in games:
        records = [c for c in truth_records if c["game"] == game]
        reward = mean_ci([c.get("team_reward", math.nan) for c in records])
        text += [
            f"## {game} ({n_eps[game]} episodes per seed; mean team reward {cell_text(*reward)})",
            "",
            table(summary, game),
            "",
        ]
        text += fell_back_words(summary, game)
        text += [f"![credit by agent](credit_{game}.png)", ""]
    text += (
        ["## Columns", ""]
        + [f"- **{k}**: {v}" for k, v in COLUMN_HELP.items()]
        + ["", "![error against cost](error_vs_cost.png)", ""]
    )
    if (run_dir / "edges.parquet").is_file():
        text += edge_section(run_dir, frame, meta)
    if (run_dir / "run.json").is_file():  # studies made before the checklist existed have none
        text.append(write_checklist(run_dir))
    out = "\n".join(text)
    write_text(run_dir / "summary.md", out)
    _plots(run_dir, frame, summary, games)
    return out


def _plots(run_dir: Path, frame, summary, games) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    estimators = list(dict.fromkeys(frame["estimator"]))
    fell = {(row["game"], row["estimator"]) for _, row in summary.iterrows() if row["fallback"] > FELL_BACK}
    palette = plt.get_cmap("tab20")
    colour = {est: palette(k % 20) for k, est in enumerate(estimators)}
    for game in games:
        part = frame[frame["game"] == game]
        agents = sorted(part["agent"].unique())
        fig, ax = plt.subplots(figsize=(2.5 + 0.25 * len(agents) * (len(estimators) + 1), 3.6))
        width = 0.8 / (len(estimators) + 1)
        x = np.arange(len(agents)) - 0.4 + width / 2
        truth = part[part["estimator"] == estimators[0]].groupby("agent")["truth"].mean()
        ax.bar(x, truth.to_numpy(), width, color="black", label=TRUTH)
        for k, est in enumerate(estimators, start=1):
            mean = part[part["estimator"] == est].groupby("agent")["credit"].mean()
            down = (game, est) in fell
            ax.bar(
                x + width * k,
                mean.to_numpy(),
                width,
                color=colour[est],
                hatch="///" if down else None,
                label=f"{est} † (fell back)" if down else est,
            )
        ax.set_xticks(np.arange(len(agents)), [f"agent_{a}" for a in agents])
        ax.set_ylabel("mean credit over episodes and seeds")
        ax.set_title(f"{game}: credit per agent by estimator (black: exact Shapley)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        save_figure(run_dir / f"credit_{game}.png", fig)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = "osD^vP*X"
    for g, game in enumerate(games):
        for _, row in summary[summary["game"] == game].iterrows():
            down = (game, row["estimator"]) in fell
            ax.scatter(
                max(row["ms_per_episode"], 1e-4),
                row["rmse"],
                marker=markers[g % len(markers)],
                color=colour[row["estimator"]],
                s=36,
                edgecolors="red" if down else "black",
                linewidths=1.5 if down else 0.3,
            )
            if down:
                ax.annotate(
                    "† fell back",
                    (max(row["ms_per_episode"], 1e-4), row["rmse"]),
                    fontsize=6,
                    color="red",
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    handles = [Line2D([], [], ls="", marker="o", color=colour[est], label=est) for est in estimators]
    handles += [
        Line2D([], [], ls="", marker=markers[g % len(markers)], color="grey", label=game)
        for g, game in enumerate(games)
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xscale("log")
    ax.set_xlabel("wall time per episode (ms; counterfactuals + estimator)")
    ax.set_ylabel("RMSE against exact Shapley")
    ax.set_title("error against cost (colour: estimator; marker: game)")
    save_figure(run_dir / "error_vs_cost.png", fig)
    plt.close(fig)


# -- communication credit (edges.parquet) ----------------------------------------------------
EDGE_METRICS = ["rmse", "kendall_tau", "distractor_credit", "null_credit", "efficiency_gap"]
EDGE_COSTS = ["edge_evals_per_episode", "critic_calls_per_episode", "ms_per_episode"]
EDGE_HELP = {
    "rmse": "root mean squared error of the credit per message against exact edge Shapley, per episode",
    "kendall_tau": "Kendall tau-b rank agreement with exact edge Shapley over the messages",
    "distractor_credit": "mean |credit| of the distractor informant's messages (sound = 0)",
    "null_credit": "mean |credit| of null messages (every marginal contribution 0; sound = 0)",
    "efficiency_gap": "|sum of credit - (v(all messages) - v(no messages))|",
    "edge_evals_per_episode": "distinct edge-set evaluations the estimator needed, per episode",
    "critic_calls_per_episode": "critic calls, per episode",
    "ms_per_episode": "wall time of its counterfactuals plus the estimator, per episode (ms)",
}


def edge_scores(edges, costs: list[dict]):
    """Per (game, estimator, seed): the mean over episodes of each edge score, and the costs per episode."""
    records = []
    cost_of = {(c["game"], c["seed"], c["estimator"]): c for c in costs}
    for (game, estimator, seed), part in edges.groupby(["game", "estimator", "seed"], sort=False):
        part = part.sort_values(["episode", "edge"])
        n_edges = part["edge"].nunique()
        credit, truth = (part[k].to_numpy().reshape(-1, n_edges) for k in ("credit", "truth"))
        first = part.groupby("episode", sort=True).first()
        flagged = {}
        for key, column in (("distractor_credit", "distractor"), ("null_credit", "null_edge")):
            mask = part[column].to_numpy().reshape(-1, n_edges).astype(bool)
            flagged[key] = np.abs(credit)[mask].mean() if mask.any() else math.nan
        gain = first["reward"].to_numpy() - first["v_none"].to_numpy()
        cost = cost_of[(game, seed, estimator)]
        episodes = cost["episodes"]
        tau = kendall_tau_b(credit, truth)
        records.append(
            {
                "game": game,
                "estimator": estimator,
                "seed": seed,
                "rmse": float(np.sqrt(((credit - truth) ** 2).mean(axis=1)).mean()),
                "kendall_tau": float(np.nanmean(tau)) if np.isfinite(tau).any() else math.nan,
                **flagged,
                "efficiency_gap": float(np.round(np.abs(credit.sum(axis=1) - gain), 12).mean()),  # not float noise
                "edge_evals_per_episode": cost["edge_evals"] / episodes,
                "critic_calls_per_episode": cost["critic_calls"] / episodes,
                "ms_per_episode": 1e3 * cost["wall_s"] / episodes,
                "fallback": cost["critic_fallback"] / episodes,
            }
        )
    return pd.DataFrame(records)


def acting_and_informing(frame, edges, game: str):
    """Per agent of `game`: mean acting credit (exact Shapley over agents) and mean informing credit
    (the summed exact edge Shapley of its messages, and each edge estimator's), over episodes and seeds."""
    agents = frame[(frame["game"] == game)]
    agents = agents[agents["estimator"] == agents["estimator"].iloc[0]]
    acting = agents.groupby("agent")["truth"].mean()
    part = edges[edges["game"] == game]
    out = pd.DataFrame({"acting": acting})
    first = part["estimator"].iloc[0]
    per_episode = part[part["estimator"] == first].groupby(["seed", "episode", "sender"])["truth"].sum()
    out["informing (exact)"] = _per_agent_mean(per_episode, acting.index, part)
    for est in dict.fromkeys(part["estimator"]):
        sums = part[part["estimator"] == est].groupby(["seed", "episode", "sender"])["credit"].sum()
        out[f"informing ({est})"] = _per_agent_mean(sums, acting.index, part)
    return out


def _per_agent_mean(sums, agents, part):
    """Mean over every (seed, episode) of each agent's summed credit (0 for an agent that sent nothing)."""
    n_episodes = len(part.groupby(["seed", "episode"]))
    totals = sums.groupby(level="sender").sum()
    return pd.Series([float(totals.get(a, 0.0)) / n_episodes for a in agents], index=agents)


def edge_section(run_dir: Path, frame, meta) -> list[str]:
    """The summary's communication-credit part: per game, the edge estimators against exact edge
    Shapley and each agent's acting and informing credit; draws `edges_<game>.png`."""
    edges = pd.read_parquet(run_dir / "edges.parquet")
    per_seed = edge_scores(edges, meta.get("edge_records", []))
    text = [
        "# Communication credit (the players are the messages)",
        "",
        "Each edge estimator ran on the same episodes and is scored against exact Shapley over the messages "
        "(v(E') = the team value when only the messages in E' are delivered, the others replaced by an empty "
        "message). Mean over seeds ± the half-width of a 95% confidence interval.",
        "",
    ]
    heads = ["estimator", "seeds", *EDGE_METRICS, "fallback", *EDGE_COSTS]
    for game in dict.fromkeys(edges["game"]):
        exact = bool(edges[edges["game"] == game]["truth_exact"].all())
        text += [f"## {game}: credit per message" + ("" if exact else " (ground truth sampled)"), ""]
        text += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for estimator, part in per_seed[per_seed["game"] == game].groupby("estimator", sort=False):
            cells = [f"`{estimator}`", str(len(part))]
            for key in EDGE_METRICS + ["fallback"]:
                bounds = (-1.0, 1.0) if key == "kendall_tau" else (0.0, math.inf)
                cells.append(cell_text(*mean_ci(part[key].to_numpy()), bounds=bounds))
            cells += [cell_text(float(part[key].mean()), math.nan, 2) for key in EDGE_COSTS]
            text.append("| " + " | ".join(cells) + " |")
        split = acting_and_informing(frame, edges, game)
        text += [
            "",
            f"Acting and informing credit per agent ({game}; mean over episodes and seeds): acting = exact Shapley "
            "over the agents (their own actions); informing = the summed credit of the messages each agent sent.",
            "",
            "| agent | " + " | ".join(split.columns) + " |",
            "|---|" + "---|" * len(split.columns),
        ]
        text += [
            f"| agent_{a} | " + " | ".join(f"{v:.3f}" for v in row.to_numpy()) + " |" for a, row in split.iterrows()
        ]
        text += ["", f"![credit per message](edges_{game}.png)", ""]
        _edge_plot(run_dir, edges[edges["game"] == game], game)
    text += ["### Columns (messages)", ""] + [f"- **{k}**: {v}" for k, v in EDGE_HELP.items()] + [""]
    return text


def _edge_plot(run_dir: Path, part, game: str) -> None:
    """The topology drawn with networkx, one panel per estimator (the first: exact edge Shapley),
    each edge coloured by its mean credit over episodes and seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    estimators = list(dict.fromkeys(part["estimator"]))
    panels = [("exact edge Shapley", part[part["estimator"] == estimators[0]], "truth")]
    panels += [(est, part[part["estimator"] == est], "credit") for est in estimators]
    means = [p.groupby(["sender", "receiver"])[col].sum() / len(p.groupby(["seed", "episode"])) for _, p, col in panels]
    top = max(max(abs(float(m.max())), abs(float(m.min()))) for m in means) or 1.0
    agents = sorted(set(part["sender"]) | set(part["receiver"]))
    graph = nx.DiGraph()
    graph.add_nodes_from(agents)
    graph.add_edges_from(means[0].index)
    pos = nx.circular_layout(graph)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    cmap = plt.get_cmap("coolwarm")
    for ax, (title, _, _), mean in zip(axes[0], panels, means):
        edges = list(mean.index)
        colours = [cmap(0.5 + 0.5 * float(mean[e]) / top) for e in edges]
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_color="#dddddd", node_size=500)
        nx.draw_networkx_labels(graph, pos, ax=ax, labels={a: f"a{a}" for a in agents}, font_size=8)
        nx.draw_networkx_edges(
            graph, pos, ax=ax, edgelist=edges, edge_color=colours, width=3, arrows=True, node_size=500
        )
        nx.draw_networkx_edge_labels(
            graph, pos, ax=ax, edge_labels={e: f"{float(mean[e]):.2f}" for e in edges}, font_size=7
        )
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{game}: mean credit per message edge (blue < 0 < red)", fontsize=10, y=1.03)
    save_figure(run_dir / f"edges_{game}.png", fig)
    plt.close(fig)
