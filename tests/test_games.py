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
from mas_credit.games.base import Reading, play_texts, strip_echo
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
    """read(render(a)) == (a, in the asked form) for the expert and the wrong action at
    every turn, with and without the prompt the agent saw."""
    game = make_game(game_name, n_agents=4, difficulty=3)
    rng = np.random.default_rng(0)

    def expert_checking(i, k):
        for action in (game.expert_action(i), game.wrong_action(i, rng)):
            assert game.parse(i, game.render_action(i, action)) == action
            assert game.read(i, game.render_action(i, action), game.observe(i)["text"]) == Reading(action, True)
        assert game.wrong_action(i, rng) != game.expert_action(i)
        return game.render_action(i, game.expert_action(i))

    for seed in range(20):
        assert play_texts(game, seed, expert_checking).episode().reward == game.max_reward  # the expert team's reward


@pytest.mark.reliability(
    "an agent copies its prompt back, or names an agent (`agent_0`)",
    "no answer is read from the copy: the turn is invalid (null action), counted in `parsed`; `format` counts only "
    "answers in the asked form",
)
def test_an_echo_of_the_prompt_is_no_answer(game_name):
    """The prompt copied back (whole, or its first sentence, or with agent names) is read as
    no answer; an asked-form answer after the echo is still read, in the asked form."""
    game = make_game(game_name, n_agents=4, difficulty=2)

    def echoing(i, k):
        prompt = game.observe(i)["text"]
        for text in (
            prompt,
            prompt.split(". ")[0],
            f"{game.possible_agents[i]} says: '{prompt}'",
            " ".join(game.possible_agents),
            f"I am {game.possible_agents[(i + 1) % 4]}.",
        ):
            assert game.read(i, text, prompt) == Reading(None, False), text
        answer = game.render_action(i, game.expert_action(i))
        assert game.read(i, f"{prompt}\n{answer}", prompt) == Reading(game.expert_action(i), True)
        return answer

    for seed in range(5):
        play_texts(game, seed, echoing)


def test_the_issue_echo_reads_no_digit():
    """vault used to read the 0 of `agent_0` as the digit 0, in the asked format."""
    game = make_game("vault", n_agents=3, difficulty=1)
    game.reset(seed=0)
    prompt = game.observe(0)["text"]
    assert game.read(0, f"agent_0 says: '{prompt[:40]}...'", prompt) == Reading(None, False)
    assert game.read(0, "agent_0", "") == Reading(None, False)
    assert game.read(0, "I am agent_0; my digit is 4", "") == Reading(4, False)


@pytest.mark.parametrize(
    "game_name,texts,action,formatted",
    [
        ("vault", ["DIGIT: 7", "digit:7", "Digit : 7."], 7, True),
        ("vault", ["the digit is 7", "7", "it is seven"], 7, False),
        ("council", ["VOTE: B", "vote:b"], "B", True),
        ("council", ["I vote for B", "B", "(B)"], "B", False),
        ("council", ["A weighted majority is needed", "A good question"], None, False),
        ("potluck", ["BRING: bread", "bring:Bread"], "bread", True),
        ("potluck", ["I will bring the bread", "bread"], "bread", False),
        ("relay", ["APPLY: +3", "apply:*3"], None, True),
        ("relay", ["add 3", "+3", "times 3"], None, False),
    ],
)
def test_format_is_the_asked_form_and_parsed_the_lenient_reading(game_name, texts, action, formatted):
    game = make_game(game_name, n_agents=3, difficulty=1)
    for text in texts:
        reading = game.read(0, text, "")
        assert reading.formatted == formatted, text
        if action is not None or game_name != "relay":
            assert reading.action == action, text
        else:
            assert reading.action is not None and reading.action[1] == 3, text


def test_format_and_parsed_components_count_turns(game_name):
    """`format` = share of an agent's turns in the asked form, `parsed` = share read at all."""
    game = make_game(game_name, n_agents=3, difficulty=1)
    lenient = {
        "vault_v0": "the digit is 1",
        "council_v0": "I vote for B",
        "potluck_v0": "the bread",
        "relay_v0": "add 2",
        "lookout_v0": "the flag is at B2",
        "rampart_v0": "5 planks",
    }.get(game.name)

    def texts(i, k):
        if i == 0 or lenient is None:
            return game.render_action(i, game.expert_action(i))
        return lenient if i == 1 else "no idea"

    episode = play_texts(game, 0, texts).episode()
    per_turn = {}
    for turn in episode.turns:
        per_turn.setdefault(turn.agent, []).append((turn.format, turn.valid))
    for i in range(3):
        marks = per_turn.get(i, [])
        assert episode.components["format"][i] == (np.mean([f for f, _ in marks]) if marks else 0.0)
        assert episode.components["parsed"][i] == (np.mean([v for _, v in marks]) if marks else 0.0)
    assert episode.components["format"][0] == 1.0
    if lenient is not None:
        assert episode.components["format"][1:] == [0.0, 0.0] and episode.components["parsed"][1:] == [1.0, 0.0]


def test_strip_echo_by_hand():
    prompt = "You are agent_0. Your digit is seven (write it as a number)."
    assert strip_echo("your digit is seven, so DIGIT: 7", prompt).split() == [",", "so", "DIGIT:", "7"]
    assert strip_echo("my digit is seven", prompt) == "my digit is seven"  # 3 copied words: kept
    assert strip_echo("anything", "") == "anything"


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
    recorded texts of agents in the mask and empty text (null action) for the others; a
    reader (a turn that records `followed`: briefing's decider or a debater that answered what
    its messages imply) answers what the re-run's messages imply. (orchestra's copy-aware replay is
    checked by hand in test_credit_structure.)"""
    n_agents = 4
    game = make_game(name, n_agents=n_agents, difficulty=2, lazy_agents=[1])
    team = ScriptedTeam([0.8, 0.7, 0.9, 0.6], malformed_rate=0.1)
    for episode in collect(game, team, n_tasks=6, group_size=2, seed=0):
        texts, reads = {}, {}
        for turn in episode.turns:
            texts.setdefault(turn.agent, []).append(turn.text)
            reads.setdefault(turn.agent, []).append(bool(turn.info.get("followed")))
        fast = game.team_values(episode, np.arange(1 << n_agents))
        for mask in range(1 << n_agents):
            env = make_game(name, n_agents=n_agents, difficulty=2, lazy_agents=[1])

            def text_for(i, k):
                if not (mask >> i) & 1:
                    return ""
                return env.render_action(i, env.expert_action(i)) if reads[i][k] else texts[i][k]

            assert fast[mask] == play_texts(env, episode.task_seed, text_for).episode().reward, (name, mask)
            assert game.team_value(episode, mask) == fast[mask]


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_agents=1),
        dict(n_agents="max_agents + 1"),
        dict(difficulty=0),
        dict(lazy_agents=[5]),
        dict(lazy_agents=[0, 1, 2]),
        dict(colour="red"),
    ],
)
def test_bad_parameters_name_the_field(game_name, bad):
    if bad.get("n_agents") == "max_agents + 1":
        bad = dict(n_agents=make_game(game_name).max_agents + 1)  # 9 for the small games, 257 for the crew games
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
    for bad, match in [
        (dict(rounds=1), "rounds"),
        (dict(rounds=5), "rounds"),
        (dict(informed=[3]), "informed"),
        (dict(informed=[0, 0]), "informed"),
        (dict(informed=1), "informed"),
    ]:
        with pytest.raises(GameParamError, match=match):
            make_game("debate", n_agents=3, **bad)
    with pytest.raises(GameParamError, match="valid games"):
        make_game("chess")


def test_register_game_takes_the_same_class_again_and_refuses_another_under_its_name(monkeypatch):
    import mas_credit.games as games

    monkeypatch.setattr(games, "_REGISTRY", dict(games._REGISTRY))

    class WeakestLink(games.VaultEnv):
        name, credit_structure = "weakest_link_v0", "min"

    assert games.register_game(WeakestLink) is WeakestLink
    assert games.register_game(WeakestLink) is WeakestLink  # a module imported twice
    assert games.make_game("weakest_link").name == "weakest_link_v0"

    class Other(games.VaultEnv):
        name = "weakest_link_v0"

    with pytest.raises(
        ValueError,
        match=r"game 'weakest_link_v0' is already registered by .*WeakestLink; give "
        r".*Other a new version \(e.g. weakest_link_v1\) or another name",
    ):
        games.register_game(Other)
