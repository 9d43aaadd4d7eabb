"""Policies that play the games: scripted teams now; LLM backends plug in beside them."""
from __future__ import annotations

from mas_credit.agents.critic import ScriptedCritic
from mas_credit.agents.scripted import ActRequest, ActResult, ScriptedTeam


def load_team(cfg):
    """Build a team from a `TeamConfig` (see mas_credit.config)."""
    if cfg.kind == "scripted":
        return ScriptedTeam(skills=list(cfg.skills), lazy=list(cfg.lazy), malformed_rate=cfg.malformed_rate, seed=cfg.seed)
    raise ValueError(f"team.kind '{cfg.kind}' is not available; valid kinds: scripted")


def load_critic(cfg):
    """Build the llm_mca critic from a `CriticConfig`."""
    if cfg.kind == "scripted":
        return ScriptedCritic(accuracy=cfg.accuracy, style=cfg.style, malformed_rate=cfg.malformed_rate, seed=cfg.seed)
    raise ValueError(f"critic.kind '{cfg.kind}' is not available; valid kinds: scripted")


__all__ = ["ScriptedTeam", "ScriptedCritic", "load_team", "load_critic", "ActRequest", "ActResult"]
