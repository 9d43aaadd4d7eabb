"""`m_grpo`: hierarchical main/sub-agent GRPO (Hong et al. 2025, M-GRPO, arXiv 2511.13288).

Companion code: AQ-MedAI/MrlX (commit 0d0478832564492a53be093b7f4cf95d3af21b80),
`MrlX-DeepResearch/agent_co_train/main_agent_reward.py::compute_score_em` (called with
`format_score=0.1` in `main_agent_multiturn.py`) and `sub_agent_multiturn.py::reward_func`;
the group normalisation is slime's GRPO (THUDM/slime). Ported in tests/test_reference_ports.py.

One main agent (knob `main_agent`), every other agent a sub-agent. Two reward schemes:
  `rewards: mrlx` (default; the companion code's):
    main reward   R_M = 1 if the main agent answered in the asked form (`format` = 1: all
                  its turns) and exactly right (`correct` = 1); `format_score` (0.1) if in
                  form but not right; 0 if not in form.
    sub reward    per call: 0 if the call was not answered in the asked form (the turn's
                  `format`); else `format_score` x 1 when R_M = 0, R_M when R_M =
                  format_score, and 1.0 for any other R_M (reward_func's branches).
  `rewards: weighted` (this project's before the companion code was matched):
    main reward   R_M = a_format * format[main] + a_correct * correct[main]
    sub reward    shared fate gated by parsing: 0 for a call that did not parse, else R_M.
  A game without both components uses R as R_M (counted `m_grpo/no_components`).
  alignment       every rollout contributes exactly D_max sub-agent rows (default 4):
                  fewer calls -> duplicate randomly chosen calls (their turn weight
                  counts the copies), more -> drop random extras (turn weight 0).
  main advantage  R_M normalised over the group's rollouts.
  sub advantage   the sub reward normalised over the group's K * D_max aligned rows.
  credit          main: R_M; a sub-agent: the mean reward of its calls (ours).
Ours, from the paper's text: the D_max alignment. The public code has none (sub-agent
samples go to the trainer 8 to a group from a queue). Also ours: D_max = 4; duplicates are
drawn from the valid calls (`duplicate: valid`; `any`: all calls; `best`: the valid calls of
the sub-agents with the highest `correct` component); a rollout with no call adds no rows
(counted `m_grpo/no_calls`). The draws come from a CPU generator seeded with `seed`, so
CPU and CUDA give the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mas_credit.estimators import Needs, register_estimator
from mas_credit.estimators.common import EPS, BaseConfig, check_choice, normalise
from mas_credit.types import Credit, CreditBatch


@dataclass
class MGrpoConfig(BaseConfig):
    main_agent: int = 0
    """index of the main agent; every other agent is a sub-agent"""
    rewards: str = "mrlx"
    """mrlx: the companion code's 1 / format_score / 0 scheme | weighted: a_format * format + a_correct * correct"""
    format_score: float = 0.1
    """mrlx: the main reward of an answer in form but wrong"""
    a_format: float = 0.1
    """weighted: weight of the main agent's format component in R_M"""
    a_correct: float = 0.9
    """weighted: weight of the main agent's correctness component in R_M"""
    d_max: int = 4
    """sub-agent rows per rollout after alignment"""
    duplicate: str = "valid"
    """which calls fill a rollout with fewer than d_max calls: valid | any | best"""
    seed: int = 0
    """seed of the alignment draws"""
    eps: float = EPS

    def check(self):
        check_choice("m_grpo", "duplicate", self.duplicate, ("valid", "any", "best"))
        check_choice("m_grpo", "rewards", self.rewards, ("mrlx", "weighted"))
        if not 0.0 <= self.format_score < 1.0:
            raise ValueError(f"estimator 'm_grpo': format_score must be in [0, 1), got {self.format_score}")
        if self.d_max < 1:
            raise ValueError(f"estimator 'm_grpo': d_max must be >= 1, got {self.d_max}")


def main_reward(batch: CreditBatch, cfg: MGrpoConfig) -> tuple[torch.Tensor, bool]:
    """R_M [B], and whether the game's components were used."""
    if "format" not in batch.components or "correct" not in batch.components:
        return batch.reward.clone(), False
    fmt, correct = batch.components["format"][:, cfg.main_agent], batch.components["correct"][:, cfg.main_agent]
    if cfg.rewards == "weighted":
        return cfg.a_format * fmt + cfg.a_correct * correct, True
    in_form, exact = fmt >= 1.0, correct >= 1.0
    zero = torch.zeros_like(fmt)
    return torch.where(in_form, torch.where(exact, torch.ones_like(fmt), zero + cfg.format_score), zero), True


def sub_rewards(batch: CreditBatch, reward_main: torch.Tensor, cfg: MGrpoConfig) -> torch.Tensor:
    """[B, T] the reward of each turn as a sub-agent call (main turns and padding included;
    the caller masks them)."""
    r = reward_main[:, None].expand(-1, batch.n_turns)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    if cfg.rewards == "weighted":
        return torch.where(batch.turn_valid, r, zero)
    fmt = 1.0  # reward_func reaches these branches only in form
    by_main = torch.where(
        r == 0,
        zero + cfg.format_score * fmt,
        torch.where(r == cfg.format_score, r, torch.ones((), dtype=r.dtype, device=r.device)),
    )
    return torch.where(batch.turn_format, by_main, zero)


def alignment_draws(batch_size: int, n_turns: int, cfg: MGrpoConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The uniform draws alignment uses: drop keys [B, T] and duplicate picks [B, D_max]."""
    gen = torch.Generator(device="cpu").manual_seed(int(cfg.seed))
    drop = torch.rand((batch_size, n_turns), generator=gen, dtype=torch.float64)
    pick = torch.rand((batch_size, cfg.d_max), generator=gen, dtype=torch.float64)
    return drop, pick


def eligible_calls(batch: CreditBatch, sub_turn: torch.Tensor, how: str) -> torch.Tensor:
    """[B, T] calls a short rollout may duplicate (falls back valid -> any per rollout)."""
    valid = sub_turn & batch.turn_valid
    if how == "best" and "correct" in batch.components:
        score = torch.gather(batch.components["correct"], 1, batch.turn_agent.clamp(min=0))
        score = torch.where(valid, score, torch.full_like(score, -torch.inf))
        best = valid & (score == score.amax(dim=1, keepdim=True))
        valid = torch.where(best.any(dim=1, keepdim=True), best, valid)
    if how == "any":
        return sub_turn
    return torch.where(valid.any(dim=1, keepdim=True), valid, sub_turn)


def aligned_weights(batch: CreditBatch, sub_turn: torch.Tensor, cfg: MGrpoConfig) -> torch.Tensor:
    """[B, T] how many of the D_max aligned rows each sub-agent turn fills."""
    batch_size, n_turns = sub_turn.shape
    drop, pick = (t.to(batch.device) for t in alignment_draws(batch_size, n_turns, cfg))
    calls = sub_turn.sum(dim=1)  # [B]
    # too many calls: keep the d_max with the smallest drop keys
    keys = torch.where(sub_turn, drop, torch.full_like(drop, torch.inf))
    rank = keys.argsort(dim=1).argsort(dim=1)  # [B, T]
    keep = sub_turn & (rank < cfg.d_max)
    weight = keep.to(batch.reward.dtype)
    # too few: add d_max - calls copies, pick j chooses the floor(u * |E|)-th eligible call
    eligible = eligible_calls(batch, sub_turn, cfg.duplicate)
    n_eligible = eligible.sum(dim=1)  # [B]
    order = torch.cumsum(eligible.long(), dim=1) - 1  # [B, T] rank among eligible
    choice = (pick * n_eligible[:, None]).floor().long().clamp(max=(n_eligible - 1).clamp(min=0)[:, None])  # [B, D]
    wanted = (torch.arange(cfg.d_max, device=batch.device)[None, :] < (cfg.d_max - calls)[:, None]) & (calls > 0)[
        :, None
    ]
    hits = eligible[:, None, :] & (order[:, None, :] == choice[:, :, None]) & wanted[:, :, None]  # [B, D, T]
    return weight + hits.sum(dim=1).to(weight.dtype)


@register_estimator(
    "m_grpo",
    MGrpoConfig,
    lambda cfg, n: Needs(groups=True),
    granularity="multi-agent",
    family="Monte Carlo (survey: Hierarchical)",
)
def m_grpo(batch: CreditBatch, cfg: MGrpoConfig) -> Credit:
    """credit [B, N]; advantage [B, T]; turn_weight [B, T] (aligned row counts)."""
    if not 0 <= cfg.main_agent < batch.n_agents:
        raise ValueError(
            f"estimator 'm_grpo': main_agent {cfg.main_agent} is not an agent of a team of {batch.n_agents} "
            f"(valid: 0..{batch.n_agents - 1})"
        )
    dtype, device = batch.reward.dtype, batch.device
    turns = batch.turn_agent >= 0
    main_turn = batch.turn_agent == cfg.main_agent  # [B, T]
    sub_turn = turns & ~main_turn
    reward_main, used_components = main_reward(batch, cfg)  # [B]
    n_groups = int(batch.group.max()) + 1
    main_adv = normalise(reward_main, batch.group, torch.ones_like(reward_main), n_groups, cfg.eps)  # [B]

    gated = sub_rewards(batch, reward_main, cfg)  # [B, T]
    weight = aligned_weights(batch, sub_turn, cfg)  # [B, T]
    group_rows = batch.group[:, None].expand_as(sub_turn)
    sub_adv = normalise(gated.reshape(-1), group_rows.reshape(-1), weight.reshape(-1), n_groups, cfg.eps).reshape(
        sub_turn.shape
    )

    zero = torch.zeros((), dtype=dtype, device=device)
    advantage = torch.where(main_turn, main_adv[:, None].expand_as(main_turn), torch.where(weight > 0, sub_adv, zero))
    turn_weight = torch.where(main_turn, torch.ones((), dtype=dtype, device=device), weight)

    calls_of = torch.zeros((batch.batch_size, batch.n_agents), dtype=dtype, device=device)
    calls_of.scatter_add_(1, batch.turn_agent.clamp(min=0), sub_turn.to(dtype))
    gated_of = torch.zeros_like(calls_of).scatter_add_(
        1, batch.turn_agent.clamp(min=0), torch.where(sub_turn, gated, zero)
    )
    credit = gated_of / calls_of.clamp(min=1)
    credit[:, cfg.main_agent] = torch.where(batch.acted[:, cfg.main_agent], reward_main, zero)
    calls = sub_turn.sum(dim=1)
    return Credit(
        credit=credit,
        advantage=advantage,
        turn_weight=turn_weight,
        metrics={
            "m_grpo/no_components": float(not used_components),
            "m_grpo/no_calls": float((calls == 0).sum()),
            "m_grpo/dropped_calls": float((sub_turn & (weight == 0)).sum()),
            "m_grpo/duplicated_rows": float((weight - 1).clamp(min=0).sum()),
        },
    )
