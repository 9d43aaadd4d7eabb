"""Runs a team in a game and records `Episode`s.

`collect` plays n_tasks x group_size episodes (the episodes of one task form a
group) in lock-step: at each step one `team.act` call covers every episode that is
waiting for an agent, which is what lets LLM backends batch generation. Everything
random is derived from `seed`, so the same call gives the same episodes.
"""
from __future__ import annotations

import copy

import numpy as np

from mas_credit.agents.scripted import ActRequest
from mas_credit.types import Episode


def task_seeds_for(seed: int, n_tasks: int) -> list[int]:
    """The task seeds a collect with this seed plays (distinct across seeds)."""
    return [int(s) for s in np.random.SeedSequence([int(seed), 0x7A5C]).generate_state(n_tasks)]


def collect(game, team, n_tasks: int, group_size: int = 1, seed: int = 0, task_seeds: list[int] | None = None) -> list[Episode]:
    """Play `n_tasks x group_size` episodes of `game` with `team`.

    Episode b plays task b // group_size; its `group` is that task's index. Pass
    `task_seeds` to choose the tasks yourself (e.g. held-out evaluation seeds).
    """
    if team.n_agents != game.n_agents:
        raise ValueError(f"the team has {team.n_agents} agents but {game.name} was made for {game.n_agents}; "
                         f"give the team {game.n_agents} agents (team.skills) or set game.n_agents: {team.n_agents}")
    if n_tasks < 1 or group_size < 1:
        raise ValueError(f"n_tasks and group_size must be >= 1, got n_tasks={n_tasks}, group_size={group_size}")
    seeds = task_seeds_for(seed, n_tasks) if task_seeds is None else [int(s) for s in task_seeds]
    if len(seeds) != n_tasks:
        raise ValueError(f"task_seeds has {len(seeds)} seeds but n_tasks={n_tasks}")
    envs, rngs = [], []
    for t, task_seed in enumerate(seeds):
        for k in range(group_size):
            env = copy.copy(game)
            env.reset(seed=task_seed)
            envs.append(env)
            rngs.append(np.random.default_rng([int(seed), t, k, team.seed]))
    if game.sequential:
        _play_turns(envs, rngs, team)
    else:
        _play_simultaneous(envs, rngs, team)
    episodes = []
    for b, env in enumerate(envs):
        ep = env.episode(group=b // group_size)
        ep.info.update(task_index=b // group_size, member=b % group_size, seed=int(seed))
        episodes.append(ep)
    return episodes


def _attach(turn, result):
    turn.prompt_ids, turn.response_ids, turn.logprobs = result.prompt_ids, result.response_ids, result.logprobs


def _play_simultaneous(envs, rngs, team):
    requests = [ActRequest(env, i, env.observe(agent)["text"], rng)
                for env, rng in zip(envs, rngs) for i, agent in enumerate(env.possible_agents)]
    results = team.act(requests)
    n = envs[0].n_agents
    for b, env in enumerate(envs):
        mine = results[b * n:(b + 1) * n]
        env.step({agent: res.text for agent, res in zip(env.possible_agents, mine)})
        for turn, res in zip(env.history[-n:], mine):
            _attach(turn, res)


def _play_turns(envs, rngs, team):
    live = list(range(len(envs)))
    while live:
        requests, waiting = [], []
        for b in live:
            env = envs[b]
            while env.agents and (env.terminations[env.agent_selection] or env.truncations[env.agent_selection]):
                env.step(None)
            if env.agents:
                i = env.agent_index[env.agent_selection]
                requests.append(ActRequest(env, i, env.observe(i)["text"], rngs[b]))
                waiting.append(b)
        if not requests:
            break
        for b, res in zip(waiting, team.act(requests)):
            envs[b].step(res.text)
            _attach(envs[b].history[-1], res)
        live = waiting
