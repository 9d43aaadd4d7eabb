"""Scripted rollout throughput: episodes per second of `collect` with a scripted team,
per game, at N = 3 and N = 8 (one process, this machine).
Usage: python benchmarks/scripted_rollout.py [--episodes 2000]
"""

from __future__ import annotations

import argparse
import time

from mas_credit.agents import ScriptedTeam
from mas_credit.games import list_games, make_game
from mas_credit.rollout import collect


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'game':<14}{'N=3 eps/s':>12}{'N=8 eps/s':>12}")
    for name in list_games():
        rates = []
        for n in (3, 8):
            game = make_game(name, n_agents=n, difficulty=2)
            start = time.perf_counter()
            collect(
                game, ScriptedTeam([0.8] * n, malformed_rate=0.05), n_tasks=args.episodes // 4, group_size=4, seed=0
            )
            rates.append(args.episodes / (time.perf_counter() - start))
        print(f"{name:<14}{rates[0]:>12.0f}{rates[1]:>12.0f}")


if __name__ == "__main__":
    main()
