"""LLM team rollout throughput (SmolLM2 by default): the team's batched rollout versus
(a) one raw `model.generate` call over the same prompts, and (b) a naive loop that
generates per episode per agent (over the first --naive-episodes episodes' prompts: its
tokens/s does not depend on how many, and the whole loop would take minutes on a GPU,
where each call is bound by kernel launches); plus the cached model load versus the
first GGUF load.

All sides run in this process on the same prompts and sampling settings; tokens/s counts
generated tokens up to and including end-of-sequence. One vault step is one turn per
agent, so the team rollout is one batched generate call (adapters per row).
Usage: python benchmarks/rollout.py [--episodes 16] [--naive-episodes 4] [--max-new-tokens 24] [--skip-gguf]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_credit.agents import ActRequest, load_team  # noqa: E402
from mas_credit.agents.hf import generate, load_model  # noqa: E402
from mas_credit.config import load_team_config  # noqa: E402
from mas_credit.games import make_game  # noqa: E402
from mas_credit.rollout import collect, fresh_env, task_seeds_for  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--team", default="smollm_trio")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--naive-episodes", type=int, default=4, help="episodes the naive per-call loop generates for")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--skip-gguf", action="store_true", help="do not time the first (GGUF) load")
    args = parser.parse_args()
    cfg = dataclasses.replace(load_team_config(args.team), max_new_tokens=args.max_new_tokens)
    game = make_game("vault", n_agents=3)

    start = time.perf_counter()
    team = load_team(cfg, n_agents=3)
    t_load_team = time.perf_counter() - start
    print(
        f"team {args.team}: model {cfg.model}, sharing {cfg.sharing}, device {team.device} "
        f"({next(team.models[0].parameters()).dtype}), {torch.get_num_threads()} CPU threads; "
        f"{args.episodes} episodes x 3 agents, {cfg.max_new_tokens} new tokens max, temperature {cfg.temperature}"
    )

    # the team's rollout (warm-up first: the first generate call pays one-off costs)
    collect(game, team, n_tasks=2, seed=99)
    tokens0 = team.tokens
    start = time.perf_counter()
    episodes = collect(game, team, n_tasks=args.episodes, seed=0)
    t_team = time.perf_counter() - start
    team_tokens = team.tokens - tokens0

    # the same prompts, as the team built them
    chats = []
    for seed in task_seeds_for(0, args.episodes):
        env = fresh_env(game, seed)
        chats += [team.chat(ActRequest(env, i, env.observe(i)["text"], np.random.default_rng(0))) for i in range(3)]
    plain = load_model(cfg.model, team.device)  # the bare model: no adapters, no team
    generate(plain.model, plain.tokenizer, chats[:3], 4, seed=1)  # warm-up
    start = time.perf_counter()
    raw = generate(plain.model, plain.tokenizer, chats, cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed=0)
    t_raw = time.perf_counter() - start
    raw_tokens = sum(len(g.response_ids) for g in raw)

    start = time.perf_counter()
    naive_tokens = 0
    for k, chat in enumerate(chats[: 3 * min(args.naive_episodes, args.episodes)]):
        model = team.model_for(k % 3)
        names = [team.adapters[k % 3]]
        naive_tokens += len(
            generate(
                model,
                team.tokenizer,
                [chat],
                cfg.max_new_tokens,
                cfg.temperature,
                cfg.top_p,
                seed=k,
                adapter_names=names,
            )[0].response_ids
        )
    t_naive = time.perf_counter() - start

    team_rate, raw_rate, naive_rate = team_tokens / t_team, raw_tokens / t_raw, naive_tokens / t_naive
    print(f"{'side':<44}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}")
    print(f"{'team rollout (collect, adapters per row)':<44}{team_tokens:>8}{t_team:>9.2f}{team_rate:>10.1f}")
    print(f"{'one raw model.generate (bare base model)':<44}{raw_tokens:>8}{t_raw:>9.2f}{raw_rate:>10.1f}")
    print(f"{'naive loop, one generate per episode/agent':<44}{naive_tokens:>8}{t_naive:>9.2f}{naive_rate:>10.1f}")
    print(
        f"team / raw generate = {team_rate / raw_rate:.2f}x (target >= 0.85x); "
        f"team / naive loop = {team_rate / naive_rate:.1f}x (target >= 4x)"
    )
    valid = np.mean([t.valid for ep in episodes for t in ep.turns])
    print(f"parseable answers {valid:.0%}; team success {np.mean([ep.reward for ep in episodes]):.0%}")

    start = time.perf_counter()
    load_model(cfg.model, team.device)
    t_cached = time.perf_counter() - start
    line = f"model load from the safetensors cache {t_cached:.2f} s (team with adapters {t_load_team:.2f} s)"
    if not args.skip_gguf and cfg.model == "smollm2":
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["MAS_CREDIT_CACHE"] = tmp
            start = time.perf_counter()
            first = load_model(cfg.model, team.device)
            t_first = time.perf_counter() - start
            del os.environ["MAS_CREDIT_CACHE"]
        assert first.converted
        speedup = t_first / t_cached
        line += f"; first load from GGUF (de-quantise + cache) {t_first:.2f} s -> cached is {speedup:.0f}x faster"
    print(line)


if __name__ == "__main__":
    main()
