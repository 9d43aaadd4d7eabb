"""Policies that play the games: scripted teams now; LLM backends plug in beside them."""
from __future__ import annotations

from mas_credit.agents.scripted import ActRequest, ActResult, ScriptedTeam


def load_team(cfg):
    """Build a team from a `TeamConfig` (see mas_credit.config)."""
    if cfg.kind == "scripted":
        return ScriptedTeam(skills=list(cfg.skills), lazy=list(cfg.lazy), malformed_rate=cfg.malformed_rate, seed=cfg.seed)
    raise ValueError(f"team.kind '{cfg.kind}' is not available; valid kinds: scripted")


__all__ = ["ScriptedTeam", "load_team", "ActRequest", "ActResult"]
