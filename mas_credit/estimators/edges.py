"""Edge estimators: credit per message (the players are an episode's messages; mas_credit.edges).

Each is one pure function `(batch: EdgeBatch, cfg) -> EdgeCredit` (credit [B, E]) with a typed
config and a `needs` rule over the E messages, registered by name in its own registry (an edge
estimator is not an agent estimator: `get_edge_estimator`, `list_edge_estimators`; outside
packages add theirs with `register_edge_estimator` and entry-point group
`mas_credit.edge_estimators`, see `mas_credit.plugins`):

  edge_shapley   exact Shapley over the messages (2**E edge sets; the ground truth), or sampled
                 (Castro et al. 2009 permutations with antithetic pairs within `budget`), the
                 formulas of `estimators.shapley` with messages as players
  edge_loo       leave-one-edge-out: v(E) - v(E minus {m}) (the counterfactual of dropping one
                 message; over-credits messages that are all needed, misses redundant ones)
  edge_critic    an LLM critic reads the transcript and gives a share per message (the llm_mca
                 parser, strict then lenient, uniform fallback counted); credit = share x
                 (v(E) - v(empty)) (baseline empty) or share x R (baseline none)
  edge_uniform   (v(E) - v(empty)) / E to every message: what a critic falls back to

Efficiency: edge_shapley (exact or sampled), edge_critic with baseline empty and edge_uniform
sum to v(all messages) - v(no messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from mas_credit.estimators import Estimator, Needs, lookup
from mas_credit.estimators.common import CounterfactualConfig, check_cf, check_choice
from mas_credit.estimators.shapley import (
    ShapleyKnobs,
    exact_shapley,
    sample_permutations,
    sampled_shapley,
    shapley_masks,
)
from mas_credit.plugins import load_plugins
from mas_credit.types import EdgeBatch, EdgeCredit

_EDGE_REGISTRY: dict[str, Estimator] = {}


def register_edge_estimator(name: str, config: type, needs: Callable[[Any, int], Needs], family: str = ""):
    """Decorator: register `fn(batch: EdgeBatch, cfg) -> EdgeCredit` under `name`; `needs(cfg, n_edges)`."""

    def wrap(fn):
        held = _EDGE_REGISTRY.get(name)
        if held is not None and (held.fn.__module__, held.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(
                f"edge estimator '{name}' is already registered by {held.fn.__module__}.{held.fn.__qualname__}; "
                f"pick another name"
            )
        _EDGE_REGISTRY[name] = Estimator(
            name=name,
            fn=fn,
            Config=config,
            needs_rule=needs,
            doc=fn.__doc__ or "",
            granularity="message",
            family=family,
        )
        return fn

    return wrap


def get_edge_estimator(name: str) -> Estimator:
    """The edge estimator registered as `name`: a built-in, a plug-in's (entry-point group
    `mas_credit.edge_estimators`), or `package.module:function` (see `mas_credit.plugins`)."""
    return lookup(
        _EDGE_REGISTRY, name, "edge_estimators", "edge estimator", "mas_credit.estimators.edges.register_edge_estimator"
    )


def list_edge_estimators() -> list[str]:
    load_plugins("edge_estimators", lambda obj: None)
    return sorted(_EDGE_REGISTRY)


def edge_table(batch: EdgeBatch, masks, estimator: str) -> torch.Tensor:
    """edge_values[:, masks], or a one-line error naming the first episode with a gap."""
    masks = torch.as_tensor(masks, dtype=torch.long, device=batch.device)
    values = batch.edge_values[:, masks]
    missing = torch.isnan(values)
    if missing.any():
        b = int(missing.any(dim=1).nonzero()[0])
        raise ValueError(
            f"edge estimator '{estimator}' needs edge values that episode {b} lacks; fill them first: "
            f"mas_credit.edges.fill_edge_needs(game, episodes, estimator.needs(cfg, n_edges))"
        )
    return values


# -- edge_shapley ---------------------------------------------------------------------------
@dataclass
class EdgeShapleyConfig(ShapleyKnobs):
    """Exact (every edge set) or sampled Shapley over the messages."""

    def check(self):
        self.check_shapley("edge_shapley")


def _shapley_needs(cfg: EdgeShapleyConfig, n_edges: int) -> Needs:
    masks, kind = shapley_masks(cfg.method, cfg.budget_for(n_edges), cfg.seed, cfg.antithetic, n_edges)
    return Needs(coalitions=masks, kind=kind, mode=cfg.counterfactual, k=cfg.samples)


@register_edge_estimator("edge_shapley", EdgeShapleyConfig, _shapley_needs, family="game-theoretic (Shapley)")
def edge_shapley(batch: EdgeBatch, cfg: EdgeShapleyConfig) -> EdgeCredit:
    """credit [B, E]: Shapley value of each message, exact or sampled (`method`, `budget`)."""
    n_edges = batch.n_edges
    masks, kind = shapley_masks(cfg.method, cfg.budget_for(n_edges), cfg.seed, cfg.antithetic, n_edges)
    edge_table(batch, masks, "edge_shapley")
    if kind == "all":
        return EdgeCredit(exact_shapley(batch.edge_values), {"edge_shapley/exact": 1.0})
    perms, _ = sample_permutations(n_edges, cfg.budget_for(n_edges), cfg.seed, cfg.antithetic)
    return EdgeCredit(sampled_shapley(batch.edge_values, perms), {"edge_shapley/exact": 0.0})


# -- edge_loo -------------------------------------------------------------------------------
def _loo_masks(n_edges: int) -> tuple:
    full = (1 << n_edges) - 1
    return (full, *(full & ~(1 << m) for m in range(n_edges)))


@register_edge_estimator(
    "edge_loo",
    CounterfactualConfig,
    lambda cfg, n_edges: Needs(coalitions=_loo_masks(n_edges), kind="loo", mode=cfg.counterfactual, k=cfg.samples),
    family="Monte Carlo counterfactual (leave one out)",
)
def edge_loo(batch: EdgeBatch, cfg: CounterfactualConfig) -> EdgeCredit:
    """credit [B, E] = v(E) - v(E minus {m})."""
    values = edge_table(batch, _loo_masks(batch.n_edges), "edge_loo")  # [B, 1 + E]
    return EdgeCredit(values[:, :1] - values[:, 1:])


# -- edge_critic and edge_uniform ------------------------------------------------------------
@dataclass
class EdgeCriticConfig(CounterfactualConfig):
    """`counterfactual` and `samples` say how v(all) and v(no messages) are obtained (baseline empty)."""

    baseline: str = "empty"
    """empty: credit = share x (v(all messages) - v(no messages)) | none: credit = share x R"""

    def check(self):
        check_choice("edge_critic", "baseline", self.baseline, ("empty", "none"))
        check_cf("edge_critic", self)


def _gain(batch: EdgeBatch, baseline: str, estimator: str) -> torch.Tensor:
    """[B]: v(all) - v(none) (baseline empty) or R (none)."""
    if baseline == "none":
        return batch.reward
    values = edge_table(batch, [(1 << batch.n_edges) - 1, 0], estimator)
    return values[:, 0] - values[:, 1]


@register_edge_estimator(
    "edge_critic",
    EdgeCriticConfig,
    lambda cfg, n_edges: Needs(
        coalitions=((1 << n_edges) - 1, 0) if cfg.baseline == "empty" else (),
        kind="critic",
        mode=cfg.counterfactual,
        k=cfg.samples,
        critic=True,
    ),
    family="model-based (LLM critic per message)",
)
def edge_critic(batch: EdgeBatch, cfg: EdgeCriticConfig) -> EdgeCredit:
    """credit [B, E] = the critic's share per message x the gain; a fallback episode gets uniform shares."""
    shares = batch.critic_share
    if torch.isnan(shares).any():
        b = int(torch.isnan(shares).any(dim=1).nonzero()[0])
        raise ValueError(
            f"edge estimator 'edge_critic' needs the critic's shares per message, but episode {b} has none; fill "
            f"them with mas_credit.edges.fill_edge_needs(..., critic=critic)"
        )
    credit = shares * _gain(batch, cfg.baseline, "edge_critic")[:, None]
    return EdgeCredit(credit, {"edge_critic/fallback": float(batch.critic_fallback.sum())})


@dataclass
class EdgeUniformConfig(CounterfactualConfig):
    """`counterfactual` and `samples` say how v(all) and v(no messages) are obtained."""

    def check(self):
        check_cf("edge_uniform", self)


@register_edge_estimator(
    "edge_uniform",
    EdgeUniformConfig,
    lambda cfg, n_edges: Needs(
        coalitions=((1 << n_edges) - 1, 0), kind="uniform", mode=cfg.counterfactual, k=cfg.samples
    ),
    family="baseline (equal split)",
)
def edge_uniform(batch: EdgeBatch, cfg: EdgeUniformConfig) -> EdgeCredit:
    """credit [B, E] = (v(all) - v(none)) / E."""
    gain = _gain(batch, "empty", "edge_uniform")
    return EdgeCredit(gain[:, None].expand(-1, batch.n_edges) / batch.n_edges)
