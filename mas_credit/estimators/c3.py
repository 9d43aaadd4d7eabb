"""`c3`: contextual counterfactual credit (Chen et al. 2026, C3, arXiv 2603.06859).

Code: EIT-EAST-Lab/C3 (commit 628185becc70732771393be28d087e88f0a4a5e8):
`c3/credit/c3/provider.py::C3CreditProvider.compute` (reward_only, baseline loo) and the
normalisation in `openrlhf/trainer/ppo_utils/experience_maker.py` with
`c3/algorithms/utils.py::group_mean_std`; ported in tests/test_reference_ports.py. Two modes.

`tree` (the paper's code). Rollouts form a prefix tree over turns in topological order
(`rollout.collect_tree`, fan-out per turn, default [2, 4]; product = group size).
  node reward r  = mean of the leaf rewards below the node
  siblings       = nodes with the same (task, parent, acting role)
  A_node         = r - (sum_j r_j - r) / (n - 1) over its n siblings  (reward_only; n = 1 -> 0)
  advantage      = (A - mean_sib A) / max(sqrt(var_pop + 1e-8), 1e-8) within the sibling
                   set (the reference's `group_mean_std`, then its clamp), on the node's turn
  rows           = `nodes` (default, the reference): each node is one training row: its
                   turn in the first leaf below it has weight 1, its copies in the other
                   leaves weight 0 (`turn_weight`) | `leaves`: every leaf's copy of the
                   turn is a row of weight 1 (a node with more leaves below weighs more;
                   this project's form before the reference was matched)
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
from mas_credit.estimators.common import (
    EPS,
    CounterfactualConfig,
    agent_norm,
    check_cf,
    check_choice,
    loo_values,
    to_turns,
)
from mas_credit.estimators.loo import loo_masks
from mas_credit.types import Credit, CreditBatch

VAR_EPS = 1e-8
"""added to the sibling set's population variance before the square root (reference `group_mean_std`)"""
STD_FLOOR = 1e-8
"""the reference's clamp on that std"""


@dataclass
class C3Config(CounterfactualConfig):
    mode: str = "counterfactual"
    """tree: sibling leave-one-out on tree fan-out rollouts | counterfactual: R - v(N minus {i})"""
    fanout: tuple = field(default_factory=lambda: (2, 4))
    """tree: children per branching turn, in turn order (product = group size)"""
    rows: str = "nodes"
    """tree: nodes: one training row per tree node (the reference) | leaves: the node's turn in every leaf below it"""
    eps: float = EPS

    def check(self):
        check_choice("c3", "mode", self.mode, ("tree", "counterfactual"))
        check_choice("c3", "rows", self.rows, ("nodes", "leaves"))
        check_cf("c3", self)
        if not self.fanout or any(int(f) < 1 for f in self.fanout):
            raise ValueError(
                f"estimator 'c3': fanout must be a non-empty list of integers >= 1, got {list(self.fanout)}"
            )


def _needs(cfg: C3Config, n_agents: int) -> Needs:
    if cfg.mode == "tree":
        return Needs(tree_fanout=tuple(int(f) for f in cfg.fanout), groups=True)
    return Needs(coalitions=loo_masks(n_agents), kind="loo", mode=cfg.counterfactual, k=cfg.samples, groups=True)


def tree_node_advantages(batch: CreditBatch):
    """(raw A per node [K], normalised A per node [K]) from the tree ids of the batch."""
    turns = batch.tree_node >= 0  # [B, T]
    node = batch.tree_node[turns]  # [M] one entry per (leaf, turn)
    sibling = batch.tree_sibling[turns]
    reward = batch.reward[:, None].expand_as(batch.tree_node)[turns]
    n_nodes, n_sets = int(node.max()) + 1, int(sibling.max()) + 1
    dtype = batch.reward.dtype
    leaves = torch.zeros(n_nodes, dtype=dtype, device=batch.device).index_add_(0, node, torch.ones_like(reward))
    node_reward = torch.zeros(n_nodes, dtype=dtype, device=batch.device).index_add_(0, node, reward) / leaves
    node_set = torch.zeros(n_nodes, dtype=torch.long, device=batch.device).scatter_(0, node, sibling)  # [K]
    ones = torch.ones(n_nodes, dtype=dtype, device=batch.device)
    size = torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, ones)
    total = torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, node_reward)
    n = size[node_set]
    raw = torch.where(
        n > 1, node_reward - (total[node_set] - node_reward) / (n - 1).clamp(min=1), torch.zeros_like(node_reward)
    )
    mean = torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, raw) / size
    var = (
        torch.zeros(n_sets, dtype=dtype, device=batch.device).index_add_(0, node_set, (raw - mean[node_set]) ** 2)
        / size
    )
    normed = (raw - mean[node_set]) / (var + VAR_EPS).sqrt().clamp(min=STD_FLOOR)[node_set]
    return raw, normed


@register_estimator(
    "c3",
    C3Config,
    _needs,
    granularity="turn (each agent's turn against a leave-one-out counterfactual)",
    family="game-theoretic (counterfactual; survey: Counterfactual)",
)
def c3(batch: CreditBatch, cfg: C3Config) -> Credit:
    """credit [B, N]; advantage [B, T] (see the module docstring for each mode)."""
    if cfg.mode == "counterfactual":
        credit = batch.reward[:, None] - loo_values(batch, "c3")  # [B, N]
        agent_adv = agent_norm(credit, batch.group, batch.acted, cfg.eps)
        return Credit(credit=credit, advantage=to_turns(agent_adv, batch.turn_agent))
    turns = batch.tree_node >= 0
    if not turns.any():
        raise ValueError(
            "estimator 'c3' in mode tree needs tree fan-out rollouts: collect the episodes with "
            f"rollout.collect_tree(game, team, n_tasks, fanout={list(cfg.fanout)}), or use mode: counterfactual"
        )
    raw, normed = tree_node_advantages(batch)
    node = batch.tree_node.clamp(min=0)
    zero = torch.zeros((), dtype=batch.reward.dtype, device=batch.device)
    advantage = torch.where(turns, normed[node], zero)  # [B, T]
    raw_turn = torch.where(turns, raw[node], zero)
    credit = torch.zeros((batch.batch_size, batch.n_agents), dtype=batch.reward.dtype, device=batch.device)
    credit.scatter_add_(1, batch.turn_agent.clamp(min=0), raw_turn)
    if cfg.rows == "leaves":
        return Credit(credit=credit, advantage=advantage)
    # one row per node: the first (episode, turn) entry that carries it
    flat = torch.arange(turns.numel(), device=batch.device).reshape(turns.shape)  # [B, T]
    first = torch.full((len(raw),), turns.numel(), dtype=torch.long, device=batch.device)
    first = first.scatter_reduce(0, batch.tree_node[turns], flat[turns], reduce="amin")
    turn_weight = torch.zeros_like(advantage)
    turn_weight.view(-1)[first] = 1.0
    return Credit(credit=credit, advantage=advantage, turn_weight=turn_weight)
