"""The estimators against the papers' public reference code.

Each `port_*` below re-implements one reference function as a plain, slow loop, written
from reading the code at the cited commit (not copied from it). The tests run the
estimators with their reference-matching knobs on real episodes of vault, potluck, relay
and orchestra, with full and ragged groups (ragged: episodes dropped so groups differ in
size, every group keeping at least two), and require agreement to 1e-9 (the issue asks for 1e-6).

Sources read:
  verl    volcengine/verl @ b178a3cd56f58b2d502255daba591e92833930a7
          verl/trainer/ppo/core_algos.py::compute_grpo_outcome_advantage
  DrMAS   langfengQ/DrMAS @ 19c632bc0f75730b6db98d90b5035ee9bb7f66d1
          verl/trainer/ppo/core_algos.py::compute_grpo_outcome_advantage and ::episode_norm_reward;
          verl/trainer/ppo/ray_trainer.py::compute_advantage (index = f"{uid}_{agent_id}" when grouping by agent)
  C3      EIT-EAST-Lab/C3 @ 628185becc70732771393be28d087e88f0a4a5e8
          c3/credit/c3/provider.py::C3CreditProvider.compute (reward_only, baseline loo, _baseline_loo);
          c3/algorithms/utils.py::group_mean_std; openrlhf/trainer/ppo_utils/experience_maker.py::_compute_c3_credit
          (normalize_adv: (x - mean) / std.clamp_min(1e-8))
  MrlX    AQ-MedAI/MrlX @ 0d0478832564492a53be093b7f4cf95d3af21b80
          MrlX-DeepResearch/agent_co_train/main_agent_reward.py::compute_score_em (format_score=0.1 from
          main_agent_multiturn.py); MrlX-DeepResearch/agent_co_train/sub_agent_multiturn.py::reward_func
  slime   THUDM/slime @ 624b824a898ab0ec1fcb4d373004c7f3852bf515
          slime/ray/rollout.py::_post_process_rewards (grpo: (r - mean) / (std + 1e-6), std unbiased)
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from mas_credit.agents import ScriptedTeam
from mas_credit.estimators import get_estimator
from mas_credit.games import make_game
from mas_credit.rollout import collect, collect_tree
from mas_credit.types import CreditBatch

GAMES = ["vault", "potluck", "relay", "orchestra"]
TOL = 1e-9  # the issue asks for 1e-6; float64 on both sides agrees far closer


# -- the ports ------------------------------------------------------------------------------------
def _mean_std_unbiased(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def port_verl_grpo(scores, index, epsilon=1e-6, norm_by_std=True):
    """verl compute_grpo_outcome_advantage: per index, mean and unbiased std of the scores
    (one score: mean 0, std 1); (score - mean) / (std + epsilon)."""
    by_index = defaultdict(list)
    for s, i in zip(scores, index):
        by_index[i].append(s)
    out = []
    for s, i in zip(scores, index):
        mean, std = (0.0, 1.0) if len(by_index[i]) == 1 else _mean_std_unbiased(by_index[i])
        out.append((s - mean) / (std + epsilon) if norm_by_std else s - mean)
    return out


def port_drmas_grpo(scores, index, traj_index, group_by_agent_id, epsilon=1e-6, norm_by_std=True):
    """DrMAS compute_grpo_outcome_advantage: rows are accumulated per (index, traj_index);
    grouping by agent id, every row is a sample of its index; otherwise each trajectory's
    rows are replaced by their mean, which is one sample of its index."""
    traj = defaultdict(list)
    for s, i, t in zip(scores, index, traj_index):
        traj[(i, t)].append(s)
    samples = defaultdict(list)
    for (i, t), rows in traj.items():
        samples[i].extend(rows if group_by_agent_id else [sum(rows) / len(rows)])
    values = (
        list(scores)
        if group_by_agent_id
        else [sum(traj[(i, t)]) / len(traj[(i, t)]) for i, t in zip(index, traj_index)]
    )
    out = []
    for v, i in zip(values, index):
        mean, std = (0.0, 1.0) if len(samples[i]) == 1 else _mean_std_unbiased(samples[i])
        out.append((v - mean) / (std + epsilon) if norm_by_std else v - mean)
    return out


def port_drmas_episode_norm(scores, index, traj_index, group_by_agent_id, epsilon=1e-6, remove_std=False):
    """DrMAS episode_norm_reward: the first row of each (index, traj_index) is a sample
    (every row when grouping by agent); every row's own score is normalised with its
    index's statistics. remove_std=True subtracts the mean only (the flag's meaning there)."""
    samples, seen = defaultdict(list), set()
    for s, i, t in zip(scores, index, traj_index):
        if (i, t) in seen:
            continue
        samples[i].append(s)
        if not group_by_agent_id:
            seen.add((i, t))
    out = []
    for s, i in zip(scores, index):
        mean, std = (0.0, 1.0) if len(samples[i]) == 1 else _mean_std_unbiased(samples[i])
        out.append(s - mean if remove_std else (s - mean) / (std + epsilon))
    return out


def port_c3(sibling_sets):
    """C3 reward_only with the loo baseline, then experience_maker's normalize_adv with
    group_mean_std over the same adv groups. `sibling_sets`: {set id: [(node, node reward)]}.
    Returns {node: advantage}, one row per node."""
    raw = {}
    for members in sibling_sets.values():
        rewards = [r for _, r in members]
        n = len(rewards)
        for node, r in members:
            raw[node] = 0.0 if n <= 1 else r - (sum(rewards) - r) / (n - 1)
    out = {}
    for members in sibling_sets.values():
        values = [raw[node] for node, _ in members]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)  # population variance
        std = max(math.sqrt(var + 1e-8), 1e-8)
        for node, _ in members:
            out[node] = (raw[node] - mean) / std
    return out


def port_mrlx_main(answer_found, valid_format, exact, format_score=0.1, score=1.0):
    """MrlX compute_score_em: no answer -> format_score if the format is valid, else 0;
    an answer -> score if valid and exact, format_score if valid and not exact (the LLM
    judge, which has no counterpart here, is taken to agree with exact match), else 0."""
    if not answer_found:
        return format_score if valid_format else 0.0
    if not valid_format:
        return 0.0
    return score if exact else format_score


def port_mrlx_sub(format_ok, acc_score):
    """MrlX sub-agent reward_func: 0 when the sub-agent's format is wrong; with the main
    agent's reward acc: 0 -> format * 0.1, 0.1 -> 0.1, anything else -> 1.0."""
    fmt = 1.0 if format_ok else 0.0
    if fmt == 0.0:
        return 0.0
    if acc_score == 0.0:
        return fmt * 0.1
    if acc_score == 0.1:
        return acc_score
    return 1.0


def port_slime_grpo(rewards):
    """slime _post_process_rewards for grpo over one group: r - mean, divided by the
    unbiased std + 1e-6."""
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))
    return [(r - mean) / (std + 1e-6) for r in rewards]


# -- real episodes ---------------------------------------------------------------------------------
def team_for(game):
    return ScriptedTeam([0.8, 0.6, 0.7, 0.5][: game.n_agents], malformed_rate=0.15, seed=4)


def ragged(episodes):
    """Drop episodes so that group g keeps 2 + (g mod (size - 1)) of its members."""
    size = max(ep.info["member"] for ep in episodes) + 1
    return [ep for ep in episodes if ep.info["member"] < 2 + ep.group % (size - 1)]


@pytest.fixture(
    scope="module", params=[(g, shape) for g in GAMES for shape in ("full", "ragged")], ids=lambda p: f"{p[0]}-{p[1]}"
)
def episodes(request):
    name, shape = request.param
    game = make_game(name, n_agents=4, difficulty=2)
    eps = collect(game, team_for(game), n_tasks=5, group_size=4, seed=7)
    eps = ragged(eps) if shape == "ragged" else eps
    assert (
        len({len([e for e in eps if e.group == g]) for g in {e.group for e in eps}}) > (shape == "ragged")
        or shape == "full"
    )
    return game, eps


def rows(eps):
    """(b, t, turn) for every real turn."""
    return [(b, t, turn) for b, ep in enumerate(eps) for t, turn in enumerate(ep.turns)]


def run(name, eps, cfg):
    return get_estimator(name)(CreditBatch.from_episodes(eps), dict(cfg, device="cpu"))


# -- grpo == verl ----------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_by_std", [True, False])
def test_grpo_equals_verl(episodes, norm_by_std):
    _, eps = episodes
    port = port_verl_grpo([ep.reward for ep in eps], [ep.group for ep in eps], norm_by_std=norm_by_std)
    adv = run("grpo", eps, {"norm_by_std": norm_by_std}).advantage
    for b, t, _ in rows(eps):
        assert abs(adv[b, t].item() - port[b]) <= TOL


# -- dr_mas == DrMAS --------------------------------------------------------------------------------
@pytest.mark.parametrize("reward", ["team", "correct"])
@pytest.mark.parametrize(
    "knobs,group_by_agent_id,by_agent_index",
    [
        ({}, True, True),  # DrMAS' agent-wise form: index uid_agent
        ({"group_by_agent": False, "row_stats": "trajectories"}, False, False),  # its trajectory-level GRPO: index uid
        ({"row_stats": "trajectories"}, False, True),  # trajectory means within uid_agent
        ({"group_by_agent": False}, True, False),  # every row of the uid a sample
    ],
)
@pytest.mark.parametrize("norm_by_std", [True, False])
def test_dr_mas_equals_drmas_grouped_advantage(episodes, reward, knobs, group_by_agent_id, by_agent_index, norm_by_std):
    _, eps = episodes
    found = rows(eps)
    scores = [eps[b].reward if reward == "team" else eps[b].components[reward][turn.agent] for b, _, turn in found]
    index = [(eps[b].group, turn.agent) if by_agent_index else eps[b].group for b, _, turn in found]
    port = port_drmas_grpo(scores, index, [b for b, _, _ in found], group_by_agent_id, norm_by_std=norm_by_std)
    adv = run("dr_mas", eps, dict(knobs, reward=reward, norm_by_std=norm_by_std)).advantage
    got = [adv[b, t].item() for b, t, _ in found]
    np.testing.assert_allclose(got, port, atol=TOL, rtol=0)
    assert max(abs(a) for a in got) < 1e3


def test_dr_mas_trajectories_equals_episode_norm_reward_when_an_episodes_rows_share_a_reward(episodes):
    """episode_norm_reward takes each trajectory's first row as its sample: with the team
    reward every row of an episode carries the same value, so it is the `trajectories` form."""
    _, eps = episodes
    found = rows(eps)
    for by_std in (True, False):
        port = port_drmas_episode_norm(
            [eps[b].reward for b, _, _ in found],
            [eps[b].group for b, _, _ in found],
            [b for b, _, _ in found],
            group_by_agent_id=False,
            remove_std=not by_std,
        )
        adv = run(
            "dr_mas", eps, {"group_by_agent": False, "row_stats": "trajectories", "norm_by_std": by_std}
        ).advantage
        np.testing.assert_allclose([adv[b, t].item() for b, t, _ in found], port, atol=TOL, rtol=0)


# -- c3 == C3 ---------------------------------------------------------------------------------------
@pytest.fixture(
    scope="module", params=[(g, shape) for g in GAMES for shape in ("full", "ragged")], ids=lambda p: f"{p[0]}-{p[1]}"
)
def trees(request):
    name, shape = request.param
    game = make_game(name, n_agents=4, difficulty=2)
    eps = collect_tree(game, team_for(game), n_tasks=4, fanout=[2, 3, 2], seed=7)
    if shape == "ragged":  # drop leaves: sibling sets of uneven size
        eps = [ep for k, ep in enumerate(eps) if k % 12 not in (1, 5, 6)]
    return game, eps


def test_c3_tree_equals_the_c3_provider_one_row_per_node(trees):
    _, eps = trees
    # nodes and sibling sets from the tree paths, as the reference's rollout annotates them
    leaves, sets, first = defaultdict(list), defaultdict(list), {}
    for b, ep in enumerate(eps):
        path = tuple(ep.info["tree_path"])
        for t, turn in enumerate(ep.turns):
            node = (ep.group, path[: t + 1]) if t < len(path) else ("leaf", b, t)
            sib = (ep.group, path[:t], turn.agent) if t < len(path) else ("leaf", b, t)
            leaves[node].append(ep.reward)
            first.setdefault(node, (b, t, sib))
    for node, (b, t, sib) in first.items():
        sets[sib].append((node, sum(leaves[node]) / len(leaves[node])))
    port = port_c3(sets)
    out = run("c3", eps, {"mode": "tree", "fanout": [2, 3, 2]})
    rows_of_nodes = [(b, t) for b, t in zip(*torch.nonzero(out.turn_weight, as_tuple=True))]
    assert len(rows_of_nodes) == len(port) and out.turn_weight.max() == 1  # one training row per node
    for node, (b, t, _) in first.items():
        assert out.turn_weight[b, t] == 1
        assert abs(out.advantage[b, t].item() - port[node]) <= TOL


# -- m_grpo == MrlX rewards + slime normalisation ---------------------------------------------------
def test_m_grpo_equals_mrlx_rewards_with_slime_normalisation(episodes):
    game, eps = episodes
    out = run("m_grpo", eps, {})
    batch = CreditBatch.from_episodes(eps)
    comps = {k: v.tolist() for k, v in batch.components.items()}
    main = [
        port_mrlx_main(comps["parsed"][b][0] >= 1, comps["format"][b][0] >= 1, comps["correct"][b][0] >= 1)
        for b in range(len(eps))
    ]
    groups = defaultdict(list)
    for b, ep in enumerate(eps):
        groups[ep.group].append(b)
    for members in groups.values():
        # main agent: one sample per rollout
        for b, a in zip(members, port_slime_grpo([main[b] for b in members])):
            for t, turn in enumerate(eps[b].turns):
                if turn.agent == 0:
                    assert abs(out.advantage[b, t].item() - a) <= TOL
        # sub-agents: the rows after our D_max alignment (the turn weight counts a call's copies)
        calls = [
            (b, t, port_mrlx_sub(turn.format, main[b]))
            for b in members
            for t, turn in enumerate(eps[b].turns)
            if turn.agent != 0
        ]
        samples = [r for b, t, r in calls for _ in range(int(out.turn_weight[b, t]))]
        if len(samples) < 2:
            continue
        mean = sum(samples) / len(samples)
        std = math.sqrt(sum((r - mean) ** 2 for r in samples) / (len(samples) - 1))
        for b, t, r in calls:
            if out.turn_weight[b, t] > 0:
                assert abs(out.advantage[b, t].item() - (r - mean) / (std + 1e-6)) <= TOL
    np.testing.assert_allclose(out.credit[:, 0].numpy(), main, atol=TOL)


def test_the_ports_on_the_issues_cases():
    """The ports reproduce the numbers quoted from the reference code."""
    # DrMAS, one group of 2 episodes x 2 agents, `correct` [[1, 0], [1, 1]], trajectory-level
    np.testing.assert_allclose(
        port_drmas_grpo([1, 0, 1, 1], [0] * 4, [0, 0, 1, 1], False), [-0.7071, -0.7071, 0.7071, 0.7071], atol=1e-4
    )
    # MrlX: main format [0, 1, 1], correct [0, 1, 0] -> [0, 1, 0.1]; sub [0.1, 1, 0.1]; sub advantages
    main = [port_mrlx_main(True, f, c) for f, c in [(0, 0), (1, 1), (1, 0)]]
    assert main == [0.0, 1.0, 0.1] and [port_mrlx_sub(True, m) for m in main] == [0.1, 1.0, 0.1]
    np.testing.assert_allclose(port_slime_grpo([0.1, 1.0, 0.1]), [-0.577, 1.155, -0.577], atol=1e-3)
