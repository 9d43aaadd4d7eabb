"""Hand-computed cases for each estimator, and what they must say on the real games."""

import math

import numpy as np
import pytest
import torch

from mas_credit.agents import ScriptedTeam
from mas_credit.agents.critic import ScriptedCritic
from mas_credit.counterfactual import fill_needs
from mas_credit.estimators import get_estimator
from mas_credit.games import list_games, make_game
from mas_credit.rollout import collect, collect_tree
from mas_credit.types import CreditBatch, Episode, Turn

from . import reference
from .devices import DEVICES

# every case runs on each device (its numbers are compared on the CPU); `est(batch)` without a
# device (auto) is covered by test_auto_runs_where_the_library_says_and_gives_the_same_numbers
pytestmark = pytest.mark.parametrize("device", DEVICES)


def run(name, batch, device, cfg=None):
    """The estimator on `device`, its output brought back to the CPU."""
    out = get_estimator(name)(batch, dict(cfg or {}, device=device))
    assert out.credit.device.type == out.advantage.device.type == device
    return out.cpu()


def episode(turn_agents, reward, group=0, valid=None, components=None, n_agents=2, path=None):
    valid = valid or [True] * len(turn_agents)
    turns = [
        Turn(agent=a, step=t, prompt="", text="", action=None, valid=v, format=v)
        for t, (a, v) in enumerate(zip(turn_agents, valid))
    ]
    info = {"tree_path": list(path)} if path is not None else {}
    return Episode(
        game="hand",
        task_seed=group,
        group=group,
        agents=[f"agent_{i}" for i in range(n_agents)],
        turns=turns,
        reward=float(reward),
        components=components or {},
        info=info,
    )


# -- dr_mas ----------------------------------------------------------------------------------
def test_dr_mas_equals_the_reference_formula_by_hand(device):
    batch = CreditBatch.from_episodes([episode([0, 1, 0], 1.0), episode([0, 1], 0.0)])

    def est(batch, cfg=None):
        return run("dr_mas", batch, device, cfg)

    s3, s2 = math.sqrt(1 / 3), math.sqrt(0.5)
    # agent 0 rows [1, 1, 0]: mean 2/3, unbiased std sqrt(1/3); agent 1 rows [1, 0]
    expect = [
        [(1 / 3) / (s3 + 1e-6), 0.5 / (s2 + 1e-6), (1 / 3) / (s3 + 1e-6)],
        [-(2 / 3) / (s3 + 1e-6), -0.5 / (s2 + 1e-6), 0.0],
    ]
    np.testing.assert_allclose(est(batch).advantage.numpy(), expect, atol=1e-9)
    # one row per trajectory: agent 0 counts [1, 0]
    traj = est(batch, {"row_stats": "trajectories"}).advantage.numpy()
    np.testing.assert_allclose(traj[0, [0, 2]], [0.5 / (s2 + 1e-6)] * 2, atol=1e-9)
    # all agents pooled: rows [1, 1, 1, 0, 0], mean 0.6, std sqrt(0.3)
    pooled = est(batch, {"group_by_agent": False}).advantage.numpy()
    np.testing.assert_allclose(pooled[0], [0.4 / (math.sqrt(0.3) + 1e-6)] * 3, atol=1e-9)
    np.testing.assert_allclose(est(batch, {"norm_by_std": False}).advantage.numpy()[1, :2], [-2 / 3, -0.5], atol=1e-12)


def test_dr_mas_trajectories_average_a_trajectorys_rows(device):
    """The issue's case: component rewards differ within an episode. A trajectory is one sample,
    the mean of its rows (DrMAS' compute_grpo_outcome_advantage, group_by_agent_id=False);
    it used to take the first row's statistics and give the other rows -1e6."""
    batch = CreditBatch.from_episodes(
        [
            episode([0, 1], 0.0, components={"correct": [1.0, 0.0]}),
            episode([0, 1], 1.0, components={"correct": [1.0, 1.0]}),
        ]
    )
    adv = run(
        "dr_mas", batch, device, {"group_by_agent": False, "row_stats": "trajectories", "reward": "correct"}
    ).advantage
    # trajectory means 0.5 and 1.0: mean 0.75, unbiased std sqrt(1/8)
    a = 0.25 / (math.sqrt(1 / 8) + 1e-6)
    np.testing.assert_allclose(adv.numpy(), [[-a, -a], [a, a]], atol=1e-12)


def test_dr_mas_singleton_and_zero_variance_groups_give_no_nan(device):
    batch = CreditBatch.from_episodes(
        [
            episode([0, 1], 0.7, group=0),  # singleton group
            episode([0, 1], 1.0, group=1),
            episode([1, 0], 1.0, group=1),
        ]
    )  # zero variance
    for name in ("dr_mas", "grpo", "m_grpo", "llm_mca"):
        if name == "llm_mca":
            for b in range(3):
                batch.critic_share[b] = torch.tensor([0.5, 0.5], dtype=torch.float64)
        out = run(name, batch, device, {"baseline": "none"} if name == "llm_mca" else None)
        assert torch.isfinite(out.advantage).all(), name
    adv = run("dr_mas", batch, device).advantage
    np.testing.assert_allclose(adv[0].numpy(), [0.7 / (1 + 1e-6)] * 2)  # mean 0, std 1
    assert (adv[1:] == 0).all()


# -- c3 ---------------------------------------------------------------------------------------
def test_c3_tree_on_a_hand_built_two_level_tree(device):
    # fan-out [2, 2]: agent 0 branches, then agent 1; leaf rewards by path
    rewards = {(0, 0): 1.0, (0, 1): 0.0, (1, 0): 1.0, (1, 1): 1.0}
    eps = [episode([0, 1], r, path=p) for p, r in rewards.items()]
    out = run("c3", CreditBatch.from_episodes(eps), device, {"mode": "tree"})
    # level 0: nodes r = 0.5, 1.0 -> A = -0.5, +0.5 -> normalised -1, +1
    # level 1 under (0): r = 1, 0 -> A = +1, -1 -> normalised +1, -1; under (1): r = 1, 1 -> 0
    # (the reference divides by sqrt(var_pop + 1e-8))
    s0, s1 = 0.5 / math.sqrt(0.25 + 1e-8), 1 / math.sqrt(1 + 1e-8)
    np.testing.assert_allclose(out.advantage.numpy(), [[-s0, s1], [-s0, -s1], [s0, 0], [s0, 0]], atol=1e-12)
    np.testing.assert_allclose(out.credit.numpy(), [[-0.5, 1], [-0.5, -1], [0.5, 0], [0.5, 0]], atol=1e-9)
    # one training row per node (the reference): a level-0 node's copy in its second leaf weighs 0
    np.testing.assert_array_equal(out.turn_weight.numpy(), [[1, 1], [0, 1], [1, 1], [0, 1]])
    leaves = run("c3", CreditBatch.from_episodes(eps), device, {"mode": "tree", "rows": "leaves"})
    assert leaves.turn_weight is None and torch.equal(leaves.advantage, out.advantage)


def test_c3_counterfactual_gives_one_to_every_agent_of_a_successful_vault(device):
    game = make_game("vault", n_agents=4)
    episodes = collect(game, ScriptedTeam([1.0] * 4), n_tasks=3, group_size=2, seed=0)
    est = get_estimator("c3")
    fill_needs(game, episodes, est.needs(None, 4))
    out = run("c3", CreditBatch.from_episodes(episodes), device)
    assert all(ep.reward == 1.0 for ep in episodes)
    assert (out.credit == 1.0).all()


@pytest.mark.parametrize("name", ["relay", "orchestra", "vault", "council"])
def test_c3_tree_on_real_tree_rollouts_equals_reference(name, device):
    game = make_game(name, n_agents=4)
    team = ScriptedTeam([0.6, 0.7, 0.8, 0.5], malformed_rate=0.1, seed=3)
    episodes = collect_tree(game, team, n_tasks=3, fanout=[2, 3, 2], seed=5)
    batch = CreditBatch.from_episodes(episodes)
    out = run("c3", batch, device, {"mode": "tree", "fanout": [2, 3, 2]})
    credit, adv, weight = reference.c3_tree(batch, None)
    np.testing.assert_allclose(out.advantage.numpy(), adv, atol=1e-9)
    np.testing.assert_allclose(out.credit.numpy(), credit, atol=1e-9)
    np.testing.assert_array_equal(out.turn_weight.numpy(), weight)


# -- m_grpo -----------------------------------------------------------------------------------
@pytest.mark.parametrize("calls", [1, 2, 4, 6])
def test_m_grpo_aligns_every_rollout_to_d_max_rows(calls, device):
    n = 4
    comps = {"format": [1.0] * n, "correct": [1.0] * n}
    eps = [
        episode([0] + [1 + c % 3 for c in range(calls)] + [0], 1.0, group=0, n_agents=n, components=comps),
        episode(
            [0] + [1 + c % 3 for c in range(calls)] + [0],
            0.0,
            group=0,
            n_agents=n,
            valid=[True] + [c % 2 == 0 for c in range(calls)] + [True],
            components={"format": [0.0] * n, "correct": [0.0] * n},
        ),
    ]
    out = run("m_grpo", CreditBatch.from_episodes(eps), device, {"d_max": 4})
    sub = CreditBatch.from_episodes(eps).turn_agent > 0
    assert out.turn_weight[sub].reshape(2, -1).sum(dim=1).tolist() == [4.0, 4.0]
    assert (out.turn_weight[CreditBatch.from_episodes(eps).turn_agent == 0] == 1).all()
    if calls > 4:
        assert out.metrics["m_grpo/dropped_calls"] == 2 * (calls - 4)
    # R_M: 1 for the first rollout (in form, right), 0 for the second (off form); a sub-agent's call off
    # form gets 0, one in form 1.0 under a main reward of 1 and format_score 0.1 under a main reward of 0
    assert out.credit[0, 0] == 1.0 and out.credit[1, 0] == 0.0
    assert out.credit[0, 1 : 1 + min(calls, 3)].tolist() == [1.0] * min(calls, 3)
    if calls == 1:
        assert out.credit[1, 1] == pytest.approx(0.1)
    weighted = run("m_grpo", CreditBatch.from_episodes(eps), device, {"d_max": 4, "rewards": "weighted"})
    assert weighted.credit[0, 0] == pytest.approx(0.1 * 1 + 0.9 * 1) and weighted.credit[1, 1] == 0.0


def test_m_grpo_mrlx_rewards_on_the_issue_reproducer(device):
    """d_max 1, one task: main format [0, 1, 1], main correct [0, 1, 0], one valid sub call each.
    MrlX: main rewards [0, 1, 0.1]; sub rewards [0.1, 1, 0.1]; sub advantages [-0.577, 1.155, -0.577]."""
    eps = [
        episode([0, 1, 0], 0.0, components={"format": [f, 1.0], "correct": [c, 1.0]})
        for f, c in [(0, 0), (1, 1), (1, 0)]
    ]
    out = run("m_grpo", CreditBatch.from_episodes(eps), device, {"d_max": 1})
    np.testing.assert_allclose(out.credit[:, 0].numpy(), [0.0, 1.0, 0.1], atol=1e-12)
    np.testing.assert_allclose(out.credit[:, 1].numpy(), [0.1, 1.0, 0.1], atol=1e-12)
    std = math.sqrt(0.27)  # sub rewards' mean 0.4, unbiased std sqrt(0.27)
    np.testing.assert_allclose(
        out.advantage[:, 1].numpy(), [-0.3 / (std + 1e-6), 0.6 / (std + 1e-6), -0.3 / (std + 1e-6)], atol=1e-12
    )
    np.testing.assert_allclose(out.advantage[:, 1].numpy(), [-0.577, 1.155, -0.577], atol=1e-3)
    weighted = run("m_grpo", CreditBatch.from_episodes(eps), device, {"d_max": 1, "rewards": "weighted"})
    np.testing.assert_allclose(weighted.credit[:, 1].numpy(), [0.0, 1.0, 0.1], atol=1e-12)  # ours: gated R_M


def test_m_grpo_duplicates_valid_calls_only_by_default(device):
    n = 3
    eps = [
        episode(
            [0, 1, 2, 0],
            1.0,
            n_agents=n,
            valid=[True, False, True, True],
            components={"format": [1.0] * n, "correct": [1.0] * n},
        )
    ]
    weight = run("m_grpo", CreditBatch.from_episodes(eps), device, {"d_max": 5}).turn_weight
    assert weight[0].tolist() == [1.0, 1.0, 4.0, 1.0]  # 3 copies of the one valid call


@pytest.mark.parametrize("name", ["m_grpo", "grpo", "dr_mas"])
def test_a_group_where_every_episode_scores_the_same_gets_advantage_exactly_0(name, device):
    """R_M = 0.1 in each of 3 failed episodes: 0.1 * 3 / 3 is not 0.1 in floating point, so a
    mean from sum / count left +-1.4e-11 after dividing by eps; equal entries now give 0."""
    n = 3
    comps = {"format": [1.0] * n, "correct": [0.0] * n}
    eps = [episode([0, 1, 2, 0], 0.0, group=0, n_agents=n, components=comps) for _ in range(3)]
    out = run(name, CreditBatch.from_episodes(eps), device)
    assert torch.count_nonzero(out.advantage) == 0, out.advantage


# -- the real games -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_games())
def test_a_lazy_agent_gets_zero_credit_from_sound_estimators_and_r_from_grpo(name, device):
    n = 3
    lazy = n - 1
    game = make_game(name, n_agents=n, lazy_agents=[lazy])
    team = ScriptedTeam([0.9, 0.8, 0.9], malformed_rate=0.05, seed=1)
    episodes = collect(game, team, n_tasks=6, group_size=3, seed=2)
    for est_name, cfg in [
        ("shapley", {}),
        ("sharp", {}),
        ("c3", {}),
        ("loo", {}),
        ("coma", {}),
        ("sharp", {"method": "sampled", "budget": 6}),
    ]:
        est = get_estimator(est_name)
        eps = [Episode.from_dict(ep.to_dict()) for ep in episodes]
        fill_needs(game, eps, est.needs(cfg, n), team=team)
        out = run(est_name, CreditBatch.from_episodes(eps), device, cfg)
        assert (out.credit[:, lazy].abs() < 1e-12).all(), (est_name, cfg, out.credit[:, lazy])
    batch = CreditBatch.from_episodes(episodes)
    out = run("grpo", batch, device)
    # GRPO broadcasts R to every agent that acted (orchestra never calls a sub-agent that holds nothing)
    acted = batch.acted[:, lazy]
    assert acted.all() or name.startswith("orchestra")
    torch.testing.assert_close(out.credit[:, lazy], torch.where(acted, batch.reward, torch.zeros_like(batch.reward)))


@pytest.mark.parametrize("name", ["relay", "orchestra"])
def test_resampled_counterfactuals_keep_a_lazy_agent_at_zero_with_a_deterministic_team(name, device):
    """Resampled v(S) are Monte Carlo estimates, so a null player gets 0 only in expectation;
    with a deterministic team every re-run is the same and the zero is exact."""
    game = make_game(name, n_agents=4, lazy_agents=[3])
    team = ScriptedTeam([1.0, 1.0, 1.0, 1.0], seed=0)
    episodes = collect(game, team, n_tasks=4, group_size=2, seed=0)
    for est_name in ("shapley", "loo", "coma"):
        cfg = {"counterfactual": "resample", "samples": 2}
        est = get_estimator(est_name)
        eps = [Episode.from_dict(ep.to_dict()) for ep in episodes]
        fill_needs(game, eps, est.needs(cfg, 4), team=team)
        assert (run(est_name, CreditBatch.from_episodes(eps), device, cfg).credit[:, 3] == 0).all(), est_name


def test_estimators_disagree_as_designed_on_and_and_or(device):
    """n = 3, everyone right: AND -> Shapley 1/3 each, LOO 1 each; OR -> Shapley 1/3, LOO 0."""
    team = ScriptedTeam([1.0] * 3)
    for name, loo_expected in (("vault", 1.0), ("lookout", 0.0)):
        game = make_game(name, n_agents=3)
        episodes = collect(game, team, n_tasks=4, seed=0)
        fill_needs(game, episodes, get_estimator("shapley").needs(None, 3))
        batch = CreditBatch.from_episodes(episodes)
        assert torch.allclose(run("shapley", batch, device).credit, torch.full((4, 3), 1 / 3, dtype=torch.float64))
        assert torch.allclose(run("loo", batch, device).credit, torch.full((4, 3), loo_expected, dtype=torch.float64))


def test_llm_mca_with_a_perfect_scripted_critic_recovers_positive_shapley_shares(device):
    game = make_game("potluck", n_agents=4, lazy_agents=[3])
    team = ScriptedTeam([0.9, 0.5, 0.7, 0.9], seed=0)
    episodes = collect(game, team, n_tasks=4, group_size=2, seed=1)
    est = get_estimator("llm_mca")
    metrics = fill_needs(game, episodes, est.needs(None, 4), critic=ScriptedCritic(accuracy=1.0))
    assert metrics["critic/calls"] == 8 and metrics["critic/fallback"] == 0
    out = run("llm_mca", CreditBatch.from_episodes(episodes), device)
    fill_needs(game, episodes, get_estimator("shapley").needs(None, 4))
    phi = run("shapley", CreditBatch.from_episodes(episodes), device).credit
    # potluck is additive with non-negative contributions: shares * R = phi whenever v(empty) = 0
    v_empty = torch.tensor([ep.coalition_values[0] for ep in episodes], dtype=torch.float64)
    ok = (v_empty == 0) & (phi.min(dim=1).values >= 0)
    assert ok.any()
    torch.testing.assert_close(out.credit[ok], phi[ok], atol=1e-3, rtol=0)
    assert (out.credit[:, 3] == 0).all()


def test_auto_runs_where_the_library_says_and_gives_the_same_numbers(device, monkeypatch):
    """`device: auto` (the default) is CUDA where a GPU is present and the CPU elsewhere; on
    either, the numbers are those of the named device."""
    import mas_credit.types as types

    from .devices import AUTO

    assert types.resolve_device("auto").type == types.resolve_device(None).type == AUTO
    with monkeypatch.context() as patch:  # both choices of auto, whatever this machine has
        patch.setattr(torch.cuda, "is_available", lambda: True)
        assert types.resolve_device("auto").type == "cuda"
        patch.setattr(torch.cuda, "is_available", lambda: False)
        assert types.resolve_device("auto").type == "cpu"
    game = make_game("council", n_agents=4)
    episodes = collect(game, ScriptedTeam([0.9, 0.5, 0.7, 0.6], seed=0), n_tasks=4, group_size=2, seed=0)
    fill_needs(game, episodes, get_estimator("shapley").needs(None, 4))
    batch = CreditBatch.from_episodes(episodes)
    for name in ("shapley", "sharp", "loo", "grpo", "dr_mas"):
        auto = get_estimator(name)(batch)
        assert auto.credit.device.type == AUTO
        named = run(name, batch, device)
        torch.testing.assert_close(auto.cpu().credit, named.credit, atol=1e-9, rtol=0)
        torch.testing.assert_close(auto.cpu().advantage, named.advantage, atol=1e-9, rtol=0)
