"""Exact Shapley values from coalition values, as one matrix product.

phi_i = sum_{S not containing i} |S|! (N-|S|-1)! / N! * (v(S u {i}) - v(S))
      = V @ W,  V [B, 2**N] (bit i of the column index = agent i present),
        W [2**N, N]: W[S, i] = w(|S|-1) if i in S else -w(|S|), w(k) = k!(N-k-1)!/N!.
Efficiency: sum_i phi_i = v(N) - v(empty). (Shapley 1953; ESTIMATORS.md, "Shared math".)

`exact_shapley` contracts the marginal contributions instead of V with W:
phi[b, i] = sum_k w(|S_k|) * (V[b, S_k | i] - V[b, S_k]) over the 2**(N-1) coalitions S_k
without i — the same sum, but a null player's differences are exactly 0, so its
credit is exactly 0 rather than a rounding residue of +-1e-17.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=32)
def _weights_cpu(n_agents: int) -> torch.Tensor:
    masks = torch.arange(1 << n_agents)
    present = ((masks[:, None] >> torch.arange(n_agents)) & 1).bool()          # [2**N, N]
    size = present.sum(dim=1, keepdim=True).expand(-1, n_agents)               # [2**N, N] |S|
    w = torch.tensor([math.factorial(k) * math.factorial(n_agents - k - 1) / math.factorial(n_agents)
                      for k in range(n_agents)] + [0.0], dtype=torch.float64)  # w(N) unused, padded
    return torch.where(present, w[(size - 1).clamp(min=0)], -w[size.clamp(max=n_agents - 1)])


def shapley_weights(n_agents: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """W [2**N, N] such that phi = V @ W."""
    return _weights_cpu(n_agents).to(device=device, dtype=dtype)


@lru_cache(maxsize=32)
def _marginal_index_cpu(n_agents: int):
    """For each agent i: the 2**(N-1) coalitions S without i, S | {i}, and w(|S|)."""
    masks = torch.arange(1 << n_agents)
    without, with_, weight = [], [], []
    for i in range(n_agents):
        s = masks[(masks >> i) & 1 == 0]                                       # [2**(N-1)]
        size = torch.tensor([bin(int(m)).count("1") for m in s])
        without.append(s)
        with_.append(s | (1 << i))
        weight.append(torch.tensor([math.factorial(k) * math.factorial(n_agents - k - 1) / math.factorial(n_agents)
                                    for k in size.tolist()], dtype=torch.float64))
    return torch.stack(without), torch.stack(with_), torch.stack(weight)       # [N, 2**(N-1)] each


def exact_shapley(values: torch.Tensor) -> torch.Tensor:
    """values [B, 2**N] (every coalition evaluated) -> Shapley values [B, N]."""
    if values.dim() != 2 or values.shape[1] < 2 or values.shape[1] & (values.shape[1] - 1):
        raise ValueError(f"exact_shapley needs values of shape [B, 2**N], got {tuple(values.shape)}")
    missing = torch.isnan(values)
    if missing.any():
        b = int(missing.any(dim=1).nonzero()[0])
        raise ValueError(f"exact_shapley needs all 2**N coalition values, but episode {b} has "
                         f"{int(missing[b].sum())} unevaluated; fill them with fill_coalitions(game, episodes, masks='all')")
    n_agents = values.shape[1].bit_length() - 1
    without, with_, weight = (t.to(values.device) for t in _marginal_index_cpu(n_agents))
    marginal = values[:, with_] - values[:, without]                            # [B, N, 2**(N-1)]
    return torch.einsum("bnk,nk->bn", marginal, weight.to(values.dtype))
