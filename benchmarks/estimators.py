"""Each estimator's vectorised torch version versus its slow reference (tests/reference.py),
on B = 4096 episodes of N = 8 agents, and the estimator's time as a share of what it
costs to produce its inputs (scripted rollout + the counterfactuals it needs).

Both sides run in the same process on the same batch and are checked equal. Estimator
times are the median of --repeats runs; the slow references run once. On a machine
with CUDA the estimators are timed there too (synchronised).
Usage: python benchmarks/estimators.py [--tasks 512] [--group 8] [--n-agents 8] [--game council]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_credit.agents import ScriptedTeam  # noqa: E402
from mas_credit.agents.critic import ScriptedCritic, fill_critic  # noqa: E402
from mas_credit.counterfactual import fill_alternatives, fill_coalitions  # noqa: E402
from mas_credit.estimators import get_estimator  # noqa: E402
from mas_credit.estimators.m_grpo import alignment_draws  # noqa: E402
from mas_credit.games import make_game  # noqa: E402
from mas_credit.rollout import collect, collect_tree  # noqa: E402
from mas_credit.types import CreditBatch  # noqa: E402
from tests import reference  # noqa: E402

# (label, estimator, knobs, slow reference, which prepared inputs it needs)
CASES = [
    ("grpo", "grpo", {}, reference.grpo, ()),
    ("dr_mas", "dr_mas", {}, reference.dr_mas, ()),
    ("m_grpo", "m_grpo", {}, "m_grpo", ()),
    ("shapley exact", "shapley", {}, reference.shapley, ("all",)),
    ("shapley sampled/64", "shapley", {"method": "sampled", "budget": 64}, reference.shapley, ("all",)),
    ("sharp", "sharp", {}, reference.sharp, ("all",)),
    ("c3 counterfactual", "c3", {}, reference.c3_counterfactual, ("loo",)),
    ("c3 tree [2,4]", "c3", {"mode": "tree"}, reference.c3_tree, ("tree",)),
    ("llm_mca", "llm_mca", {}, reference.llm_mca, ("critic",)),
    ("loo", "loo", {}, reference.loo, ("loo",)),
    ("coma k=2", "coma", {"samples": 2}, reference.coma, ("alternatives",)),
]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_reference(fn, batch, cfg):
    if fn == "m_grpo":
        drop, pick = alignment_draws(batch.batch_size, batch.n_turns, cfg)
        return reference.m_grpo(batch, cfg, drop.tolist(), pick.tolist())[:2]
    return fn(batch, cfg)[:2]  # credit, advantage (c3_tree's reference also gives the turn weights)


def median_time(fn, repeats, sync=None):
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="council")
    parser.add_argument("--n-agents", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=512)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    n = args.n_agents
    game = make_game(args.game, n_agents=n, lazy_agents=[n - 1])
    team = ScriptedTeam([0.8] * n, malformed_rate=0.05, seed=0)

    episodes, t_rollout = timed(lambda: collect(game, team, args.tasks, args.group, seed=0))
    tree, t_tree = timed(lambda: collect_tree(game, team, args.tasks, [2, 4], seed=0))
    cost = {(): 0.0}
    _, cost[("all",)] = timed(lambda: fill_coalitions(game, episodes, "all"))
    cost[("loo",)] = cost[("all",)] * (n + 1) / (1 << n)  # loo reads n+1 of the 2**n coalitions filled above
    _, cost[("alternatives",)] = timed(lambda: fill_alternatives(game, team, episodes, k=2))
    _, cost[("critic",)] = timed(lambda: fill_critic(game, ScriptedCritic(seed=0), episodes))
    cost[("tree",)] = t_tree - t_rollout  # the tree's extra cost over a flat rollout
    batch, t_batch = timed(lambda: CreditBatch.from_episodes(episodes))
    tree_batch = CreditBatch.from_episodes(tree)
    print(
        f"{game.name}, B = {batch.batch_size} episodes ({args.tasks} tasks x {args.group}), N = {n}, T = "
        f"{batch.n_turns}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(
        f"scripted rollout {t_rollout:.2f} s; all 2**N coalitions {cost[('all',)]:.2f} s; COMA re-draws (k=2) "
        f"{cost[('alternatives',)]:.2f} s; critic {cost[('critic',)]:.2f} s; tree rollout {t_tree:.2f} s; "
        f"CreditBatch.from_episodes {t_batch:.2f} s"
    )
    cuda = torch.cuda.is_available()
    header = f"{'estimator':<20}{'torch cpu (ms)':>15}{'reference (s)':>15}{'speed-up':>10}{'share of rollout+cf':>21}"
    print(header + (f"{'cuda (ms)':>11}" if cuda else ""))
    for label, name, knobs, ref, needs in CASES:
        est = get_estimator(name)
        data = tree_batch if needs == ("tree",) else batch
        cfg = est.make_config(dict(knobs, device="cpu"))
        out = est(data, cfg)
        t_fast = median_time(lambda: est(data, cfg), args.repeats)
        (credit, adv), t_slow = timed(lambda: run_reference(ref, data, cfg))
        np.testing.assert_allclose(out.credit.numpy(), np.array(credit), atol=1e-9, err_msg=label)
        np.testing.assert_allclose(out.advantage.numpy(), np.array(adv), atol=1e-9, err_msg=label)
        produce = t_rollout + cost[needs]
        line = (
            f"{label:<20}{1e3 * t_fast:>15.2f}{t_slow:>15.2f}{t_slow / t_fast:>9.0f}x{100 * t_fast / produce:>20.3f}%"
        )
        if cuda:
            gpu_cfg = est.make_config(dict(knobs, device="cuda"))
            gpu_data = data.to("cuda")
            est(gpu_data, gpu_cfg)
            line += f"{1e3 * median_time(lambda: est(gpu_data, gpu_cfg), args.repeats, torch.cuda.synchronize):>11.2f}"
        print(line)


if __name__ == "__main__":
    main()
