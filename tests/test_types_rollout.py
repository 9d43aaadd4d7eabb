import json
import re

import numpy as np
import pytest
import torch

from mas_credit.agents import ScriptedTeam
from mas_credit.counterfactual import coalition_masks, fill_coalitions
from mas_credit.games import make_game
from mas_credit.rollout import collect
from mas_credit.types import CreditBatch, Episode


def test_collect_groups_share_a_task():
    game = make_game("potluck", n_agents=3)
    episodes = collect(game, ScriptedTeam([0.5, 0.5, 0.5]), n_tasks=4, group_size=3, seed=0)
    assert len(episodes) == 12
    for t in range(4):
        group = episodes[3 * t : 3 * t + 3]
        assert {ep.group for ep in group} == {t} and len({ep.task_seed for ep in group}) == 1
    assert len({ep.task_seed for ep in episodes}) == 4


def test_scripted_skills_lazy_and_malformed():
    game = make_game("vault", n_agents=3)
    episodes = collect(game, ScriptedTeam([1.0, 0.0, 1.0], lazy=[2]), n_tasks=50, seed=0)
    correct = np.array([ep.components["correct"] for ep in episodes])
    assert correct[:, 0].all() and not correct[:, 1].any()
    assert not any(ep.turns[2].valid for ep in episodes) and all(ep.turns[2].text == "" for ep in episodes)
    episodes = collect(game, ScriptedTeam([1.0] * 3, malformed_rate=0.5), n_tasks=400, seed=0)
    invalid = np.mean([not t.valid for ep in episodes for t in ep.turns])
    assert 0.4 < invalid < 0.6


def test_team_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="team has 2 agents but vault_v0 was made for 3"):
        collect(make_game("vault", n_agents=3), ScriptedTeam([1, 1]), n_tasks=1)


def test_credit_batch_shapes_padding_and_groups():
    game = make_game("orchestra", n_agents=3, difficulty=2)
    episodes = collect(game, ScriptedTeam([0.8, 0.5, 0.9], malformed_rate=0.2), n_tasks=3, group_size=2, seed=5)
    for ep in episodes:
        ep.group += 100  # any ids are renumbered 0..G-1
    fill_coalitions(game, episodes, "loo")
    batch = CreditBatch.from_episodes(episodes)
    n_turns = max(len(ep.turns) for ep in episodes)
    assert batch.reward.shape == (6,) and batch.acted.shape == (6, 3) and batch.turn_agent.shape == (6, n_turns)
    assert batch.coalition_values.shape == (6, 8) and batch.group.tolist() == [0, 0, 1, 1, 2, 2]
    for b, ep in enumerate(episodes):
        assert batch.turn_agent[b, len(ep.turns) :].eq(-1).all()
        assert batch.turn_valid[b].tolist() == [t.valid for t in ep.turns] + [False] * (n_turns - len(ep.turns))
        evaluated = (~torch.isnan(batch.coalition_values[b])).nonzero().flatten().tolist()
        assert sorted(evaluated) == sorted(coalition_masks(3, "loo"))
    assert set(batch.components) == {"format", "parsed", "correct"} and batch.components["format"].shape == (6, 3)
    for b, ep in enumerate(episodes):
        assert batch.turn_format[b].tolist() == [t.format for t in ep.turns] + [False] * (n_turns - len(ep.turns))
    assert torch.isnan(batch.critic_share).all()
    moved = batch.to("cpu")
    assert moved.reward.device.type == "cpu" and torch.equal(moved.reward, batch.reward)


def test_credit_batch_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one episode"):
        CreditBatch.from_episodes([])
    ep = Episode(game="vault_v0", task_seed=0, group=0, agents=["a", "b"], turns=[], reward=float("nan"))
    with pytest.raises(ValueError, match="reward must be finite"):
        CreditBatch.from_episodes([ep])


def direct_batch(b=2, n=2, **changes):
    fields = dict(
        reward=torch.ones(b, dtype=torch.float64),
        group=torch.zeros(b, dtype=torch.long),
        acted=torch.ones(b, n, dtype=torch.bool),
        turn_agent=torch.arange(n).repeat(b, 1),
        turn_valid=torch.ones(b, n, dtype=torch.bool),
        coalition_values=torch.zeros(b, 1 << n, dtype=torch.float64),
        components={"correct": torch.ones(b, n, dtype=torch.float64)},
        critic_share=torch.full((b, n), float("nan"), dtype=torch.float64),
    )
    fields.update(changes)
    return CreditBatch(**fields)


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(b=0), "CreditBatch: reward must be [B] with B >= 1 episodes, got shape [0]"),
        (
            dict(reward=torch.tensor([1.0, float("nan")], dtype=torch.float64)),
            "CreditBatch: reward must be finite; episodes [1] have nan",
        ),
        (
            dict(components={"format": torch.tensor([[1.0, float("inf")], [1, 1]], dtype=torch.float64)}),
            "CreditBatch: components['format'] must be finite; episode 0 is not",
        ),
        (
            dict(coalition_values=torch.zeros(2, 3, dtype=torch.float64)),
            "CreditBatch: coalition_values must be [B=2, 2**N=4], got shape [2, 3]",
        ),
        (dict(group=torch.zeros(3, dtype=torch.long)), "CreditBatch: group must be [B=2], got shape [3]"),
        (
            dict(turn_valid=torch.ones(2, 5, dtype=torch.bool)),
            "CreditBatch: turn_agent and turn_valid must both be [B=2, T]",
        ),
        (dict(critic_share=torch.zeros(2, 3)), "CreditBatch: critic_share must be [B=2, N=2], got shape [2, 3]"),
    ],
)
@pytest.mark.reliability(
    "a `CreditBatch` built by hand with B = 0, NaN rewards or wrong shapes",
    "`CreditBatch: <field> must be ...` before any estimator runs",
)
def test_a_credit_batch_built_directly_gets_the_same_checks(changes, message):
    """Every constructor (from_episodes, to, or CreditBatch(...) by hand) goes through one
    check, so no estimator sees B = 0 or a NaN reward."""
    with pytest.raises(ValueError, match=re.escape(message)):
        direct_batch(**changes)
    assert direct_batch().batch_size == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_credit_batch_to_cuda():
    game = make_game("vault", n_agents=3)
    episodes = collect(game, ScriptedTeam([0.5] * 3), n_tasks=2, seed=0)
    batch = CreditBatch.from_episodes(episodes, device="cuda")
    assert batch.reward.is_cuda and batch.coalition_values.is_cuda


def test_episode_json_round_trip_keeps_team_values():
    for name in ("relay", "orchestra", "council"):
        game = make_game(name, n_agents=4, difficulty=2)
        episodes = collect(game, ScriptedTeam([0.7] * 4, malformed_rate=0.1), n_tasks=5, seed=1)
        fill_coalitions(game, episodes, "all")
        for ep in episodes:
            back = Episode.from_dict(json.loads(json.dumps(ep.to_dict())))
            assert back.coalition_values == ep.coalition_values
            np.testing.assert_array_equal(game.team_values(back, np.arange(16)), game.team_values(ep, np.arange(16)))


def test_fill_coalitions_caches_and_counts():
    game = make_game("vault", n_agents=3)
    episodes = collect(game, ScriptedTeam([0.5] * 3), n_tasks=4, seed=0)
    assert fill_coalitions(game, episodes, "loo")["cf/evals"] == 4 * 4
    assert fill_coalitions(game, episodes, "all")["cf/evals"] == 4 * 4  # only the 4 missing masks each
    assert fill_coalitions(game, episodes, "all")["cf/evals"] == 0
    with pytest.raises(ValueError, match="outside 0..7"):
        fill_coalitions(game, episodes, [9])


def test_turn_parents_follow_the_game_structure():
    relay = collect(make_game("relay", n_agents=4, order=[2, 0, 3, 1]), ScriptedTeam([1.0] * 4), n_tasks=1)[0]
    assert [t.agent for t in relay.turns] == [2, 0, 3, 1] and [t.parent for t in relay.turns] == [None, 0, 1, 2]
    orchestra = collect(make_game("orchestra", n_agents=3, difficulty=2), ScriptedTeam([1.0] * 3), n_tasks=2)
    for ep in orchestra:
        assert all(t.parent == 0 for t in ep.turns if t.agent != 0)
