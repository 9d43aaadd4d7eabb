"""Batched `team_values` over all 2**N coalitions versus evaluating each coalition by
re-running the env through the PettingZoo API (reset + step with the recorded texts
of the agents inside the mask and empty text for the others).

Both sides are timed in the same run on the same episodes, and checked equal.
Usage: python benchmarks/team_value.py [--n-agents 8] [--episodes 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mas_credit.agents import ScriptedTeam
from mas_credit.games import make_game
from mas_credit.games.base import play_texts
from mas_credit.rollout import collect


def rerun_through_api(game, episode, mask):
    texts = {}
    for turn in episode.turns:
        texts.setdefault(turn.agent, []).append(turn.text)
    return play_texts(game, episode.task_seed, lambda i, k: texts[i][k] if (mask >> i) & 1 else "").episode().reward


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-agents", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    n, masks = args.n_agents, np.arange(1 << args.n_agents)
    print(f"N = {n}, {1 << n} coalitions per episode, {args.episodes} episodes per game")
    print(f"{'game':<14}{'kind':<10}{'batched (ms/ep)':>17}{'env API (ms/ep)':>17}{'speed-up':>10}")
    for name in ["vault", "potluck", "lookout", "council", "relay"]:
        game = make_game(name, n_agents=n, difficulty=2, lazy_agents=[1])
        episodes = collect(game, ScriptedTeam([0.8] * n, malformed_rate=0.05), n_tasks=args.episodes, seed=0)
        start = time.perf_counter()
        fast = [game.team_values(ep, masks) for ep in episodes]
        t_fast = time.perf_counter() - start
        slow_env = make_game(name, n_agents=n, difficulty=2, lazy_agents=[1])
        start = time.perf_counter()
        slow = [[rerun_through_api(slow_env, ep, int(m)) for m in masks] for ep in episodes]
        t_slow = time.perf_counter() - start
        assert np.array_equal(np.array(fast), np.array(slow)), f"{name}: batched and API values differ"
        kind = "AEC" if game.sequential else "one-shot"
        print(
            f"{game.name:<14}{kind:<10}{1e3 * t_fast / len(episodes):>17.3f}{1e3 * t_slow / len(episodes):>17.1f}"
            f"{t_slow / t_fast:>9.0f}x"
        )


if __name__ == "__main__":
    main()
