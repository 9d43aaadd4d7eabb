"""Exact Shapley from team_value: equals brute-force enumeration and the structure
each game declares (AND, OR, additive, threshold, chain, hierarchical, lazy)."""

import numpy as np
import pytest
import torch

from mas_credit.agents import ScriptedTeam
from mas_credit.counterfactual import fill_coalitions
from mas_credit.estimators import get_estimator
from mas_credit.estimators.shapley import exact_shapley, shapley_weights
from mas_credit.games import list_games, make_game
from mas_credit.rollout import collect
from mas_credit.types import CreditBatch

from .conftest import brute_force_shapley


def shapley_of(game, episodes):
    fill_coalitions(game, episodes, "all")
    return exact_shapley(CreditBatch.from_episodes(episodes).coalition_values).numpy()


def loo_of(game, episode):
    full = (1 << game.n_agents) - 1
    return np.array([episode.reward - game.team_value(episode, full & ~(1 << i)) for i in range(game.n_agents)])


@pytest.mark.parametrize("name", list_games())
@pytest.mark.parametrize("n_agents", [2, 3, 5])
def test_exact_shapley_matches_brute_force(name, n_agents):
    game = make_game(name, n_agents=n_agents, difficulty=2, lazy_agents=[n_agents - 1] if n_agents > 2 else [])
    team = ScriptedTeam([0.7] * n_agents, malformed_rate=0.1)
    episodes = collect(game, team, n_tasks=6, group_size=2, seed=1)
    phi = shapley_of(game, episodes)
    for b, ep in enumerate(episodes):
        ref = brute_force_shapley(lambda m: game.team_value(ep, m), n_agents)
        np.testing.assert_allclose(phi[b], ref, atol=1e-12)
        assert phi[b].sum() == pytest.approx(ep.reward - ep.coalition_values[0])


def perfect(game, n_tasks=5, seed=0):
    return collect(game, ScriptedTeam([1.0] * game.n_agents), n_tasks=n_tasks, group_size=1, seed=seed)


@pytest.mark.parametrize("n_agents", [2, 3, 6])
def test_and_gives_equal_shares_on_success(n_agents):
    game = make_game("vault", n_agents=n_agents)
    episodes = perfect(game)
    assert all(ep.reward == 1.0 for ep in episodes)
    np.testing.assert_allclose(shapley_of(game, episodes), 1.0 / n_agents)
    np.testing.assert_allclose(loo_of(game, episodes[0]), 1.0)  # leave-one-out over-credits AND


def test_or_with_three_gives_a_third_each_and_loo_zero():
    game = make_game("lookout", n_agents=3)
    episodes = perfect(game)
    np.testing.assert_allclose(shapley_of(game, episodes), 1.0 / 3)
    for ep in episodes:
        np.testing.assert_allclose(loo_of(game, ep), 0.0)


def test_or_credits_only_those_who_found_it():
    game = make_game("lookout", n_agents=4)
    episodes = collect(game, ScriptedTeam([1.0, 0.0, 1.0, 0.0]), n_tasks=4, seed=2)
    np.testing.assert_allclose(shapley_of(game, episodes), [[0.5, 0, 0.5, 0]] * 4)


def test_additive_gives_each_agent_its_own_contribution():
    game = make_game("potluck", n_agents=4, difficulty=3)
    episodes = collect(game, ScriptedTeam([0.6, 0.5, 0.7, 0.4]), n_tasks=20, seed=0)
    phi = shapley_of(game, episodes)
    for b, ep in enumerate(episodes):
        own = np.array(ep.components["correct"]) / 4
        np.testing.assert_allclose(phi[b], own, atol=1e-12)
        np.testing.assert_allclose(loo_of(game, ep), own, atol=1e-12)  # all sound estimators agree


@pytest.mark.parametrize("name", list_games())
def test_lazy_agents_get_exactly_zero(name):
    n_agents = 4
    lazy = [2] if name != "orchestra_v0" else [3]
    game = make_game(name, n_agents=n_agents, difficulty=2, lazy_agents=lazy)
    episodes = collect(game, ScriptedTeam([0.9, 0.6, 0.9, 0.8], malformed_rate=0.1), n_tasks=20, group_size=2, seed=4)
    phi = shapley_of(game, episodes)
    assert np.all(phi[:, lazy] == 0.0)
    assert np.abs(phi).sum() > 0


def test_threshold_dummy_gets_zero_and_pivotal_agents_share():
    game = make_game("council", n_agents=4, weights=[2, 2, 2, 1])
    assert game.pivotal_agents() == [0, 1, 2]
    episodes = perfect(game)
    phi = shapley_of(game, episodes)
    np.testing.assert_allclose(phi, [[1 / 3, 1 / 3, 1 / 3, 0.0]] * len(episodes))


def test_threshold_veto_player():
    # weights [2, 1, 1]: quota > 2, so agent 0 is in every winning coalition (a veto player).
    game = make_game("council", n_agents=3, weights=[2, 1, 1])
    assert game.pivotal_agents() == [0, 1, 2]
    phi = shapley_of(game, perfect(game))
    np.testing.assert_allclose(phi, [[2 / 3, 1 / 6, 1 / 6]] * 5)


def test_chain_success_gives_equal_shares_and_early_changes_propagate():
    game = make_game("relay", n_agents=4, difficulty=3, lazy_agents=[1])
    episodes = perfect(game)
    np.testing.assert_allclose(shapley_of(game, episodes), [[1 / 3, 0.0, 1 / 3, 1 / 3]] * 5)
    # a wrong first step propagates: nobody downstream can fix it
    episodes = collect(game, ScriptedTeam([0.0, 1.0, 1.0, 1.0]), n_tasks=5, seed=0)
    assert all(ep.reward == 0.0 for ep in episodes)
    assert all(game.team_value(ep, 0b1110) == 0.0 for ep in episodes)


def test_chain_failure_lets_a_wrong_step_stand_in_for_an_absent_one():
    """In a failed chain episode a wrong operation can make up for an absent agent's: agent 0 adds
    a0 + a1 instead of a0, so the value overshoots by a1 and the team fails, but without agent 1
    the replay hits the target. Exact Shapley then pays the wrong agent 0 and charges the right
    agent 1 (their shares still sum to R - v(empty) = 0), and leave-one-out charges agent 1 too.
    Why Shapley credit learns slower than grpo on relay (README, learning studies; the next test)."""
    game = make_game("relay", n_agents=3, difficulty=1)  # difficulty 1: every operation is "add a"
    game.reset(seed=7)
    a = [k for _, k in game.task["ops"]]
    for text in (f"APPLY: +{a[0] + a[1]}", f"APPLY: +{a[1]}", f"APPLY: +{a[2]}"):
        game.step(text)
    episode = game.episode()
    assert episode.reward == 0.0 and episode.components["correct"] == [0.0, 1.0, 1.0]
    assert game.team_value(episode, 0b101) == 1.0  # agent 1 absent: agent 0's extra a1 stands in for it
    phi = shapley_of(game, [episode])[0]
    assert phi[0] > 0 > phi[1] and phi.sum() == pytest.approx(0.0)
    np.testing.assert_allclose(phi, [1 / 6, -1 / 3, 1 / 6])  # v = 1 only for {0, 2}: +-1/6 and -1/3
    np.testing.assert_allclose(loo_of(game, episode), [0.0, -1.0, 0.0])
    # with agent 0 right and agent 1 wrong, the coalition {0, 2} misses the target: nothing stands in
    right = collect(game, ScriptedTeam([1.0, 0.0, 1.0], seed=0), n_tasks=1, seed=0, task_seeds=[7])[0]
    assert right.reward == 0.0 and game.team_value(right, 0b101) == 0.0


def test_on_relay_shapley_and_sharp_advantages_differ_from_grpos_only_where_a_step_stands_in():
    """Relay's operations strictly increase the value, so a coalition short of the team hits the
    target only where wrong operations make up for absent ones (stand-ins). In a task group
    without any, exact Shapley gives every agent R/m, and its agent-wise normalised advantage is
    grpo's (up to eps); sharp's too (its format term is the same for every scripted answer). So the
    gap between their learning curves and grpo's on relay (README, learning studies) comes from
    the stand-in groups alone."""
    game = make_game("relay", n_agents=3, difficulty=1)
    episodes = collect(game, ScriptedTeam([0.5, 0.5, 0.8], seed=0), n_tasks=60, group_size=4, seed=0)
    fill_coalitions(game, episodes, "all")
    batch = CreditBatch.from_episodes(episodes, device="cpu")
    adv = {name: get_estimator(name)(batch, {"device": "cpu"}).advantage for name in ("grpo", "shapley", "sharp")}
    full = (1 << 3) - 1
    stand_in_groups = {ep.group for ep in episodes if any(ep.coalition_values[m] > 0 for m in range(full))}
    clean = torch.tensor([ep.group not in stand_in_groups for ep in episodes])  # [B]
    assert 0 < len(stand_in_groups) < len({ep.group for ep in episodes})
    for name in ("shapley", "sharp"):
        torch.testing.assert_close(adv[name][clean], adv["grpo"][clean], atol=1e-4, rtol=0)
        assert (adv[name][~clean] - adv["grpo"][~clean]).abs().max() > 0.1


def test_hierarchical_main_is_a_veto_player_and_copied_answers_follow_the_replay():
    game = make_game("orchestra", n_agents=3, difficulty=1)
    episodes = perfect(game, n_tasks=10)
    for ep in episodes:
        assert ep.reward == 1.0
        assert game.team_value(ep, 0b110) == 0.0  # no main agent, no answer
        owners = game.make_task(ep.task_seed)["owner"]
        for sub in (1, 2):
            parts = sum(o == sub for o in owners.values())
            # without this sub-agent its parts go unanswered (the main copied its answers)
            assert game.team_value(ep, 0b111 & ~(1 << sub)) == pytest.approx(1 - parts / 2)
    phi = shapley_of(game, episodes)
    assert np.all(phi[:, 0] >= phi[:, 1:].max(axis=1))


def test_debate_briefed_agent_is_a_veto_player_and_its_followers_an_or_pair():
    """Perfect play, agent 0 briefed: the others follow agent 0's message in round 2, so any
    coalition with agent 0 and one more wins. Only when both hunches happen to be right does
    the pair without agent 0 win too (a plain majority game: 1/3 each)."""
    game = make_game("debate", n_agents=3, difficulty=3)
    episodes = perfect(game, n_tasks=60)
    phi = shapley_of(game, episodes)
    lucky = 0
    for b, ep in enumerate(episodes):
        task = game.make_task(ep.task_seed)
        assert ep.reward == 1.0 and [t.info.get("followed") for t in ep.turns[3:]] == [None, True, True]
        both = task["hunch"][1] == task["hunch"][2] == task["answer"]
        lucky += both
        np.testing.assert_allclose(phi[b], [1 / 3] * 3 if both else [2 / 3, 1 / 6, 1 / 6], atol=1e-12)
        np.testing.assert_allclose(loo_of(game, ep), [0.0] * 3 if both else [1.0, 0.0, 0.0])
    assert 0 < lucky < len(episodes)  # both cases occur (chance 1/16 per task)


def test_debate_a_follower_answers_what_the_replayed_debate_implies():
    game = make_game("debate", n_agents=3, difficulty=3)
    game.reset(seed=4)
    task = game.task
    wrong = next(o for o in "ABCD" if o not in (task["answer"], task["hunch"][2]))
    # agent 0 misleads in round 1; agent 1 follows it in round 2, agent 2 answers on its own
    for text in (f"ANSWER: {wrong}", f"ANSWER: {task['hunch'][1]}", f"ANSWER: {task['hunch'][2]}"):
        game.step(text)
    assert game.implied(game.task, game.state, 1, 1) == wrong
    for text in (f"ANSWER: {task['answer']}", f"ANSWER: {wrong}", f"ANSWER: {task['answer']}"):
        game.step(text)
    episode = game.episode()
    assert episode.reward == 1.0 and [t.info.get("followed") for t in episode.turns[3:]] == [None, True, False]
    # without agent 0, agent 1 reads agent 2's hunch instead and answers that; agent 2 keeps its answer
    assert game.team_value(episode, 0b110) == float(task["hunch"][2] == task["answer"])
    assert game.team_value(episode, 0b101) == 1.0  # agents 0 and 2 answered right in round 2
    assert game.team_value(episode, 0b011) == 0.0  # agent 1 followed the wrong message


def test_debate_turn_order_is_the_rounds_graph_topological_order():
    game = make_game("debate", n_agents=4, rounds=3)
    assert game.turn_order == [(r, i) for r in range(3) for i in range(4)]
    assert sorted(game.topology.edges) == [(j, i) for j in range(4) for i in range(4) if i != j]
    episode = collect(game, ScriptedTeam([0.5] * 4), n_tasks=1, seed=0)[0]
    assert [(t.info["round"], t.agent) for t in episode.turns] == game.turn_order
    for t in episode.turns:  # each answer revises the agent's own answer of the round before
        assert t.parent is None if t.info["round"] == 0 else episode.turns[t.parent].agent == t.agent
    assert len(episode.messages) == 4 * 3 * 2  # every answer but the last round's goes to the 3 others
    # the tabular key at each turn: the briefing, then the hunch, then what the debate implies
    game.reset(seed=episode.task_seed)
    keys = []
    for turn in episode.turns:
        keys.append(game.observation_key(turn.agent))
        assert keys[-1] in game.key_universe()
        game.step(turn.text)
    assert [k[0] for k in keys] == ["briefing"] + ["hunch"] * 3 + (["briefing"] + ["heard"] * 3) * 2
    assert keys[5] == ("heard", game.implied(game.task, game.state, 1, 1))  # agent 1, round 2


def test_exact_shapley_refuses_missing_coalitions():
    values = torch.zeros(2, 8, dtype=torch.float64)
    values[1, 3] = float("nan")
    with pytest.raises(ValueError, match="fill_coalitions"):
        exact_shapley(values)
    with pytest.raises(ValueError, match=r"\[B, 2\*\*N\]"):
        exact_shapley(torch.zeros(2, 6))


@pytest.mark.parametrize("n_agents", [2, 4, 8])
def test_exact_shapley_on_random_tables(n_agents):
    rng = np.random.default_rng(n_agents)
    values = rng.normal(size=(3, 1 << n_agents))
    phi = exact_shapley(torch.tensor(values)).numpy()
    for b in range(3):
        if n_agents <= 4:
            np.testing.assert_allclose(phi[b], brute_force_shapley(lambda m: values[b, m], n_agents), atol=1e-10)
        assert phi[b].sum() == pytest.approx(values[b, -1] - values[b, 0])
    # the marginal-contribution contraction equals the V @ W matrix form
    np.testing.assert_allclose(phi, values @ shapley_weights(n_agents).numpy(), atol=1e-10)


@pytest.mark.parametrize("n_agents", [2, 4])
def test_min_gives_the_gain_over_the_base_in_equal_shares_and_a_wrong_brace_negative_credit(n_agents):
    """rampart: v(empty) = 0.4 (absent agents leave the base strength); when all brace right
    each non-lazy agent gets 0.6/m and the lazy one 0; w wrong braces get -0.2/w each."""
    lazy = [n_agents - 1] if n_agents > 2 else []
    game = make_game("rampart", n_agents=n_agents, lazy_agents=lazy)
    m = n_agents - len(lazy)
    episodes = perfect(game)
    assert all(ep.reward == 1.0 for ep in episodes)
    phi = shapley_of(game, episodes)
    assert all(ep.coalition_values[0] == pytest.approx(0.4) for ep in episodes)
    np.testing.assert_allclose(phi[:, :m], 0.6 / m)
    np.testing.assert_allclose(phi[:, m:], 0.0)
    wrong = collect(game, ScriptedTeam([0.0] + [1.0] * (n_agents - 1)), n_tasks=3, group_size=1, seed=2)
    assert all(ep.reward == pytest.approx(0.2) for ep in wrong)
    np.testing.assert_allclose(shapley_of(game, wrong), [[-0.2] + [0.0] * (n_agents - 1)] * 3, atol=1e-12)
