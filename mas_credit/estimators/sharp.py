"""`sharp`: Shapley credit with three reward terms (Li et al. 2026, SHARP, arXiv 2602.08335).

    r[b, i]   = w_team * R_b + w_shapley * phi[b, i] + w_tool * tool[b, i]
    advantage = agent_norm(r) over trajectory groups, on agent i's turns
    credit    = phi (after sparsification)

phi is the Shapley value of v(S) under counterfactual masking (exact, or sampled within
`budget` coalitions per episode); tool is the game's per-agent tool/format-process
component (`tool_component: auto` takes `tool`, else `format`, else 0).
Ours (the paper's weights were not available to us): w_team = 0.5, w_shapley = 1.0,
w_tool = 0.1; sparsification phi_i -> 0 where |phi_i| < kappa * max_j |phi_j|
(kappa = 0: off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import register_estimator
from mas_credit.estimators.common import EPS, agent_norm, to_turns
from mas_credit.estimators.shapley import ShapleyKnobs, shapley_needs, shapley_values
from mas_credit.types import Credit, CreditBatch


@dataclass
class SharpConfig(ShapleyKnobs):
    w_team: float = 0.5
    """weight of the team reward R (global term)"""
    w_shapley: float = 1.0
    """weight of the agent's Shapley value (marginal term)"""
    w_tool: float = 0.1
    """weight of the agent's tool/format component (process term)"""
    tool_component: str = "auto"
    """auto (tool, else format, else none) | a component name | none"""
    kappa: float = 0.0
    """sparsify: phi_i -> 0 where |phi_i| < kappa * max_j |phi_j|; 0 = off"""
    eps: float = EPS

    def check(self):
        self.check_shapley("sharp")
        if not 0.0 <= self.kappa <= 1.0:
            raise ValueError(f"estimator 'sharp': kappa must be in [0, 1] (0 = no sparsification), got {self.kappa}")


def tool_term(batch: CreditBatch, name: str) -> torch.Tensor:
    """[B, N] the process term (0 when the game has no such component)."""
    if name == "auto":
        name = next((c for c in ("tool", "format") if c in batch.components), "none")
    if name == "none":
        return torch.zeros_like(batch.acted, dtype=batch.reward.dtype)
    if name not in batch.components:
        raise ValueError(
            f"estimator 'sharp': tool_component '{name}' is not a component of this game "
            f"(components: {', '.join(sorted(batch.components)) or 'none'}); use auto or none"
        )
    return batch.components[name]


TIE_TOLERANCE = 1e-9
"""|phi_i| within this of the cutoff counts as reaching it (kept): rounding must not decide ties."""


def sparsify(phi: torch.Tensor, kappa: float) -> torch.Tensor:
    if kappa <= 0:
        return phi
    cutoff = kappa * phi.abs().amax(dim=1, keepdim=True) - TIE_TOLERANCE  # [B, 1]
    return torch.where(phi.abs() < cutoff, torch.zeros_like(phi), phi)


@register_estimator(
    "sharp", SharpConfig, shapley_needs, granularity="multi-agent", family="game-theoretic (survey: Shapley)"
)
def sharp(batch: CreditBatch, cfg: SharpConfig) -> Credit:
    """credit [B, N] = phi; advantage [B, T] = agent_norm(w_team R + w_shapley phi + w_tool tool)."""
    budget = cfg.budget_for(batch.n_agents)
    phi = sparsify(shapley_values(batch, cfg.method, budget, cfg.seed, cfg.antithetic, "sharp"), cfg.kappa)
    team = batch.reward[:, None].expand_as(phi)  # [B, N]
    reward = cfg.w_team * team + cfg.w_shapley * phi + cfg.w_tool * tool_term(batch, cfg.tool_component)
    agent_adv = agent_norm(reward, batch.group, batch.acted, cfg.eps)
    return Credit(
        credit=phi,
        advantage=to_turns(agent_adv, batch.turn_agent),
        metrics={"sharp/sparsified": float(((phi == 0) & batch.acted).sum())},
    )
