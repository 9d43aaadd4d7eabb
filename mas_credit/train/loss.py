"""The per-agent policy loss: token-level clipped surrogate (PPO, Schulman et al. 2017;
GRPO, Shao et al. 2024) with a k3 KL estimate to the reference policy
(Schulman 2020, "Approximating KL divergence"), and the token log-probabilities it needs.

    ratio = exp(logp - logp_old)
    pg    = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) * tis
    kl    = exp(logp_ref - logp) - (logp_ref - logp) - 1
    loss  = sum_tokens w * (pg + beta * kl) / sum_tokens w        (w = turn weight x token mask)

logp_old is the trainer's own log-probability before the update (not the sampler's), so
the first epoch's ratio is exactly 1; tis = min(exp(logp_old - logp_sampler), C) is the
optional truncated importance weight of the sampler/trainer gap (Yao et al. 2025, "Your
efficient RL framework secretly brings you off-policy RL training"), 1 when off.

This module must not know about games, teams or estimators.
"""

from __future__ import annotations

import torch


def response_logprobs(
    model, rows: list[tuple[list[int], list[int]]], temperature: float = 1.0, share_prompts: bool = True
):
    """Log-probabilities of each row's response tokens after its prompt: logp [M, L], mask [M, L].

    Rows that share a prompt (the episodes of one task group, in one-shot games) have it
    encoded once when `share_prompts` (see `_shared_prompt_logprobs`); otherwise, or when
    every prompt differs, one forward pass over the whole rows (`_one_pass_logprobs`).
    """
    if share_prompts and len({tuple(p) for p, _ in rows}) < len(rows):
        return _shared_prompt_logprobs(model, rows, temperature)
    return _one_pass_logprobs(model, rows, temperature)


def right_padded(rows: list, dtype, value=0) -> torch.Tensor:
    """Rows of unequal length as one right-padded CPU tensor [M, L], built by one `torch.tensor`
    call from padded lists (one operator, not several per row: on a GPU host each operator
    costs launch time), so a caller moves it to the device in one copy."""
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=dtype)


def _left_padded(sequences: list[list[int]], device):
    """Token ids left-padded to the longest, and their attention mask: ids, attention [M, W] on `device`
    (each built by one `torch.tensor` call, as `right_padded`)."""
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[0] * (width - len(s)) + list(s) for s in sequences], dtype=torch.long)
    attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], dtype=torch.long)
    return ids.to(device), attention.to(device)


def _one_pass_logprobs(model, rows, temperature):
    """Log-probabilities of each row's response tokens after its prompt, in one forward pass.

    Rows are left-padded (with position ids counted from each row's first real token), so
    every response ends at the last position and only the last L+1 positions need logits
    (`logits_to_keep`): the vocabulary projection is never paid for prompt tokens.
    Returns logp [M, L] (L = longest response; right-aligned rows are re-aligned to start
    at 0) and mask [M, L] (False = padding). Gradients flow when the caller enables them.
    """
    device = next(model.parameters()).device
    longest = max(len(r) for _, r in rows)
    ids, attention = _left_padded([p + r for p, r in rows], device)
    width = ids.shape[1]
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(
        input_ids=ids, attention_mask=attention, position_ids=position_ids, logits_to_keep=longest + 1
    ).logits  # [M, L+1, V]
    # window position k predicts the token at absolute position width - longest + k
    logp_all = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)  # [M, L, V]
    targets = ids[:, width - longest :]  # [M, L]
    token_logp = logp_all.gather(-1, targets[:, :, None]).squeeze(-1)
    lengths = torch.tensor([len(r) for _, r in rows]).to(device)
    index = torch.arange(longest, device=device)
    mask = index[None, :] < lengths[:, None]
    # re-align: response token j of row m sits at window index longest - R_m + j
    source = (longest - lengths[:, None] + index[None, :]).clamp(max=longest - 1)
    logp = token_logp.gather(1, source)
    return torch.where(mask, logp, torch.zeros_like(logp)), mask


def _shared_prompt_logprobs(model, rows, temperature):
    """The same numbers, with each distinct prompt encoded once.

    Pass 1 runs the U distinct prompts (left-padded) and keeps their key/value cache and
    the last position's logits, which predict every response's first token. The cache is
    then gathered to the M rows, and pass 2 runs each row's response tokens but the last
    (right-padded, positions continuing after its prompt), whose logits predict tokens
    1..R-1. Gradients flow through both passes (the LoRA weights shape the prompt's cache
    too), so the update is the same as the one-pass one, at a fraction of the prompt cost
    when group_size episodes share each prompt.
    """
    device = next(model.parameters()).device
    prompts = list(dict.fromkeys(tuple(p) for p, _ in rows))
    slot = {p: k for k, p in enumerate(prompts)}
    ids, attention = _left_padded([list(p) for p in prompts], device)
    out = model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=(attention.cumsum(dim=1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=1,
    )
    which = torch.tensor([slot[tuple(p)] for p, _ in rows]).to(device)  # [M] row -> its prompt
    # index_select, not indexing: its backward (index_add) is deterministic on CPU, so a resumed
    # run repeats an uninterrupted one bit for bit
    first = out.logits[:, -1].index_select(0, which)  # [M, V] predicts token 0
    longest = max(len(r) for _, r in rows)
    lengths = torch.tensor([len(r) for _, r in rows]).to(device)
    targets = right_padded([r for _, r in rows], torch.long).to(device)  # [M, L]
    logits = first[:, None]  # [M, 1, V]
    if longest > 1:
        cache = out.cache
        cache.reorder_cache(which)  # index_select per layer: [U, ...] -> [M, ...]
        rest = targets[:, : longest - 1]  # inputs: tokens 0..L-2
        rest_attention = (torch.arange(longest - 1, device=device)[None, :] < (lengths - 1)[:, None]).long()
        prompt_attention = attention.index_select(0, which)
        positions = prompt_attention.sum(dim=1, keepdim=True) + torch.arange(longest - 1, device=device)[None, :]
        later = model(
            input_ids=rest,
            attention_mask=torch.cat([prompt_attention, rest_attention], dim=1),
            position_ids=positions,
            cache=cache,
            use_cache=True,
        ).logits  # [M, L-1, V]
        logits = torch.cat([logits, later], dim=1)
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)  # [M, L, V]
    logp = logp_all.gather(-1, targets[:, :, None]).squeeze(-1)
    mask = torch.arange(longest, device=device)[None, :] < lengths[:, None]
    return torch.where(mask, logp, torch.zeros_like(logp)), mask


def policy_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    advantage: torch.Tensor,
    weight: torch.Tensor,
    clip_eps: float,
    kl_coef: float,
    normaliser: float,
    tis: torch.Tensor | None = None,
):
    """Token-level clipped surrogate plus KL; shapes [M, L] (advantage, weight, tis: [M, L] too;
    weight 0 = padding or a dropped turn). Returns (loss summed over these tokens / normaliser,
    stats): stats are 0-dim tensors on logp's device (pg, kl: this chunk's share of the loss
    terms; clipped: tokens whose ratio was clipped; ratio_dev: the largest |ratio - 1|), so a
    caller sums them over micro-batches without a device sync per chunk."""
    ratio = torch.exp(logp - logp_old)
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    pg = -torch.minimum(ratio * advantage, clipped * advantage)
    if tis is not None:
        pg = pg * tis
    delta = logp_ref - logp
    kl = torch.exp(delta) - delta - 1.0
    loss = ((pg + kl_coef * kl) * weight).sum() / normaliser
    with torch.no_grad():
        on = weight > 0
        stats = {
            "pg": (pg * weight).sum() / normaliser,
            "kl": (kl * weight).sum() / normaliser,
            "clipped": (((ratio - clipped).abs() > 1e-9) & on).sum(),
            "ratio_dev": torch.where(on, (ratio - 1).abs(), torch.zeros_like(ratio)).max(),
        }
    return loss, stats
