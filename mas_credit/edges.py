"""Communication credit: who deserves credit for a useful message.

The players are an episode's messages (edges: sender, receiver, turn, text; `Episode.messages`).
v(E') is the team value when only the messages in E' are delivered and every other one is
replaced by an empty message; bit m of an edge mask is message m. Two modes, as for agent
coalitions (mas_credit.counterfactual):
  replay    the recorded actions are played again (`game.edge_values`); a receiver that
            answered what its messages imply (a deterministic reader, e.g. a scripted team)
            answers what the replayed messages imply. No policy calls.
  resample  the episode is re-run from the turn that sent the first blocked message: the
            turns up to it are replayed, the blocked messages arrive empty, and every later
            turn is drawn afresh from the team's policy (LLM teams); v(E') is the mean over k
            re-runs.
A message is named by its key (sender, receiver, occurrence; `games.base.message_keys`), so the
same edge is blocked in a replay and in a re-run.

An agent's credit splits into acting credit (agent-level credit, as today) and informing
credit: the summed credit of the messages it sent (`types.informing_credit`).

Values are cached per episode (`Episode.edge_values`, `Episode.edge_critic`) and every
evaluation is counted: `cf/edge_evals`, `cf/llm_calls`, `cf/tokens`, `edge_critic/calls`,
`edge_critic/fallback`. This module must not decide which edge sets an estimator needs.
"""

from __future__ import annotations

from mas_credit.agents.critic import fill_critic
from mas_credit.counterfactual import _check_mode, _counters, _mean_rewards, _recorded, _rng, coalition_masks
from mas_credit.games.base import message_keys
from mas_credit.rollout import POLICY, PlannedRun, fresh_env


def _edge_count(game, episodes) -> int:
    counts = sorted({len(ep.messages) for ep in episodes})
    if not episodes or counts == [0] or len(counts) > 1:
        raise ValueError(
            f"{game.name}: edge credit needs episodes that each sent the same number (>= 1) of messages, got "
            f"{counts}; use a game with messages (briefing_v0, debate_v0, telephone_v0)"
        )
    return counts[0]


def fill_edge_values(game, episodes, masks="all", mode: str = "replay", team=None, k: int = 1) -> dict[str, float]:
    """Fill `episode.edge_values` for the requested edge masks (`all`, `loo` or a list of
    bitmasks over the messages); returns cost counters. `mode="resample"` needs the `team`."""
    _check_mode(mode, k, team)
    n_edges = _edge_count(game, episodes)
    wanted_masks = coalition_masks(n_edges, masks)
    if mode == "resample":
        return _resample_edges(game, episodes, wanted_masks, team, int(k), n_edges)
    evals = 0
    for ep in episodes:
        wanted = [m for m in wanted_masks if m not in ep.edge_values]
        if wanted:
            ep.edge_values.update({m: float(v) for m, v in zip(wanted, game.edge_values(ep, wanted))})
            evals += len(wanted)
    return _edge_counters(_counters(evals))


def _edge_counters(counts: dict) -> dict:
    return {"cf/edge_evals": counts.pop("cf/evals"), **counts}


def _resample_edges(game, episodes, masks, team, k, n_edges):
    runs, slots, evals = [], [], 0
    full = (1 << n_edges) - 1
    for e, ep in enumerate(episodes):
        keys = message_keys(ep.messages)
        recorded = [_recorded(turn) for turn in ep.turns]
        for mask in masks:
            if mask in ep.edge_values:
                continue
            evals += 1
            blocked = [m for m in range(n_edges) if not (mask >> m) & 1]
            if mask == full:  # every message delivered: the recorded episode is the counterfactual
                ep.edge_values[mask] = float(ep.reward)
                continue
            first = min(ep.messages[m].turn for m in blocked)
            options = {"blocked_messages": [keys[m] for m in blocked]}
            for j in range(k):
                runs.append(
                    PlannedRun(
                        fresh_env(game, ep.task_seed, options),
                        _rng(team, ep, mask, j, 0xED6E),
                        _replay_until(recorded, first),
                    )
                )
                slots.append((e, mask))
    means, counts = _mean_rewards(runs, slots, team)
    for (e, mask), value in means.items():
        episodes[e].edge_values[mask] = value
    return _edge_counters(_counters(evals, counts["policy_calls"], counts["tokens"], team))


def _replay_until(recorded, last):
    def plan(t, agent):
        return recorded[t] if t <= last else POLICY

    return plan


def fill_edge_needs(game, episodes, needs, team=None, critic=None) -> dict[str, float]:
    """Compute what an edge estimator declared in its `Needs` (edge masks, critic shares per
    message), and nothing more; returns the summed cost counters."""
    total: dict[str, float] = {}
    if needs.coalitions:
        total.update(fill_edge_values(game, episodes, list(needs.coalitions), mode=needs.mode, team=team, k=needs.k))
    if needs.critic:
        if critic is None:
            raise ValueError(
                "this edge estimator needs a critic (edge_critic): pass critic= (e.g. "
                "mas_credit.agents.critic.ScriptedCritic())"
            )
        _edge_count(game, episodes)
        total.update(fill_critic(game, critic, episodes, messages=True))
    return total
