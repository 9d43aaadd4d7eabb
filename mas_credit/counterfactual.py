"""Counterfactual values for recorded episodes: coalition values v(S), COMA's
alternative-action values, and the critic's shares — whatever an estimator `needs`.

Coalition values, two modes (docs/architecture.md, "Counterfactuals"):
  replay    agents outside S play their null action and the others keep their recorded
            actions (`game.team_values`; exact for one-shot games, open-loop for
            turn-based ones). No policy calls.
  resample  the episode is re-run from the first turn of an agent outside S: the turns
            before it are replayed, agents outside S say nothing, and every later turn
            of an agent in S is drawn afresh from the team's policy; v(S) is the mean
            over k re-runs (the true counterfactual of a sequential game, paid in policy
            calls). It is a Monte Carlo estimate: with a stochastic team a null player's
            credit is 0 in expectation, not exactly. In a one-shot game nobody sees anyone else's action, so resampling
            changes nothing and replay is used.

Values are cached per episode (`Episode.coalition_values`, `Episode.alternative_values`,
`Episode.critic`): a value already there is never computed again, and every evaluation
is counted — `cf/evals`, `cf/llm_calls` (policy calls of LLM teams), `cf/tokens`,
`critic/calls`, `critic/fallback`. This module must not decide which coalitions an
estimator needs: the caller (or `fill_needs`) says so.
"""

from __future__ import annotations

import math

import numpy as np

from mas_credit.agents.critic import fill_critic
from mas_credit.agents.protocol import ActResult
from mas_credit.coalitions import check_enumerable, check_masks, hashed_normal, mask_array
from mas_credit.rollout import NULL, POLICY, PlannedRun, fresh_env, run_plans
from mas_credit.types import COUNTERFACTUAL_MODES as MODES


def coalition_masks(n_agents: int, masks) -> list[int]:
    """`all` -> every coalition (refused beyond ENUMERATE_MAX_AGENTS agents); `loo` -> the grand
    coalition and each one-agent-out; a list of ints (Python ints: any team size) -> those masks
    (checked)."""
    full = (1 << n_agents) - 1
    if isinstance(masks, str):
        if masks == "all":
            check_enumerable(n_agents, "masks='all'")
            return list(range(full + 1))
        if masks == "loo":
            return [full] + [full & ~(1 << i) for i in range(n_agents)]
        raise ValueError(f"masks must be 'all', 'loo' or a list of coalition bitmasks, got '{masks}'")
    return check_masks(masks, n_agents)


def _counters(evals=0.0, calls=0.0, tokens=0.0, team=None) -> dict[str, float]:
    llm = team is not None and team.kind != "scripted"
    return {
        "cf/evals": float(evals),
        "cf/llm_calls": float(calls) if llm else 0.0,
        "cf/tokens": float(tokens) if llm else 0.0,
    }


def _check_mode(mode, k, team):
    if mode not in MODES:
        raise ValueError(f"counterfactual mode '{mode}' is not valid; valid modes: {', '.join(MODES)}")
    if int(k) < 1:
        raise ValueError(f"counterfactual samples k must be >= 1, got {k}")
    if mode == "resample" and team is None:
        raise ValueError("counterfactual mode 'resample' re-runs episodes with the team's policies: pass team=")


def _rng(team, ep, *key) -> np.random.Generator:
    return np.random.default_rng(
        [
            int(team.seed) if team is not None else 0,
            int(ep.task_seed),
            int(ep.info.get("member", 0)),
            int(ep.info.get("seed", 0)),
            *[int(x) for x in key],
        ]
    )


def fill_coalitions(
    game, episodes, masks="all", mode: str = "replay", team=None, k: int = 1, noise: float = 0.0
) -> dict[str, float]:
    """Fill `episode.coalition_values` for the requested masks; returns cost counters.

    `mode="resample"` needs the `team` and draws `k` re-runs per coalition. `noise` > 0 adds known
    Gaussian noise (that standard deviation) to every value computed here, the same draw for the same
    episode and coalition whoever asks (`coalitions.hashed_normal`): a study's noise floor."""
    _check_mode(mode, k, team)
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"counterfactual noise must be a finite number >= 0 (a standard deviation), got {noise!r}")
    if mode == "resample" and game.sequential:
        return _resample_coalitions(game, episodes, masks, team, int(k), noise)
    evals = 0
    wanted_masks = coalition_masks(episodes[0].n_agents, masks) if episodes else []
    for ep in episodes:
        wanted = [m for m in wanted_masks if m not in ep.coalition_values]
        if not wanted:
            continue
        values = np.asarray(game.team_values(ep, mask_array(wanted, ep.n_agents)), dtype=np.float64)
        if noise:
            values = values + noise * hashed_normal(wanted, noise_salt(ep))
        ep.coalition_values.update(zip(wanted, values.tolist()))
        evals += len(wanted)
    return _counters(evals)


def noise_salt(ep) -> int:
    """The per-episode seed of its known coalition noise."""
    seed = np.random.default_rng(
        [int(ep.task_seed), int(ep.info.get("member", 0)), int(ep.info.get("seed", 0)), 0x401CE]
    )
    return int(seed.integers(0, 2**63))


def _noise(noise: float, mask: int, ep) -> float:
    """One coalition's known noise draw (0 without noise)."""
    return noise * float(hashed_normal([mask], noise_salt(ep))[0]) if noise else 0.0


def _resample_coalitions(game, episodes, masks, team, k, noise=0.0):
    runs, slots, evals = [], [], 0
    for e, ep in enumerate(episodes):
        for mask in coalition_masks(ep.n_agents, masks):
            if mask in ep.coalition_values:
                continue
            evals += 1
            first_out = next((t for t, turn in enumerate(ep.turns) if not (mask >> turn.agent) & 1), None)
            if first_out is None:  # nobody outside S ever acted: the recorded episode is the counterfactual
                ep.coalition_values[mask] = float(ep.reward) + _noise(noise, mask, ep)
                continue
            recorded = [_recorded(turn) for turn in ep.turns]
            for j in range(k):
                runs.append(
                    PlannedRun(
                        fresh_env(game, ep.task_seed),
                        _rng(team, ep, mask, j, 0xC0A1),
                        _coalition_plan(recorded, first_out, mask),
                    )
                )
                slots.append((e, mask))
    means, counts = _mean_rewards(runs, slots, team)
    for (e, mask), value in means.items():
        episodes[e].coalition_values[mask] = value + _noise(noise, mask, episodes[e])
    return _counters(evals, counts["policy_calls"], counts["tokens"], team)


def _mean_rewards(runs, slots, team) -> tuple[dict, dict]:
    """Run every re-run in lock-step; the mean final reward per slot, and the call counts."""
    counts = run_plans(runs, team)
    totals: dict = {}
    for slot, run in zip(slots, runs):
        totals.setdefault(slot, []).append(run.env.episode().reward)
    return {slot: float(np.mean(rewards)) for slot, rewards in totals.items()}, counts


def _recorded(turn) -> ActResult:
    return ActResult(text=turn.text, prompt_ids=turn.prompt_ids, response_ids=turn.response_ids, logprobs=turn.logprobs)


def _coalition_plan(recorded, first_out, mask):
    def plan(t, agent):
        if not (mask >> agent) & 1:
            return NULL
        return recorded[t] if t < first_out else POLICY

    return plan


def fill_alternatives(game, team, episodes, k: int = 4, mode: str = "replay") -> dict[str, float]:
    """COMA's baseline: for each agent i that acted, the mean team value over `k` re-runs
    in which agent i's turns are drawn afresh from its policy. The other agents keep their
    recorded texts (`replay`; in a turn-based game they are replayed in order, open-loop)
    or, in a turn-based game, are drawn afresh after agent i's first turn (`resample`).
    An agent that never acted gets the recorded reward (nothing to re-draw)."""
    _check_mode(mode, k, team)
    runs, slots, evals = [], [], 0
    for e, ep in enumerate(episodes):
        acted = ep.acted()
        for i in range(ep.n_agents):
            if i in ep.alternative_values:
                continue
            evals += 1
            if not acted[i]:
                ep.alternative_values[i] = float(ep.reward)
                continue
            by_agent: dict[int, list] = {}
            for turn in ep.turns:
                by_agent.setdefault(turn.agent, []).append(_recorded(turn))
            first_i = next(t for t, turn in enumerate(ep.turns) if turn.agent == i)
            for j in range(int(k)):
                runs.append(
                    PlannedRun(
                        fresh_env(game, ep.task_seed),
                        _rng(team, ep, i, j, 0xC0FA),
                        _alternative_plan(by_agent, i, first_i, mode == "resample" and game.sequential),
                    )
                )
                slots.append((e, i))
    means, counts = _mean_rewards(runs, slots, team)
    for (e, i), value in means.items():
        episodes[e].alternative_values[i] = value
    return _counters(evals, counts["policy_calls"], counts["tokens"], team)


def _alternative_plan(by_agent, agent, first_turn, resample_after):
    used: dict[int, int] = {}

    def plan(t, who):
        if who == agent or (resample_after and t > first_turn):
            return POLICY
        k = used.get(who, 0)
        used[who] = k + 1
        mine = by_agent.get(who, [])
        return mine[k] if k < len(mine) else NULL

    return plan


def fill_needs(game, episodes, needs, team=None, critic=None, noise: float = 0.0) -> dict[str, float]:
    """Compute everything an estimator declared in its `Needs`, and nothing more;
    returns the summed cost counters. `noise`: known noise on coalition values (`fill_coalitions`)."""

    total: dict[str, float] = {}

    def add(counts):
        for key, value in counts.items():
            total[key] = total.get(key, 0.0) + value

    if needs.tree_fanout:
        bad = [b for b, ep in enumerate(episodes) if ep.info.get("fanout") != list(needs.tree_fanout)]
        if bad:
            raise ValueError(
                f"this estimator needs tree fan-out rollouts with fanout {list(needs.tree_fanout)}, but episode "
                f"{bad[0]} "
                f"was not collected that way; collect with rollout.collect_tree(game, team, n_tasks, "
                f"fanout={list(needs.tree_fanout)})"
            )
    if needs.coalitions:
        add(fill_coalitions(game, episodes, list(needs.coalitions), mode=needs.mode, team=team, k=needs.k, noise=noise))
    if needs.alternatives:
        if team is None:
            raise ValueError("this estimator re-draws agents' actions from their policies (COMA): pass team=")
        add(fill_alternatives(game, team, episodes, k=needs.alternatives, mode=needs.mode))
    if needs.critic:
        if critic is None:
            raise ValueError(
                "this estimator needs a critic (llm_mca): pass critic= (e.g. mas_credit.agents.critic.ScriptedCritic())"
            )
        add(fill_critic(game, critic, episodes))
    return total
