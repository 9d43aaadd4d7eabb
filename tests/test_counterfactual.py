"""Counterfactual values (replay, resample, COMA re-draws) and tree fan-out rollouts."""

import math

import numpy as np
import pytest

from mas_credit.agents import ActResult, ScriptedTeam
from mas_credit.counterfactual import fill_alternatives, fill_coalitions
from mas_credit.games import make_game
from mas_credit.rollout import collect, collect_tree
from mas_credit.types import Episode


class CountingTeam:
    """A scripted team that pretends to be an LLM: it counts its requests and reports one
    response token per word, so the cf/llm_calls and cf/tokens counters can be checked."""

    kind = "fake_llm"

    def __init__(self, skills, seed=0):
        self.inner = ScriptedTeam(skills, seed=seed)
        self.seed = seed
        self.requests = []

    @property
    def n_agents(self):
        return self.inner.n_agents

    def act(self, requests):
        self.requests.extend((r.agent, r.prompt) for r in requests)
        return [ActResult(text=r.text, response_ids=[0] * len(r.text.split())) for r in self.inner.act(requests)]


def copies(episodes):
    return [Episode.from_dict(ep.to_dict()) for ep in episodes]


@pytest.mark.parametrize("name", ["vault", "potluck", "council"])
def test_resample_equals_replay_in_one_shot_games(name):
    game = make_game(name, n_agents=4)
    team = ScriptedTeam([0.6] * 4, seed=1)
    episodes = collect(game, team, n_tasks=3, group_size=2, seed=0)
    a, b = copies(episodes), copies(episodes)
    fill_coalitions(game, a, "all")
    counts = fill_coalitions(game, b, "all", mode="resample", team=team, k=3)
    assert [ep.coalition_values for ep in a] == [ep.coalition_values for ep in b]
    assert counts["cf/llm_calls"] == 0


def test_resample_with_a_deterministic_team_equals_replay_on_relay():
    game = make_game("relay", n_agents=4)
    team = ScriptedTeam([1.0, 0.0, 1.0, 1.0], seed=0)
    episodes = collect(game, team, n_tasks=3, seed=0)
    a, b = copies(episodes), copies(episodes)
    fill_coalitions(game, a, "all")
    fill_coalitions(game, b, "all", mode="resample", team=team, k=2)
    for x, y in zip(a, b):
        assert x.coalition_values == pytest.approx(y.coalition_values)


def test_resample_reruns_from_the_first_substituted_turn_and_counts_calls():
    game = make_game("relay", n_agents=3)
    team = CountingTeam([0.7, 0.7, 0.7])
    episode = collect(game, team, n_tasks=1, seed=0)[0]
    team.requests.clear()
    # leaving out the last agent: the prefix is replayed and nobody is asked
    counts = fill_coalitions(game, [episode], [0b011], mode="resample", team=team, k=4)
    assert counts == {"cf/evals": 1.0, "cf/llm_calls": 0.0, "cf/tokens": 0.0}
    # leaving out agent 0: agents 1 and 2 are drawn afresh in each of the k re-runs
    counts = fill_coalitions(game, [episode], [0b110], mode="resample", team=team, k=4)
    assert (
        counts["cf/llm_calls"] == 8 and [a for a, _ in team.requests] == [1] * 4 + [2] * 4
    )  # lock-step: one act() per turn
    assert counts["cf/tokens"] > 0
    # the grand coalition is the recorded episode itself
    fill_coalitions(game, [episode], [0b111], mode="resample", team=team, k=4)
    assert episode.coalition_values[0b111] == episode.reward
    # cached: asking again evaluates nothing
    assert fill_coalitions(game, [episode], [0b110, 0b011], mode="resample", team=team)["cf/evals"] == 0


def test_resampled_values_are_means_over_k_reruns():
    game = make_game("relay", n_agents=3)
    team = ScriptedTeam([0.5, 0.5, 0.5], seed=4)
    episodes = collect(game, team, n_tasks=6, seed=0)
    fill_coalitions(game, episodes, "all", mode="resample", team=team, k=5)
    for ep in episodes:
        for value in ep.coalition_values.values():
            assert 0 <= value <= 1 and math.isclose(value * 5, round(value * 5))


def test_mode_errors_are_clear():
    game = make_game("relay", n_agents=3)
    episodes = collect(game, ScriptedTeam([1, 1, 1]), n_tasks=1)
    with pytest.raises(ValueError, match="valid modes: replay, resample"):
        fill_coalitions(game, episodes, "all", mode="rerun")
    with pytest.raises(ValueError, match="pass team="):
        fill_coalitions(game, episodes, "all", mode="resample")


def test_alternatives_replay_redraws_only_the_agent():
    game = make_game("potluck", n_agents=3)
    team = CountingTeam([1.0, 0.0, 1.0])
    episodes = collect(game, team, n_tasks=2, seed=0)
    team.requests.clear()
    counts = fill_alternatives(game, team, episodes, k=3)
    assert counts["cf/evals"] == 6 and counts["cf/llm_calls"] == 6 * 3
    assert sorted(a for a, _ in team.requests) == [0] * 6 + [1] * 6 + [2] * 6
    for ep in episodes:  # deterministic agents: re-drawing changes nothing
        assert ep.alternative_values == {0: ep.reward, 1: ep.reward, 2: ep.reward}


def test_alternatives_measure_what_a_random_agent_costs():
    game = make_game("vault", n_agents=3)
    team = ScriptedTeam([1.0, 1.0, 0.5], seed=2)
    episodes = [ep for ep in collect(game, team, n_tasks=20, seed=0) if ep.reward == 1.0]
    fill_alternatives(game, team, episodes, k=8)
    for ep in episodes:
        assert ep.alternative_values[0] == 1.0 and ep.alternative_values[1] == 1.0
    assert np.mean([ep.alternative_values[2] for ep in episodes]) < 0.8


@pytest.mark.parametrize("name", ["relay", "orchestra", "vault", "lookout"])
@pytest.mark.parametrize("fanout", [[2, 4], [3], [2, 2, 2]])
def test_tree_rollouts_share_prefixes(name, fanout):
    game = make_game(name, n_agents=3)
    team = ScriptedTeam([0.6, 0.6, 0.6], malformed_rate=0.1, seed=2)
    episodes = collect_tree(game, team, n_tasks=2, fanout=fanout, seed=3)
    leaves = math.prod(fanout)
    assert len(episodes) == 2 * leaves
    assert [ep.group for ep in episodes] == [t for t in range(2) for _ in range(leaves)]
    for a in episodes:
        for b in episodes:
            if a.group != b.group:
                continue
            common = 0
            while common < len(fanout) and a.info["tree_path"][common] == b.info["tree_path"][common]:
                common += 1
            # paths equal on levels 0..common-1 -> the same texts on turns 0..common-1
            shared = None if common == len(fanout) else common
            assert [t.text for t in a.turns[:shared]] == [t.text for t in b.turns[:shared]]
    # the children of a node draw different texts somewhere (the tree actually branches)
    first_turns = {ep.turns[0].text for ep in episodes if ep.group == 0}
    assert len(first_turns) > 1 or fanout[0] == 1 or name == "orchestra"


def test_tree_rollouts_are_deterministic_and_pass_through_token_ids():
    game = make_game("relay", n_agents=3)
    team = CountingTeam([0.6, 0.6, 0.6])
    a = collect_tree(game, team, n_tasks=2, fanout=[2, 2], seed=1)
    b = collect_tree(game, team, n_tasks=2, fanout=[2, 2], seed=1)
    assert [ep.to_dict() for ep in a] == [ep.to_dict() for ep in b]
    assert all(t.response_ids is not None for ep in a for t in ep.turns)


def test_collect_tree_rejects_a_bad_fanout():
    with pytest.raises(ValueError, match="fanout must be a non-empty list of integers >= 1"):
        collect_tree(make_game("relay"), ScriptedTeam([1, 1, 1]), n_tasks=1, fanout=[2, 0])


def test_fill_needs_checks_tree_rollouts():
    from mas_credit.counterfactual import fill_needs
    from mas_credit.estimators import get_estimator

    game, team = make_game("relay", n_agents=3), ScriptedTeam([0.5] * 3)
    needs = get_estimator("c3").needs({"mode": "tree", "fanout": [2, 2]}, 3)
    with pytest.raises(ValueError, match=r"collect_tree\(game, team, n_tasks, fanout=\[2, 2\]\)"):
        fill_needs(game, collect(game, team, n_tasks=2, group_size=4), needs)
    with pytest.raises(ValueError, match="with fanout \\[2, 2\\]"):
        fill_needs(game, collect_tree(game, team, n_tasks=2, fanout=[4]), needs)
    assert fill_needs(game, collect_tree(game, team, n_tasks=2, fanout=[2, 2]), needs) == {}
