"""Coalition values v(S) for recorded episodes.

`replay` mode asks the game: agents outside S play their null action and the others
keep their recorded actions (exact for one-shot games, open-loop for turn-based
ones). Values are cached per episode in `Episode.coalition_values` (bitmask ->
value); a coalition already there is never evaluated again, and every evaluation
is counted. This module must not decide which coalitions an estimator needs: the
caller says so.
"""
from __future__ import annotations

import numpy as np


def coalition_masks(n_agents: int, masks) -> list[int]:
    """`all` -> every coalition; `loo` -> the grand coalition and each one-agent-out;
    a list of ints -> those masks (checked)."""
    full = (1 << n_agents) - 1
    if isinstance(masks, str):
        if masks == "all":
            return list(range(full + 1))
        if masks == "loo":
            return [full] + [full & ~(1 << i) for i in range(n_agents)]
        raise ValueError(f"masks must be 'all', 'loo' or a list of coalition bitmasks, got '{masks}'")
    out = [int(m) for m in masks]
    bad = [m for m in out if not 0 <= m <= full]
    if bad:
        raise ValueError(f"coalition masks {bad[:5]} are outside 0..{full} for {n_agents} agents")
    return out


def fill_coalitions(game, episodes, masks="all", mode: str = "replay") -> dict[str, float]:
    """Fill `episode.coalition_values` for the requested masks; returns cost counters."""
    if mode != "replay":
        raise ValueError(f"counterfactual mode '{mode}' is not available; valid modes: replay")
    evals = 0
    for ep in episodes:
        wanted = [m for m in coalition_masks(ep.n_agents, masks) if m not in ep.coalition_values]
        if not wanted:
            continue
        values = game.team_values(ep, np.array(wanted, dtype=np.int64))
        ep.coalition_values.update({m: float(v) for m, v in zip(wanted, values)})
        evals += len(wanted)
    return {"cf/evals": float(evals), "cf/llm_calls": 0.0, "cf/tokens": 0.0}
