"""Every game: PettingZoo conformance, seeding, robustness to any text, and the
batched team value against re-running the env through the PettingZoo API."""
import string
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

from mas_credit.agents import ScriptedTeam
from mas_credit.games import GameParamError, list_games, make_game
from mas_credit.games.base import play_texts
from mas_credit.rollout import collect

from .conftest import sizes_for

CASES = [(name, n, d) for name in list_games() for n in sizes_for(name) for d in (1, 3)]


@pytest.mark.parametrize("name,n_agents,difficulty", CASES)
def test_pettingzoo_api_and_seed(name, n_agents, difficulty):
    lazy = [n_agents - 1] if n_agents > 2 else []
    game = make_game(name, n_agents=n_agents, difficulty=difficulty, lazy_agents=lazy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # api_test warns that text observations are not numpy arrays
        if game.sequential:
            api_test(game, num_cycles=30)
            seed_test(lambda: make_game(name, n_agents=n_agents, difficulty=difficulty), num_cycles=20)
        else:
            parallel_api_test(game, num_cycles=30)
            parallel_seed_test(lambda: make_game(name, n_agents=n_agents, difficulty=difficulty), num_cycles=20)


printable = st.text(alphabet=string.printable, max_size=80)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(printable, min_size=40, max_size=40), seed=st.integers(0, 2**31))
def test_random_printable_actions_are_survived(game_name, texts, seed):
    game = make_game(game_name, n_agents=4, difficulty=2)
    env = play_texts(game, seed, lambda i, k: texts[(7 * i + k) % len(texts)])
    episode = env.episode()
    assert 0.0 <= episode.reward <= 1.0
    values = game.team_values(episode, np.arange(16))
    assert values.shape == (16,) and np.all((values >= 0) & (values <= 1))
    assert values[15] == pytest.approx(episode.reward)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_parse_never_raises(game_name, text):
    game = make_game(game_name, n_agents=3)
    for agent in range(3):
        game.parse(agent, text)
        game.parse(game.possible_agents[agent], text)
    game.parse(0, None)
    game.parse(0, 12345)


def test_rendered_actions_parse_back(game_name):
    """parse(render(a)) == a for the expert and the wrong action at every turn."""
    game = make_game(game_name, n_agents=4, difficulty=3)
    rng = np.random.default_rng(0)

    def expert_checking(i, k):
        for action in (game.expert_action(i), game.wrong_action(i, rng)):
            assert game.parse(i, game.render_action(i, action)) == action
        assert game.wrong_action(i, rng) != game.expert_action(i)
        return game.render_action(i, game.expert_action(i))

    for seed in range(20):
        assert play_texts(game, seed, expert_checking).episode().reward == game.max_reward   # the expert team's reward


def test_same_seed_same_episodes(game_name):
    game = make_game(game_name, n_agents=3, difficulty=2)
    team = ScriptedTeam([0.7, 0.6, 0.5], malformed_rate=0.1, seed=3)
    first = [ep.to_dict() for ep in collect(game, team, n_tasks=5, group_size=3, seed=11)]
    second = [ep.to_dict() for ep in collect(game, team, n_tasks=5, group_size=3, seed=11)]
    other = [ep.to_dict() for ep in collect(game, team, n_tasks=5, group_size=3, seed=12)]
    assert first == second
    assert first != other


def test_task_is_a_function_of_the_seed(game_name):
    game = make_game(game_name, n_agents=3)
    assert game.make_task(5) == make_game(game_name, n_agents=3).make_task(5)
    assert len({repr(game.make_task(s)) for s in range(20)}) > 1


@pytest.mark.parametrize("name", [n for n in list_games() if n != "orchestra_v0"])
def test_batched_team_values_equal_rerunning_the_env(name):
    """Slow reference: for each mask, re-run the env through the PettingZoo API with the
    recorded texts of agents in the mask and empty text (null action) for the others.
    (orchestra's copy-aware replay is checked by hand in test_credit_structure.)"""
    n_agents = 4
    game = make_game(name, n_agents=n_agents, difficulty=2, lazy_agents=[1])
    team = ScriptedTeam([0.8, 0.7, 0.9, 0.6], malformed_rate=0.1)
    for episode in collect(game, team, n_tasks=6, group_size=2, seed=0):
        texts = {}
        for turn in episode.turns:
            texts.setdefault(turn.agent, []).append(turn.text)
        fast = game.team_values(episode, np.arange(1 << n_agents))
        for mask in range(1 << n_agents):
            env = play_texts(make_game(name, n_agents=n_agents, difficulty=2, lazy_agents=[1]), episode.task_seed,
                             lambda i, k: texts[i][k] if (mask >> i) & 1 else "")
            assert fast[mask] == env.episode().reward, (name, mask)
            assert game.team_value(episode, mask) == fast[mask]


@pytest.mark.parametrize("bad", [dict(n_agents=1), dict(n_agents=9), dict(difficulty=0), dict(lazy_agents=[5]),
                                 dict(lazy_agents=[0, 1, 2]), dict(colour="red")])
def test_bad_parameters_name_the_field(game_name, bad):
    with pytest.raises(GameParamError, match="|".join(bad)):
        make_game(game_name, **{"n_agents": 3, **bad})


def test_game_specific_parameter_errors():
    with pytest.raises(GameParamError, match="weights"):
        make_game("council", n_agents=3, weights=[1, 2])
    with pytest.raises(GameParamError, match="quota"):
        make_game("council", n_agents=3, quota=100)
    with pytest.raises(GameParamError, match="order"):
        make_game("relay", n_agents=3, order=[0, 0, 1])
    with pytest.raises(GameParamError, match="main agent"):
        make_game("orchestra", n_agents=3, lazy_agents=[0])
    with pytest.raises(GameParamError, match="valid games"):
        make_game("chess")


def test_register_game_takes_the_same_class_again_and_refuses_another_under_its_name(monkeypatch):
    import mas_credit.games as games

    monkeypatch.setattr(games, "_REGISTRY", dict(games._REGISTRY))

    class WeakestLink(games.VaultEnv):
        name, credit_structure = "weakest_link_v0", "min"

    assert games.register_game(WeakestLink) is WeakestLink
    assert games.register_game(WeakestLink) is WeakestLink             # a module imported twice
    assert games.make_game("weakest_link").name == "weakest_link_v0"

    class Other(games.VaultEnv):
        name = "weakest_link_v0"

    with pytest.raises(ValueError, match=r"game 'weakest_link_v0' is already registered by .*WeakestLink; give "
                                         r".*Other a new version \(e.g. weakest_link_v1\) or another name"):
        games.register_game(Other)
