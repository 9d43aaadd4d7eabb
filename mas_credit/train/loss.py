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
    """Log-probabilities of each row's response tokens after its prompt, in one forward pass.

    Rows are left-padded (with position ids counted from each row's first real token), so
    every response ends at the last position and only the last L+1 positions need logits
    (`logits_to_keep`): the vocabulary projection is never paid for prompt tokens.
    Returns logp [M, L] (L = longest response; right-aligned rows are re-aligned to start
    at 0) and mask [M, L] (False = padding). Gradients flow when the caller enables them.
    """
    device = next(model.parameters()).device
    width = max(len(p) + len(r) for p, r in rows)
    longest = max(len(r) for _, r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    attention = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for m, (prompt, response) in enumerate(rows):
        seq = prompt + response
        ids[m, width - len(seq):] = torch.tensor(seq, device=device)
        attention[m, width - len(seq):] = 1
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attention, position_ids=position_ids,
                   logits_to_keep=longest + 1).logits                                       # [M, L+1, V]
    # window position k predicts the token at absolute position width - longest + k
    logp_all = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)             # [M, L, V]
    targets = ids[:, width - longest:]                                                       # [M, L]
    token_logp = logp_all.gather(-1, targets[:, :, None]).squeeze(-1)
    lengths = torch.tensor([len(r) for _, r in rows], device=device)
    index = torch.arange(longest, device=device)
    mask = index[None, :] < lengths[:, None]
    # re-align: response token j of row m sits at window index longest - R_m + j
    source = (longest - lengths[:, None] + index[None, :]).clamp(max=longest - 1)
    logp = token_logp.gather(1, source)
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
