"""Credit at scale: each budgeted estimator's normalised error against the closed-form truth of the
crew games, at budgets of k x N coalition evaluations, side by side with shapiq's approximators on
the same episodes, the same value functions and the same budgets, in the same run.

Per (game, N, budget, estimator) and seed: one episode of a scripted team (skill 0.8, 5% malformed
answers; the seed draws the task, the team's answers and the estimator's design) and its NRMSE =
RMSE(credit - phi*) / RMS(phi*) over the agents. Printed: the median over seeds with a
distribution-free 95% CI of the median (order statistics of the binomial), the best of ours and of
shapiq's, and their ratio. `--cost` instead times every estimator (and its counterfactual fill) at
N = 64, B = 4096, budget 10N, each in a fresh process for its peak memory.

shapiq's RegressionMSR is not in shapiq 1.4.1 (the newest on PyPI when this was written), so it is
not run; its SHAP-IQ-family and stratified approximators are, beside the four the issue names.
Usage: python benchmarks/scale.py [--sizes 16 32 64] [--budgets 2 4 10 100] [--seeds 20]
       [--games harvest squads ...] [--noise 0.01] [--json out.json]  |  python benchmarks/scale.py --cost
`--noise` adds known noise to every coalition value (the study knob `coalition_noise`; the same draw
per episode and coalition for ours and shapiq's): each estimator's noise floor.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_credit.agents import ScriptedTeam  # noqa: E402
from mas_credit.coalitions import bits_to_masks, hashed_normal  # noqa: E402
from mas_credit.counterfactual import (
    fill_needs,  # noqa: E402
    noise_salt,  # noqa: E402
)
from mas_credit.estimators import get_estimator  # noqa: E402
from mas_credit.games import make_game  # noqa: E402
from mas_credit.rollout import collect  # noqa: E402
from mas_credit.types import CreditBatch  # noqa: E402

GAMES = {
    "harvest": ("harvest", {}),
    "squads": ("squads", {}),
    "beacons": ("beacons", {}),
    "senate": ("senate", {}),
    "convoy": ("convoy", {}),
    "airport": ("airport", {}),
    "gloves": ("gloves", {}),
    "projects": ("projects", {}),
    "projects2": ("projects", {"max_order": 2}),
}
OURS = {
    "permutation": ("shapley", {"method": "sampled"}),
    "kernelshap": ("kernelshap", {}),
    "svarm": ("svarm", {}),
    "banzhaf": ("banzhaf", {}),
    "loworder": ("loworder", {}),
    "amortised": ("amortised", {}),
}
SHAPIQ = ["KernelSHAP", "SVARM", "PermutationSamplingSV", "kADDSHAP", "StratifiedSamplingSV", "UnbiasedKernelSHAP"]


def shapiq_approximator(name: str, n_agents: int, seed: int):
    import shapiq

    if name == "KernelSHAP":
        return shapiq.KernelSHAP(n_agents, pairing_trick=True, random_state=seed)
    if name == "kADDSHAP":
        return shapiq.kADDSHAP(n_agents, max_order=2, random_state=seed)
    if name == "SVARM":
        return shapiq.SVARM(n_agents, random_state=seed)
    return getattr(shapiq, name)(n_agents, random_state=seed)


def nrmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    scale = float(np.sqrt((truth**2).mean()))
    return float(np.sqrt(((estimate - truth) ** 2).mean())) / scale if scale > 0 else float("nan")


def episode_for(game_key: str, n_agents: int, seed: int):
    name, params = GAMES[game_key]
    game = make_game(name, n_agents=n_agents, difficulty=1, **params)
    team = ScriptedTeam([0.8] * n_agents, malformed_rate=0.05, seed=seed)
    return game, collect(game, team, n_tasks=1, group_size=1, seed=seed)[0]


def one_case(args) -> list[dict]:
    """Every estimator, ours and shapiq's, on one (game, N, seed) at every budget."""
    game_key, n_agents, seed, budgets, which, noise = args
    warnings.simplefilter("ignore")
    game, episode = episode_for(game_key, n_agents, seed)
    truth = game.shapley(episode)
    if np.sqrt((truth**2).mean()) == 0:
        return []  # a team with no credit to find (nobody scored): no error to normalise
    rows = []
    for k in budgets:
        budget = k * n_agents
        if budget > 1 << n_agents:
            continue
        for label, (name, knobs) in OURS.items():
            if label not in which:
                continue
            est = get_estimator(name)
            try:
                cfg = est.make_config({**knobs, "budget": budget, "seed": seed, "device": "cpu"})
                needs = est.needs(cfg, n_agents)
            except ValueError:
                continue  # below the method's minimum at this budget
            eps = [episode_copy(episode)]
            start = time.perf_counter()
            fill_needs(game, eps, needs, noise=noise)
            phi = est(CreditBatch.from_episodes(eps), cfg).credit[0].numpy()
            rows.append(
                row(game_key, n_agents, k, seed, label, "ours", nrmse(phi, truth), len(needs.coalitions), start)
            )
        for label in SHAPIQ:
            if label not in which:
                continue
            calls = {"n": 0}

            def value(coalitions, calls=calls):
                coalitions = np.atleast_2d(coalitions).astype(bool)
                calls["n"] += len(coalitions)
                values = game.team_values(episode, coalitions)
                if noise:  # the same known draw per (episode, coalition) that ours read
                    values = values + noise * hashed_normal(bits_to_masks(coalitions), noise_salt(episode))
                return values

            start = time.perf_counter()
            try:
                values = shapiq_approximator(label, n_agents, seed).approximate(budget, value)
            except Exception as err:  # noqa: BLE001 - a library's refusal at a budget is a result, not a crash
                rows.append(
                    {
                        **row(game_key, n_agents, k, seed, label, "shapiq", float("nan"), 0, start),
                        "error": str(err)[:80],
                    }
                )
                continue
            phi = np.array([values[(i,)] for i in range(n_agents)])
            rows.append(row(game_key, n_agents, k, seed, label, "shapiq", nrmse(phi, truth), calls["n"], start))
    return rows


def episode_copy(episode):
    from mas_credit.types import Episode

    copy = Episode.from_dict(episode.to_dict())
    copy.coalition_values = {}
    return copy


def row(game, n_agents, k, seed, estimator, side, error, evals, start):
    return {
        "game": game,
        "n_agents": n_agents,
        "k": k,
        "seed": seed,
        "estimator": estimator,
        "side": side,
        "nrmse": error,
        "evals": evals,
        "seconds": time.perf_counter() - start,
    }


def median_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Median and a distribution-free 95% CI of it: order statistics j..k with P(j <= Bin(n, 1/2) < k) >= 0.95."""
    values = np.sort(values[np.isfinite(values)])
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    lo = int(binom.ppf(0.025, n, 0.5))
    hi = int(min(n - 1, n - lo - 1 if lo > 0 else n - 1))
    return float(np.median(values)), float(values[max(lo - 1, 0)]), float(values[hi])


def report(rows: list[dict], sizes, budgets, games) -> str:
    lines = []
    for game in games:
        for n_agents in sizes:
            part = [r for r in rows if r["game"] == game and r["n_agents"] == n_agents]
            if not part:
                continue
            names = list(dict.fromkeys(r["estimator"] for r in part))
            lines.append(f"\n## {game}, N = {n_agents}: NRMSE median [95% CI] over seeds")
            lines.append("| estimator | " + " | ".join(f"{k}N" for k in budgets) + " |")
            lines.append("|---|" + "---|" * len(budgets))
            best: dict = {}
            for name in names:
                cells = []
                for k in budgets:
                    errs = np.array([r["nrmse"] for r in part if r["estimator"] == name and r["k"] == k])
                    if len(errs) == 0 or not np.isfinite(errs).any():
                        cells.append("–")
                        continue
                    med, lo, hi = median_ci(errs)
                    side = next(r["side"] for r in part if r["estimator"] == name)
                    if med < best.get((side, k), (np.inf, ""))[0]:
                        best[(side, k)] = (med, name)
                    cells.append(f"{med:.3f} [{lo:.3f}, {hi:.3f}] (n={np.isfinite(errs).sum()})")
                side = next(r["side"] for r in part if r["estimator"] == name)
                lines.append(f"| {name} ({side}) | " + " | ".join(cells) + " |")
            ratio = []
            for k in budgets:
                ours, theirs = best.get(("ours", k)), best.get(("shapiq", k))
                if ours and theirs:
                    times = "exact" if ours[0] < 1e-9 else f"{ours[0] / max(theirs[0], 1e-300):.3f}x"
                    ratio.append(f"{k}N: ours {ours[1]} {ours[0]:.3f} / shapiq {theirs[1]} {theirs[0]:.3f} = {times}")
            lines.append("best of ours over best of shapiq (median NRMSE): " + "; ".join(ratio))
    return "\n".join(lines)


def cost(n_agents: int, episodes: int, per_agent: int) -> None:
    """Each estimator's fill, batch and estimator time and its process's peak memory, fresh process each."""
    ctx = multiprocessing.get_context("spawn")
    print(f"cost at N = {n_agents}, B = {episodes}, budget {per_agent}N = {per_agent * n_agents} (projects, CPU)")
    print("| estimator | fill s | batch s | estimator s | coalition table MB | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for label in OURS:
        with ctx.Pool(1) as pool:
            out = pool.apply(cost_one, (label, n_agents, episodes, per_agent))
        print(
            f"| {label} | {out['fill_s']:.2f} | {out['batch_s']:.2f} | {out['estimator_s']:.3f} | "
            f"{out['table_mb']:.1f} | {out['peak_mb']:.0f} |"
        )


def cost_one(label: str, n_agents: int, episodes: int, per_agent: int) -> dict:
    import torch

    torch.set_num_threads(1)
    name, knobs = OURS[label]
    game = make_game("projects", n_agents=n_agents)
    team = ScriptedTeam([0.8] * n_agents, malformed_rate=0.05, seed=0)
    eps = collect(game, team, n_tasks=episodes // 4, group_size=4, seed=0)
    est = get_estimator(name)
    cfg = est.make_config({**knobs, "budget": per_agent * n_agents, "device": "cpu"})
    start = time.perf_counter()
    fill_needs(game, eps, est.needs(cfg, n_agents))
    fill_s = time.perf_counter() - start
    start = time.perf_counter()
    batch = CreditBatch.from_episodes(eps)
    batch_s = time.perf_counter() - start
    start = time.perf_counter()
    est(batch, cfg)
    estimator_s = time.perf_counter() - start
    return {
        "fill_s": fill_s,
        "batch_s": batch_s,
        "estimator_s": estimator_s,
        "table_mb": batch.coalition_table.numel() * 8 / 1e6,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--budgets", type=int, nargs="+", default=[2, 4, 10, 100])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES))
    parser.add_argument("--only", nargs="+", default=list(OURS) + SHAPIQ, help="estimators to run (ours and shapiq's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--noise", type=float, default=0.0, help="known Gaussian noise on every v(S), ours and shapiq's alike"
    )
    parser.add_argument("--json", default="", help="also write every row here")
    parser.add_argument("--cost", action="store_true", help="time and memory at N = 64, B = 4096, budget 10N instead")
    args = parser.parse_args(argv)
    if args.cost:
        cost(64, 4096, 10)
        return 0
    cases = [
        (g, n, s, tuple(args.budgets), tuple(args.only), args.noise)
        for g in args.games
        for n in args.sizes
        for s in range(args.seeds)
    ]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        rows = [r for part in pool.imap_unordered(one_case, cases) for r in part]
    print(f"{len(cases)} (game, N, seed) cases, {len(rows)} rows in {time.perf_counter() - start:.0f} s")
    print(report(rows, args.sizes, args.budgets, args.games))
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
