"""Random synthetic batches for estimator tests and benchmarks: any team size, group
size (1 included), agents that never act, several turns per agent, invalid turns and
turns off the asked form, components of 0, 1/2 and 1,
zero-variance groups, and coalition tables in which an agent that did not act is a
null player (as in every real game)."""

from __future__ import annotations

import numpy as np

from mas_credit.types import CreditBatch, Episode, Turn


def random_episodes(
    seed: int, n_agents: int, group_size: int, n_groups: int = 3, absent: float = 0.25, max_turns_per_agent: int = 2
) -> list[Episode]:
    rng = np.random.default_rng([seed, n_agents, group_size])
    episodes = []
    for g in range(n_groups):
        tied = rng.random() < 0.25  # a zero-variance group
        for k in range(group_size):
            order = [
                i
                for i in range(n_agents)
                if rng.random() >= absent
                for _ in range(int(rng.integers(1, max_turns_per_agent + 1)))
            ]
            rng.shuffle(order)
            turns = [
                Turn(agent=int(a), step=t, prompt="", text="x", action=None, valid=bool(u < 0.8), format=bool(u < 0.6))
                for t, (a, u) in enumerate(zip(order, rng.random(len(order))))
            ]
            acted = np.zeros(n_agents, dtype=bool)
            acted[list(set(order))] = True
            acting_mask = int(sum(1 << i for i in range(n_agents) if acted[i]))
            base = rng.choice([0.0, 1.0], size=1 << n_agents) if rng.random() < 0.5 else rng.normal(size=1 << n_agents)
            values = {m: float(base[m & acting_mask]) for m in range(1 << n_agents)}  # absent agents are null players
            reward = 1.0 if tied else values[(1 << n_agents) - 1]
            values[(1 << n_agents) - 1] = reward
            # keep the null-player property for the full coalition too
            for m in range(1 << n_agents):
                if m & acting_mask == acting_mask:
                    values[m] = reward
            shares = rng.dirichlet(np.ones(n_agents))
            episodes.append(
                Episode(
                    game="synthetic",
                    task_seed=g,
                    group=g,
                    agents=[f"agent_{i}" for i in range(n_agents)],
                    turns=turns,
                    reward=reward,
                    components={
                        "format": rng.choice([0.0, 0.5, 1.0], n_agents).tolist(),
                        "correct": rng.choice([0.0, 0.5, 1.0], n_agents).tolist(),
                        "tool": rng.random(n_agents).tolist(),
                    },
                    coalition_values=values,
                    alternative_values={i: float(rng.normal()) for i in range(n_agents) if acted[i]},
                    critic={"text": "", "shares": shares.tolist(), "fallback": bool(rng.random() < 0.1)},
                    info={"member": k},
                )
            )
    return episodes


def random_batch(seed: int, n_agents: int, group_size: int, **kwargs) -> CreditBatch:
    return CreditBatch.from_episodes(random_episodes(seed, n_agents, group_size, **kwargs))
