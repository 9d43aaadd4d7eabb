"""`c3`: contextual counterfactual credit (Chen et al. 2026, C3, arXiv 2603.06859).

Code: EIT-EAST-Lab/C3 `c3/credit/c3/provider.py`. Two modes.

`tree` (the paper's code). Rollouts form a prefix tree over turns in topological order
(`rollout.collect_tree`, fan-out per turn, default [2, 4]; product = group size).
  node reward r  = mean of the leaf rewards below the node
  siblings       = nodes with the same (task, parent, acting role)
  A_node         = r - (sum_j r_j - r) / (n - 1) over its n siblings  (reward_only; n = 1 -> 0)
  advantage      = (A - mean_sib A) / max(std_pop, 1e-8) within the sibling set, on
                   the node's turn in every leaf below it
  credit[b, i]   = the sum of the raw A of agent i's turns in leaf b (ours: the tree
                   mode has no per-agent decomposition of R in the paper)

`counterfactual` (the survey's multi-agent form):
  credit[b, i]   = R_b - v_b(N minus {i})   (agent i's turns replaced by its null action,
                                             by replay or resample)
  advantage      = agent_norm(credit) on agent i's turns. N evaluations per episode.
(`value_assisted` with a learned Q-critic is a later addition.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import EPS, CounterfactualConfig, agent_norm, check_cf, check_choice, loo_values, to_turns
from mas_credit.estimators.loo import loo_masks
from mas_credit.types import Credit, CreditBatch

STD_FLOOR = 1e-8


@dataclass
class C3Config(CounterfactualConfig):
    mode: str = "counterfactual"
    """tree: sibling leave-one-out on tree fan-out rollouts | counterfactual: R - v(N minus {i})"""
    fanout: tuple = field(default_factory=lambda: (2, 4))
    """tree: children per branching turn, in turn order (product = group size)"""
    eps: float = EPS

    def check(self):
        check_choice("c3", "mode", self.mode, ("tree", "counterfactual"))
        check_cf("c3", self)
        if not self.fanout or any(int(f) < 1 for f in self.fanout):
            raise ValueError(f"estimator 'c3': fanout must be a non-empty list of integers >= 1, got {list(self.fanout)}")


def _needs(cfg: C3Config, n_agents: int) -> Needs:
    if cfg.mode == "tree":
        return Needs(tree_fanout=tuple(int(f) for f in cfg.fanout), groups=True)
    return Needs(coalitions=loo_masks(n_agents), kind="loo", mode=cfg.counterfactual, k=cfg.samples, groups=True)


def tree_node_advantages(batch: CreditBatch):
    """(raw A per node [K], normalised A per node [K]) from the tree ids of the batch."""
    turns = batch.tree_node >= 0                                                        # [B, T]
    node = batch.tree_node[turns]                                                       # [M] one entry per (leaf, turn)
    sibling = batch.tree_sibling[turns]
    reward = batch.reward[:, None].expand_as(batch.tree_node)[turns]
    n_nodes, n_sets = int(node.max()) + 1, int(sibling.max()) + 1
    dtype = batch.reward.dtype
    leaves = torch.zeros(n_nodes, dtype=dtype, device=batch.device).index_add_(0, node, torch.ones_like(reward))
    node_reward = torch.zeros(n_nodes, dtype=dtype, device=batch.device).index_add_(0, node, reward) / leaves
    node_set = torch.zeros(n_nodes, dtype=torch.long, device=batch.device).scatter_(0, node, sibling)   # [K]
    ones = torch.ones(n_nodes, dtype=dtype, device=batch.device)
    size = torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, ones)
    total = torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, node_reward)
    n = size[node_set]
    raw = torch.where(n > 1, node_reward - (total[node_set] - node_reward) / (n - 1).clamp(min=1), torch.zeros_like(node_reward))
    mean = torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, raw) / size
    var = torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, (raw - mean[node_set]) ** 2) / size
    normed = (raw - mean[node_set]) / var.sqrt().clamp(min=STD_FLOOR)[node_set]
    return raw, normed


@register_estimator("c3", C3Config, _needs,
                    granularity="turn (each agent's turn against a leave-one-out counterfactual)",
                    family="game-theoretic (counterfactual; survey: Counterfactual)")
def c3(batch: CreditBatch, cfg: C3Config) -> Credit:
    """credit [B, N]; advantage [B, T] (see the module docstring for each mode)."""
    if cfg.mode == "counterfactual":
        credit = batch.reward[:, None] - loo_values(batch, "c3")                            # [B, N]
        agent_adv = agent_norm(credit, batch.group, batch.acted, cfg.eps)
        return Credit(credit=credit, advantage=to_turns(agent_adv, batch.turn_agent))
    turns = batch.tree_node >= 0
    if not turns.any():
        raise ValueError("estimator 'c3' in mode tree needs tree fan-out rollouts: collect the episodes with "
                         f"rollout.collect_tree(game, team, n_tasks, fanout={list(cfg.fanout)}), or use mode: counterfactual")
    raw, normed = tree_node_advantages(batch)
    node = batch.tree_node.clamp(min=0)
    zero = torch.zeros((), dtype=batch.reward.dtype, device=batch.device)
    advantage = torch.where(turns, normed[node], zero)                                     # [B, T]
    raw_turn = torch.where(turns, raw[node], zero)
    credit = torch.zeros((batch.batch_size, batch.n_agents), dtype=batch.reward.dtype, device=batch.device)
    credit.scatter_add_(1, batch.turn_agent.clamp(min=0), raw_turn)
    return Credit(credit=credit, advantage=advantage)
