"""Runs a team in a game and records `Episode`s.

`collect` plays n_tasks x group_size episodes (the episodes of one task form a
group); `collect_tree` plays them as a prefix tree with a fan-out per turn (C3's
tree rollouts). Both, and the counterfactual re-runs in `mas_credit.counterfactual`,
go through one engine, `run_plans`: every episode is driven by a *plan* that says,
turn by turn, whether to replay a given text, ask the team's policy, or stop. All
episodes run in lock-step — at each step one `team.act` call covers every episode
waiting for its policy, which is what lets LLM backends batch generation.

Everything random is derived from `seed`, so the same call gives the same episodes.
This module must not compute credit or coalition values.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from mas_credit.agents.protocol import ActRequest, ActResult
from mas_credit.types import Episode


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


POLICY = _Sentinel("POLICY")
"""Plan answer: ask the team's policy for this turn."""
STOP = _Sentinel("STOP")
"""Plan answer: stop this episode before this turn (tree levels stop after the branching turn)."""
NULL = ActResult(text="")
"""Plan answer: the agent says nothing (every game parses that as its null action)."""

Plan = Callable[[int, int], Union[ActResult, _Sentinel]]
"""plan(turn_position, agent_index) -> a text to replay (ActResult), POLICY or STOP.
In a one-shot game the turn position of agent i is i (all answer at once)."""


@dataclass
class PlannedRun:
    """One episode driven by a plan. After `run_plans`, `results[t]` is what turn t
    played (replayed or fresh) and `done` says whether the episode ended."""

    env: object
    rng: np.random.Generator
    plan: Plan
    results: list = field(default_factory=list)
    done: bool = False


def task_seeds_for(seed: int, n_tasks: int) -> list[int]:
    """The task seeds a collect with this seed plays (distinct across seeds)."""
    return [int(s) for s in np.random.SeedSequence([int(seed), 0x7A5C]).generate_state(n_tasks)]


def _check(game, team, n_tasks, seed, task_seeds) -> list[int]:
    if team.n_agents != game.n_agents:
        raise ValueError(
            f"the team has {team.n_agents} agents but {game.name} was made for {game.n_agents}; "
            f"give the team {game.n_agents} agents (team.skills) or set game.n_agents: {team.n_agents}"
        )
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    seeds = task_seeds_for(seed, n_tasks) if task_seeds is None else [int(s) for s in task_seeds]
    if len(seeds) != n_tasks:
        raise ValueError(f"task_seeds has {len(seeds)} seeds but n_tasks={n_tasks}")
    return seeds


def fresh_env(game, task_seed: int, options: dict | None = None):
    """A copy of `game` reset to the task of `task_seed` (the game object itself is untouched);
    `options` go to `reset` (e.g. the messages to block in an edge counterfactual)."""
    env = copy.copy(game)
    env.reset(seed=int(task_seed), options=options)
    return env


def _always_policy(t, agent):
    return POLICY


def collect(
    game, team, n_tasks: int, group_size: int = 1, seed: int = 0, task_seeds: list[int] | None = None
) -> list[Episode]:
    """Play `n_tasks x group_size` episodes of `game` with `team`.

    Episode b plays task b // group_size; its `group` is that task's index. Pass
    `task_seeds` to choose the tasks yourself (e.g. held-out evaluation seeds).
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    seeds = _check(game, team, n_tasks, seed, task_seeds)
    runs = [
        PlannedRun(fresh_env(game, task_seed), np.random.default_rng([int(seed), t, k, team.seed]), _always_policy)
        for t, task_seed in enumerate(seeds)
        for k in range(group_size)
    ]
    run_plans(runs, team)
    episodes = []
    for b, run in enumerate(runs):
        ep = run.env.episode(group=b // group_size)
        ep.info.update(task_index=b // group_size, member=b % group_size, seed=int(seed))
        episodes.append(ep)
    return episodes


def collect_tree(game, team, n_tasks: int, fanout, seed: int = 0, task_seeds: list[int] | None = None) -> list[Episode]:
    """Tree fan-out rollouts (C3): per task, the turn at position l is drawn `fanout[l]`
    times for each distinct prefix, in turn (topological) order; later turns are drawn
    once. Each leaf is one episode; the leaves of a task form its group
    (group size = prod(fanout)) and `info["tree_path"]` holds the child index taken at
    each branching turn.

    Children share their parent's prefix by replaying its recorded texts (with their
    token ids), not by re-drawing them, so this works for LLM policies as well as
    scripted ones. In a one-shot game the turn order is the agent order. An episode
    that ends before a branching turn gives identical children there.
    """
    fanout = [int(f) for f in fanout]
    if not fanout or any(f < 1 for f in fanout):
        raise ValueError(f"fanout must be a non-empty list of integers >= 1 (one per branching turn), got {fanout}")
    seeds = _check(game, team, n_tasks, seed, task_seeds)

    def prefix_plan(prefix, stop_at):
        def plan(t, agent):
            if t < len(prefix):
                return prefix[t]
            return POLICY if stop_at is None or t < stop_at else STOP

        return plan

    nodes = [(t, (), []) for t in range(len(seeds))]  # (task index, path, prefix results)
    for level, width in enumerate(fanout):
        runs, keys = [], []
        for t, path, prefix in nodes:
            for c in range(width):
                rng = np.random.default_rng([int(seed), t, *path, c, team.seed, 0x7EE])
                runs.append(PlannedRun(fresh_env(game, seeds[t]), rng, prefix_plan(prefix, level + 1)))
                keys.append((t, path + (c,)))
        run_plans(runs, team)
        nodes = [(t, path, run.results) for (t, path), run in zip(keys, runs)]
    runs = [
        PlannedRun(
            fresh_env(game, seeds[t]),
            np.random.default_rng([int(seed), t, *path, team.seed, 0x1EAF]),
            prefix_plan(prefix, None),
        )
        for t, path, prefix in nodes
    ]
    run_plans(runs, team)
    episodes = []
    leaves = math.prod(fanout)
    for b, ((t, path, _), run) in enumerate(zip(nodes, runs)):
        ep = run.env.episode(group=t)
        ep.info.update(task_index=t, member=b % leaves, seed=int(seed), tree_path=list(path), fanout=fanout)
        episodes.append(ep)
    return episodes


def run_plans(runs: list[PlannedRun], team) -> dict[str, float]:
    """Drive every run to its end (or its STOP) in lock-step; one `team.act` per step.
    Returns `policy_calls` and `tokens` (response tokens, where the policy reports ids)."""
    counts = {"policy_calls": 0.0, "tokens": 0.0}
    if not runs:
        return counts
    if runs[0].env.sequential:
        _run_turns(runs, team, counts)
    else:
        _run_simultaneous(runs, team, counts)
    return counts


def _ask(team, requests, counts) -> list[ActResult]:
    if not requests:
        return []
    results = team.act(requests)
    counts["policy_calls"] += len(requests)
    counts["tokens"] += sum(len(r.response_ids) for r in results if r.response_ids is not None)
    return results


def _attach(turn, result: ActResult):
    turn.prompt_ids, turn.response_ids, turn.logprobs = result.prompt_ids, result.response_ids, result.logprobs


def _run_simultaneous(runs, team, counts):
    requests, slots = [], []
    for b, run in enumerate(runs):
        for i in range(run.env.n_agents):
            answer = run.plan(i, i)
            if answer is STOP:
                break
            run.results.append(answer)
            if answer is POLICY:
                requests.append(ActRequest(run.env, i, run.env.observe(i)["text"], run.rng))
                slots.append((b, i))
    for (b, i), result in zip(slots, _ask(team, requests, counts)):
        runs[b].results[i] = result
    for run in runs:
        env = run.env
        if len(run.results) < env.n_agents:
            continue
        env.step({agent: res.text for agent, res in zip(env.possible_agents, run.results)})
        for turn, res in zip(env.history[-env.n_agents :], run.results):
            _attach(turn, res)
        run.done = True


def _run_turns(runs, team, counts):
    live = list(range(len(runs)))
    while live:
        requests, waiting, still = [], [], []
        for b in live:
            run, env = runs[b], runs[b].env
            while True:  # replayed turns need no policy: play them now
                while env.agents and (env.terminations[env.agent_selection] or env.truncations[env.agent_selection]):
                    env.step(None)
                if not env.agents:
                    run.done = True
                    break
                t, i = len(env.history), env.agent_index[env.agent_selection]
                answer = run.plan(t, i)
                if answer is STOP:
                    break
                if answer is POLICY:
                    requests.append(ActRequest(env, i, env.observe(i)["text"], run.rng))
                    waiting.append(b)
                    break
                env.step(answer.text)
                _attach(env.history[-1], answer)
                run.results.append(answer)
        for b, result in zip(waiting, _ask(team, requests, counts)):
            runs[b].env.step(result.text)
            _attach(runs[b].env.history[-1], result)
            runs[b].results.append(result)
            still.append(b)
        live = still
