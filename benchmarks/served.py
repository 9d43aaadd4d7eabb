"""The llm_mca critic behind a server: critic calls per second against a local
`transformers serve` (the default model) at concurrency 1, 4 and 8, and one study's wall
time with the served critic against the in-process critic (kind llm, the same model) on
the same episodes, in one run. Prints each and the ratios. The cache is off throughout.
Usage: python benchmarks/served.py [--episodes 16] [--max-new-tokens 32] [--port 8765]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mas_credit.agents import ScriptedTeam  # noqa: E402
from mas_credit.agents.critic import fill_critic  # noqa: E402
from mas_credit.agents.hf import default_model_path  # noqa: E402
from mas_credit.agents.served import ServedCritic, local_server, served_settings  # noqa: E402
from mas_credit.config import load_experiment  # noqa: E402
from mas_credit.games import make_game  # noqa: E402
from mas_credit.rollout import collect  # noqa: E402
from mas_credit.studies import run_study  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16, help="critic calls per concurrency level")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    folder, _ = default_model_path()
    game = make_game("vault", n_agents=3)
    episodes = collect(game, ScriptedTeam([0.9, 0.8, 0.7]), n_tasks=args.episodes // 2, group_size=2, seed=0)
    with local_server(folder, args.port) as url:
        base = {"base_url": url, "model": str(folder), "max_new_tokens": args.max_new_tokens, "timeout_s": 600.0}
        warm = ServedCritic(served_settings(base, "bench"), cache=False)
        fill_critic(game, warm, episodes[:1])  # the first call loads the model
        rates = {}
        for concurrency in (1, 4, 8):
            critic = ServedCritic(served_settings({**base, "max_concurrency": concurrency}, "bench"), cache=False)
            for ep in episodes:
                ep.critic = {}
            start = time.perf_counter()
            fill_critic(game, critic, episodes)
            rates[concurrency] = len(episodes) / (time.perf_counter() - start)
            print(
                f"served critic, concurrency {concurrency}: {rates[concurrency]:.2f} calls/s "
                f"({critic.counts['failures']} failed, {critic.counts['completion_tokens']} tokens)"
            )
        print(f"concurrency 4 / 1: {rates[4] / rates[1]:.2f}x; 8 / 1: {rates[8] / rates[1]:.2f}x")

        study = [
            "games=[vault]",
            "seeds=[0]",
            f"n_tasks={args.episodes // 2}",
            "group_size=2",
            "estimators=[llm_mca]",
            f"critic.max_new_tokens={args.max_new_tokens}",
            "critic.decoding=free",
        ]
        walls = {}
        with tempfile.TemporaryDirectory() as tmp:
            for kind, more in (
                ("llm", ["critic.kind=llm", "critic.model=smollm2"]),
                (
                    "openai",
                    [
                        "critic.kind=openai",
                        f"critic.base_url={url}",
                        f"critic.model={folder}",
                        "critic.max_concurrency=8",
                        "critic.cache=false",
                    ],
                ),
            ):
                cfg = load_experiment(ROOT / "experiments" / "study_quickstart.yaml", study + more)
                start = time.perf_counter()
                run_study(cfg, out_dir=Path(tmp) / kind, progress=False)
                walls[kind] = time.perf_counter() - start
                print(f"study with the {kind} critic ({args.episodes} episodes): {walls[kind]:.1f} s")
        print(f"served / in-process study wall time: {walls['openai'] / walls['llm']:.2f}x")


if __name__ == "__main__":
    main()
