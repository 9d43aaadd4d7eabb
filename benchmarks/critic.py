"""The LLM critic of llm_mca: strict parse rate and critic calls per second, free decoding
(the model writes its answer) against structured decoding (the keys are written for it;
it chooses only each share's digits), on the same episodes in one process run; prints
both and the speed ratio.
Usage: python benchmarks/critic.py [--model smollm2] [--tasks 4] [--group 4] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_credit.agents import ScriptedTeam  # noqa: E402
from mas_credit.agents.critic import fill_critic  # noqa: E402
from mas_credit.agents.hf import load_model  # noqa: E402
from mas_credit.agents.llm import LLMCritic  # noqa: E402
from mas_credit.games import make_game  # noqa: E402
from mas_credit.rollout import collect  # noqa: E402

GAMES = ["vault", "lookout"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    loaded = load_model(args.model)
    episodes = {}
    for name in GAMES:
        game = make_game(name, n_agents=3)
        episodes[name] = (
            game,
            collect(game, ScriptedTeam([0.8, 0.7, 0.6], seed=1), n_tasks=args.tasks, group_size=args.group, seed=0),
        )
    speed = {}
    for decoding in ("free", "structured"):
        critic = LLMCritic(args.model, max_new_tokens=64, loaded=loaded, decoding=decoding, batch_size=args.batch_size)
        strict = total = 0
        seconds = 0.0
        for name, (game, eps) in episodes.items():
            eps = copy.deepcopy(eps)
            start = time.perf_counter()
            fill_critic(game, critic, eps)
            seconds += time.perf_counter() - start
            strict += sum(bool(ep.critic["strict"]) for ep in eps)
            total += len(eps)
        speed[decoding] = total / seconds
        print(
            f"{decoding:>10}: strict parse {strict} of {total}; {speed[decoding]:.2f} critic calls/s "
            f"({seconds:.1f} s; batches of {args.batch_size}; games {', '.join(GAMES)})"
        )
    print(f"structured / free speed: {speed['structured'] / speed['free']:.2f}x")


if __name__ == "__main__":
    main()
