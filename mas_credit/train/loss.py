"""The per-agent policy loss: token-level clipped surrogate (PPO, Schulman et al. 2017;
GRPO, Shao et al. 2024) with a k3 KL estimate to the reference policy
(Schulman 2020, "Approximating KL divergence"), and the token log-probabilities it needs.

    ratio = exp(logp - logp_old)
    pg    = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
    kl    = exp(logp_ref - logp) - (logp_ref - logp) - 1
    loss  = sum_tokens w * (pg + beta * kl) / sum_tokens w        (w = turn weight x token mask)

This module must not know about games, teams or estimators.
"""
from __future__ import annotations

import torch


def response_logprobs(model, rows: list[tuple[list[int], list[int]]], temperature: float = 1.0):
    """Right-padded forward pass over prompt + response rows.

    Returns logp [M, L] of each response token (L = longest response) and mask [M, L]
    (False = padding). Gradients flow when the caller has them enabled.
    """
    device = next(model.parameters()).device
    width = max(len(p) + len(r) for p, r in rows)
    longest = max(len(r) for _, r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    attention = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    positions = torch.zeros((len(rows), longest), dtype=torch.long, device=device)   # index of the logit predicting each response token
    targets = torch.zeros((len(rows), longest), dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), longest), dtype=torch.bool, device=device)
    for m, (prompt, response) in enumerate(rows):
        seq = prompt + response
        ids[m, : len(seq)] = torch.tensor(seq, device=device)
        attention[m, : len(seq)] = 1
        positions[m, : len(response)] = torch.arange(len(prompt) - 1, len(seq) - 1, device=device)
        targets[m, : len(response)] = torch.tensor(response, device=device)
        mask[m, : len(response)] = True
    logits = model(input_ids=ids, attention_mask=attention).logits                       # [M, W, V]
    picked = logits.gather(1, positions[:, :, None].expand(-1, -1, logits.shape[-1])).float() / temperature   # [M, L, V]
    logp = torch.log_softmax(picked, dim=-1).gather(-1, targets[:, :, None]).squeeze(-1)
    return torch.where(mask, logp, torch.zeros_like(logp)), mask


def policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor, advantage: torch.Tensor,
                weight: torch.Tensor, clip_eps: float, kl_coef: float, normaliser: float):
    """Token-level clipped surrogate plus KL; shapes [M, L] (advantage, weight: [M, L] too,
    0 on padding). Returns (loss summed over these tokens / normaliser, stats)."""
    ratio = torch.exp(logp - logp_old)
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    pg = -torch.minimum(ratio * advantage, clipped * advantage)
    delta = logp_ref - logp
    kl = torch.exp(delta) - delta - 1.0
    loss = ((pg + kl_coef * kl) * weight).sum() / normaliser
    with torch.no_grad():
        on = weight > 0
        stats = {"pg": float((pg * weight).sum() / normaliser), "kl": float((kl * weight).sum() / normaliser),
                 "clip_frac": float(((ratio - clipped).abs() > 1e-9)[on].float().mean()) if on.any() else 0.0}
    return loss, stats
