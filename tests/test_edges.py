"""Communication credit: messages as edges, exact ground truth per edge, edge estimators,
informing credit, the replay and resample modes."""

import itertools
import json
import math
import sys

import numpy as np
import pytest
import torch

from mas_credit.agents import ScriptedTeam
from mas_credit.agents.critic import ScriptedCritic
from mas_credit.edges import fill_edge_needs, fill_edge_values
from mas_credit.estimators.edges import get_edge_estimator, list_edge_estimators
from mas_credit.games import GameParamError, make_game
from mas_credit.games.briefing import ROOM, clue_roles
from mas_credit.rollout import collect
from mas_credit.types import EdgeBatch, Episode, informing_credit

from .devices import DEVICES


def brute_force_edge_shapley(game, episode):
    """Shapley over the messages by enumerating every ordering of them: the slow, obvious definition,
    each value replayed on its own (`team_value`-style, one edge set at a time)."""
    n_edges = len(episode.messages)
    value = {mask: game.edge_values(episode, [mask])[0] for mask in range(1 << n_edges)}
    phi = np.zeros(n_edges)
    for order in itertools.permutations(range(n_edges)):
        mask = 0
        for m in order:
            phi[m] += value[mask | (1 << m)] - value[mask]
            mask |= 1 << m
    return phi / math.factorial(n_edges)


def edge_credit(game, episodes, name="edge_shapley", cfg=None, team=None, critic=None, device="cpu"):
    est = get_edge_estimator(name)
    cfg = {"device": device, **(cfg or {})}
    fill_edge_needs(game, episodes, est.needs(cfg, len(episodes[0].messages)), team=team, critic=critic)
    return est(EdgeBatch.from_episodes(episodes), cfg).cpu().credit.numpy()


@pytest.mark.parametrize(
    "name,n_agents",
    [(name, n) for name in ("briefing", "telephone") for n in (2, 3, 4, 5, 6, 7)]  # 1 to 6 edges
    + [("debate", 2), ("debate", 3)],  # 2 and 6 edges
)
def test_edge_shapley_equals_brute_force_permutations(name, n_agents):
    game = make_game(name, n_agents=n_agents, difficulty=2)
    team = ScriptedTeam([0.7] * n_agents, malformed_rate=0.1, seed=n_agents)
    episodes = collect(game, team, n_tasks=3 if n_agents < 7 else 2, group_size=2, seed=5)
    n_edges = n_agents * (n_agents - 1) if name == "debate" else n_agents - 1
    assert all(len(ep.messages) == n_edges for ep in episodes)
    phi = edge_credit(game, episodes)
    for b, ep in enumerate(episodes):
        np.testing.assert_allclose(phi[b], brute_force_edge_shapley(game, ep), atol=1e-12)


@pytest.mark.parametrize("method", ["exact", "sampled"])
@pytest.mark.parametrize("name", ["briefing", "telephone"])
def test_edge_credit_sums_to_all_messages_minus_none(name, method):
    game = make_game(name, n_agents=7)
    episodes = collect(game, ScriptedTeam([0.8] * 7, malformed_rate=0.1), n_tasks=6, group_size=2, seed=3)
    phi = edge_credit(game, episodes, cfg={"method": method, "budget": 24})
    for b, ep in enumerate(episodes):
        v_all, v_none = game.edge_values(ep, [(1 << 6) - 1, 0])
        assert v_all == ep.reward
        assert phi[b].sum() == pytest.approx(v_all - v_none, abs=1e-12)
    assert np.abs(phi).sum() > 0


def test_the_distractor_gets_exactly_zero_and_redundant_informants_split_equally():
    game = make_game("briefing", n_agents=5)  # informants: digit 1, digit 1, digit 2, room
    assert game.roles == [0, 0, 1, ROOM] and game.distractors == [3]
    episodes = collect(game, ScriptedTeam([1.0] * 5), n_tasks=6, group_size=1, seed=0)
    phi = edge_credit(game, episodes)
    assert np.all(phi[:, 3] == 0.0)  # exactly, not up to rounding
    np.testing.assert_array_equal(phi[:, 0], phi[:, 1])
    np.testing.assert_allclose(phi, [[0.25, 0.25, 0.5, 0.0]] * 6)
    # leave-one-edge-out misses both redundant messages (dropping either alone changes nothing)
    np.testing.assert_allclose(edge_credit(game, episodes, "edge_loo"), [[0.0, 0.0, 0.5, 0.0]] * 6)
    # with noisy informants the distractor's message is still a null player, episode by episode
    noisy = collect(game, ScriptedTeam([0.6] * 5, malformed_rate=0.2, seed=1), n_tasks=20, seed=1)
    assert np.all(edge_credit(game, noisy)[:, 3] == 0.0)


def test_a_chain_of_messages_splits_success_equally():
    game = make_game("telephone", n_agents=5, difficulty=3)
    episodes = collect(game, ScriptedTeam([1.0] * 5), n_tasks=5, seed=2)
    assert all(ep.reward == 1.0 for ep in episodes)
    np.testing.assert_allclose(edge_credit(game, episodes), 0.25)
    np.testing.assert_allclose(edge_credit(game, episodes, "edge_loo"), 1.0)  # every message is needed


@pytest.mark.parametrize(
    "name,n_agents", [("briefing", 5), ("briefing", 7), ("telephone", 4), ("telephone", 6), ("debate", 3)]
)
def test_replay_and_resample_agree_for_a_deterministic_team(name, n_agents):
    game = make_game(name, n_agents=n_agents)
    # every member's answer is a function of what it read (a lazy informant always sends nothing)
    team = ScriptedTeam([1.0] * n_agents, lazy=[1] if name == "briefing" else [])
    replayed = collect(game, team, n_tasks=4, group_size=2, seed=7)
    resampled = collect(game, team, n_tasks=4, group_size=2, seed=7)
    fill_edge_values(game, replayed, "all")
    counts = fill_edge_values(game, resampled, "all", mode="resample", team=team, k=2)
    assert counts["cf/edge_evals"] == len(resampled) * (1 << len(resampled[0].messages))
    for a, b in zip(replayed, resampled):
        assert a.edge_values == b.edge_values
    assert any(v != a.reward for a in replayed for v in a.edge_values.values())  # the edges matter


def test_debate_the_briefed_agents_messages_are_an_or_pair_and_messages_to_it_are_null():
    """Perfect play, agent 0 briefed: one delivered message from agent 0 makes its reader answer
    right, which with agent 0 is a majority. Agent 0 reads nothing, so messages to it are null
    players; a message between the unbriefed agents carries only a hunch (null when both are wrong)."""
    game = make_game("debate", n_agents=3, difficulty=3)
    episodes = collect(game, ScriptedTeam([1.0] * 3), n_tasks=40, seed=0)
    keys = [(m.sender, m.receiver) for m in episodes[0].messages]
    assert keys == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    phi = edge_credit(game, episodes)
    loo = edge_credit(game, episodes, "edge_loo")
    wrong_hunches = 0
    for b, ep in enumerate(episodes):
        task = game.make_task(ep.task_seed)
        assert np.all(phi[b, [2, 4]] == 0.0)  # into the briefed agent: exactly 0
        if task["answer"] not in task["hunch"][1:]:
            wrong_hunches += 1
            np.testing.assert_allclose(phi[b], [0.5, 0.5, 0, 0, 0, 0], atol=1e-12)
            np.testing.assert_allclose(loo[b], 0.0, atol=1e-12)  # either of agent 0's messages suffices
    assert 10 < wrong_hunches < len(episodes)  # (3/4)^2 of the tasks


def test_resample_re_runs_the_receivers_from_the_changed_transcript():
    """Blocking the distractor's message re-runs the decider (turns after the blocked one are
    drawn afresh): with a decider right half the time, v is a mean over its k re-runs, while
    the replay keeps each recorded answer."""
    game = make_game("briefing", n_agents=3)  # informants: digit 1, room; decider
    team = ScriptedTeam([1.0, 1.0, 0.5], seed=3)
    episodes = collect(game, team, n_tasks=8, seed=1)
    fill_edge_values(game, episodes, [0b01], mode="resample", team=team, k=8)
    resampled = [ep.edge_values[0b01] for ep in episodes]
    assert all(v * 8 == round(v * 8) for v in resampled)
    assert any(0.0 < v < 1.0 for v in resampled)
    assert [float(v) for v in (game.edge_values(ep, [0b01])[0] for ep in episodes)] == [ep.reward for ep in episodes]


def test_informing_credit_is_the_sum_over_each_senders_messages():
    credit = torch.tensor([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 0.0]], dtype=torch.float64)
    sender = torch.tensor([[0, 0, 2, 1], [2, 2, 0, 0]])
    out = informing_credit(credit, sender, 4)
    ref = torch.zeros(2, 4, dtype=torch.float64)
    for b in range(2):
        for m in range(4):
            ref[b, sender[b, m]] += credit[b, m]
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_every_edge_estimator_runs_on_its_device_and_agrees_with_the_cpu(device):
    game = make_game("briefing", n_agents=6)
    team = ScriptedTeam([0.7] * 6, malformed_rate=0.1)
    for name in list_edge_estimators():
        episodes = collect(game, team, n_tasks=4, group_size=2, seed=9)
        cpu = edge_credit(game, episodes, name, critic=ScriptedCritic(accuracy=0.7), team=team)
        est = get_edge_estimator(name)
        out = est(EdgeBatch.from_episodes(episodes), {"device": device})
        assert out.credit.device.type == device
        np.testing.assert_allclose(out.cpu().credit.numpy(), cpu, atol=1e-12)


def test_edge_critic_fallbacks_are_uniform_and_counted():
    game = make_game("briefing", n_agents=5)
    episodes = collect(game, ScriptedTeam([1.0] * 5), n_tasks=8, seed=0)
    counts = fill_edge_needs(
        game, episodes, get_edge_estimator("edge_critic").needs(None, 4), critic=ScriptedCritic(malformed_rate=0.5)
    )
    fell_back = [ep.edge_critic["fallback"] for ep in episodes]
    assert counts["edge_critic/calls"] == 8 and counts["edge_critic/fallback"] == sum(fell_back) > 0
    credit = get_edge_estimator("edge_critic")(EdgeBatch.from_episodes(episodes), {"device": "cpu"})
    for b, ep in enumerate(episodes):
        if fell_back[b]:
            np.testing.assert_allclose(credit.credit[b].numpy(), ep.reward / 4)
        else:
            np.testing.assert_allclose(credit.credit[b].numpy(), [0.25, 0.25, 0.5, 0.0], atol=1e-6)
    assert credit.metrics["edge_critic/fallback"] == sum(fell_back)


def test_the_critic_prompt_lists_every_message_under_its_id():
    from mas_credit.agents.critic import build_message_prompt, parse_shares

    game = make_game("telephone", n_agents=3)
    ep = collect(game, ScriptedTeam([1.0] * 3), n_tasks=1)[0]
    prompt, marker = build_message_prompt(game, ep)
    assert 'm0: agent_0 -> agent_1 (sent in turn 0): "the value is' in prompt and "m1: agent_1 -> agent_2" in prompt
    shares, flags = parse_shares(f'{marker} {{"m0": 0.25, "m1": 0.75}}', ["m0", "m1"], [True, True], marker)
    assert shares == [0.25, 0.75] and flags["strict"]


def test_missing_edge_values_and_games_without_messages_are_one_line_errors():
    game = make_game("briefing", n_agents=4)
    episodes = collect(game, ScriptedTeam([1.0] * 4), n_tasks=2)
    with pytest.raises(ValueError, match="needs edge values that episode 0 lacks; fill them first"):
        get_edge_estimator("edge_shapley")(EdgeBatch.from_episodes(episodes), {"device": "cpu"})
    vault = make_game("vault", n_agents=3)
    plain = collect(vault, ScriptedTeam([1.0] * 3), n_tasks=2)
    with pytest.raises(ValueError, match="use a game with messages"):
        fill_edge_values(vault, plain, "all")
    with pytest.raises(ValueError, match="each sent the same number"):
        EdgeBatch.from_episodes(plain)
    with pytest.raises(ValueError, match="unknown edge estimator 'edge_nope'; valid edge estimators: edge_critic"):
        get_edge_estimator("edge_nope")
    with pytest.raises(GameParamError, match="redundant must be true or false"):
        make_game("briefing", redundant="yes")


def test_messages_and_edge_values_survive_the_json_round_trip():
    game = make_game("briefing", n_agents=4)
    ep = collect(game, ScriptedTeam([1.0] * 4), n_tasks=1)[0]
    fill_edge_values(game, [ep], "loo")
    back = Episode.from_dict(ep.to_dict())
    assert back.messages == ep.messages and back.edge_values == ep.edge_values


@pytest.mark.parametrize("n_informants", range(1, 8))
def test_clue_roles_put_redundancy_and_a_distractor_where_there_is_room(n_informants):
    roles = clue_roles(n_informants)
    assert len(roles) == n_informants and roles[0] == 0
    assert (roles.count(ROOM) == 1) == (n_informants >= 2)
    assert (roles.count(0) == 2) == (n_informants >= 3)
    facts = [r for r in roles if r != ROOM]
    assert sorted(set(facts)) == list(range(max(facts) + 1))


def test_agent_coalitions_replay_the_decider_as_a_reader():
    """An absent informant's digit is lost, because the decider answers what its messages imply."""
    game = make_game("briefing", n_agents=4)  # digit 1, digit 1, room
    ep = collect(game, ScriptedTeam([1.0] * 4), n_tasks=1)[0]
    full = 0b1111
    assert game.team_value(ep, full) == 1.0
    assert game.team_value(ep, full & ~0b1) == 1.0  # the redundant informant still tells digit 1
    assert game.team_value(ep, full & ~0b11) == 0.0
    assert game.team_value(ep, full & ~0b100) == 1.0  # the distractor


# -- studies, configs and training ---------------------------------------------------------------
EDGE_STUDY = """
name: edge_study
game: briefing
team: {use: scripted_trio, skills: [0.8, 0.8, 0.8, 0.8, 1.0], malformed_rate: 0.1}
estimators: [shapley]
edges:
  estimators:
    - edge_shapley
    - {name: edge_shapley, label: edge_sampled, params: {method: sampled, budget: 6}}
    - edge_loo
    - edge_critic
    - edge_uniform
seeds: [0, 1]
n_tasks: 6
group_size: 2
"""


def write_experiment(tmp_path, text=EDGE_STUDY):
    path = tmp_path / "edge_study.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def edge_study(tmp_path_factory):
    from mas_credit.config import load_experiment
    from mas_credit.studies import run_study

    root = tmp_path_factory.mktemp("edges")
    return run_study(load_experiment(write_experiment(root)), out_dir=root / "run", progress=False)


def test_a_study_scores_edge_estimators_against_exact_edge_shapley(edge_study):
    import pandas as pd

    edges = pd.read_parquet(edge_study / "edges.parquet")
    assert set(edges["estimator"]) == {"edge_shapley", "edge_sampled", "edge_loo", "edge_critic", "edge_uniform"}
    assert len(edges) == 5 * 2 * 12 * 4  # estimators x seeds x episodes x messages
    assert edges["truth_exact"].all()
    exact = edges[edges["estimator"] == "edge_shapley"]
    np.testing.assert_array_equal(exact["credit"].to_numpy(), exact["truth"].to_numpy())
    assert (exact[exact["distractor"]]["truth"] == 0.0).all() and exact["distractor"].sum() == 24
    summary = (edge_study / "summary.md").read_text()
    assert "# Communication credit (the players are the messages)" in summary
    assert "| `edge_shapley` | 2 | 0.000 ± 0.000 | 1.000 ± 0.000 | 0.000 ± 0.000 | 0.000 ± 0.000 |" in summary
    uniform = next(line for line in summary.splitlines() if line.startswith("| `edge_uniform` |"))
    assert not uniform.split(" | ")[4].startswith("0.000")  # uniform credits the distractor
    assert "| agent | acting | informing (exact) | informing (edge_shapley) |" in summary
    assert "| agent_3 | 0.000 | 0.000 | 0.000 |" in summary  # the distractor: no acting, no informing credit
    assert (edge_study / "edges_briefing.png").stat().st_size > 10_000
    costs = json.loads((edge_study / "costs.json").read_text())["edge_records"]
    assert {c["estimator"]: c["edge_evals"] for c in costs if c["seed"] == 0}["edge_shapley"] == 12 * 16


def test_informing_credit_in_the_report_is_each_senders_summed_edge_truth(edge_study):
    import pandas as pd

    from mas_credit.report import acting_and_informing

    frame, edges = pd.read_parquet(edge_study / "credit.parquet"), pd.read_parquet(edge_study / "edges.parquet")
    split = acting_and_informing(frame, edges, "briefing")
    truth = edges[edges["estimator"] == "edge_shapley"]
    for agent in range(5):
        per_episode = [
            truth[(truth["seed"] == s) & (truth["episode"] == e) & (truth["sender"] == agent)]["truth"].sum()
            for s in (0, 1)
            for e in range(12)
        ]
        assert split.loc[agent, "informing (exact)"] == pytest.approx(np.mean(per_episode))
    acting = frame[(frame["estimator"] == "shapley")].groupby("agent")["truth"].mean()
    np.testing.assert_allclose(split["acting"].to_numpy(), acting.to_numpy())


def test_more_messages_than_exact_up_to_give_a_sampled_ground_truth(tmp_path):
    from mas_credit.config import load_experiment
    from mas_credit.studies import run_study

    path = write_experiment(tmp_path)
    cfg = load_experiment(path, ["edges.exact_up_to=3", "seeds=[0]", "edges.estimators=[edge_loo]"])
    run = run_study(cfg, out_dir=tmp_path / "run", progress=False)
    import pandas as pd

    assert not pd.read_parquet(run / "edges.parquet")["truth_exact"].any()
    assert "## briefing: credit per message (ground truth sampled)" in (run / "summary.md").read_text()


EDGE_BAD = [
    (
        ["game={use: vault, n_agents: 5}"],
        "edges.estimators credits messages, but games.0 (vault_v0) sends none; use a game with messages",
    ),
    (["edges.estimators=[edge_nope]"], "edges.estimators.0: unknown edge estimator 'edge_nope'"),
    (["edges.estimators=[edge_loo,edge_loo]"], "edges.estimators ['edge_loo'] appear more than once"),
    (["edges.mode=guess"], "edges.mode 'guess' is not valid; valid choices: replay, resample"),
    (["edges.exact_up_to=40"], "edges.exact_up_to in [1, 16]"),
    (
        ["edges.estimators=[{name: edge_critic, params: {baseline: zero}}]"],
        "baseline 'zero' is not valid; valid choices: empty, none",
    ),
]


@pytest.mark.parametrize("overrides,message", EDGE_BAD)
def test_edge_config_mistakes_are_one_line_errors(tmp_path, capsys, overrides, message):
    from mas_credit.cli import main

    assert main(["config", "show", str(write_experiment(tmp_path)), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mas-credit: error: ") and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("name", ["briefing", "telephone"])
def test_a_game_says_how_many_messages_an_episode_sends_before_it_is_played(name):
    for n in range(2, 9):
        game = make_game(name, n_agents=n)
        episodes = collect(game, ScriptedTeam([0.8] * n), n_tasks=2, seed=n)
        assert [len(ep.messages) for ep in episodes] == [game.messages_per_episode()] * 2
    assert make_game("vault", n_agents=3).messages_per_episode() is None


LONG_LINE = """from mas_credit.games.telephone import TelephoneEnv


class LongLineEnv(TelephoneEnv):
    name = "long_line_v0"
    max_agents = 24
"""


@pytest.mark.reliability(
    "edge credit on a game that sends more than 16 messages an episode (a plug-in game of 18 agents)",
    "one line at config time naming the game and the bound, before any rollout; exit 2",
)
def test_edge_credit_over_too_many_messages_is_refused_before_any_rollout(tmp_path, monkeypatch, run_main):
    from mas_credit.games import _REGISTRY

    (tmp_path / "long_line.py").write_text(LONG_LINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("mas_credit.games._REGISTRY", dict(_REGISTRY))  # the plug-in is gone after the test
    monkeypatch.delitem(sys.modules, "long_line", raising=False)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        'name: long\ngame: {use: "long_line:LongLineEnv", n_agents: 18}\nteam: {use: scripted_trio, skills: [0.8]}\n'
        "estimators: [loo]\nedges: {estimators: [edge_loo]}\nseeds: [0]\nn_tasks: 1\ngroup_size: 1\n"
    )
    code, _, err = run_main("study", exp, "--out", tmp_path / "run", "--no-progress")
    assert code == 2 and err.count("\n") == 1, err
    assert (
        "edges.estimators: games.0 (long_line_v0) sends 17 messages an episode; edge credit handles at most 16" in err
    )
    assert not (tmp_path / "run").exists()
    code, _, err = run_main("study", exp, "game.n_agents=17", "--out", tmp_path / "ok", "--no-progress")
    assert code == 0, err  # 16 messages: the exact edge table still fits


def test_informing_credit_needs_groups_and_a_game_with_messages():
    from mas_credit.config import ConfigError, load_experiment, validate_train

    from .test_studies import ROOT

    run = ROOT / "experiments" / "learn_informing_run.yaml"
    with pytest.raises(ConfigError, match="informing_credit centres each message's credit within its task group"):
        overrides = [
            "train.informing_credit=1",
            "group_size=1",
            "estimators=[{use: shapley, params: {normalise: none}}]",
        ]
        validate_train(load_experiment(run, overrides))
    with pytest.raises(ConfigError, match="train.informing_credit credits messages, but games.0 .potluck_v0. sends"):
        load_experiment(run, ["train.informing_credit=1", "game=potluck", "team=tabular_trio"])


def test_informing_credit_lands_on_the_turns_that_sent_each_message():
    """The trainer's vectorised addition against a loop over episodes and messages."""
    from mas_credit.config import load_experiment
    from mas_credit.train.trainer import Trainer

    from .test_studies import ROOT

    cfg = load_experiment(
        ROOT / "experiments" / "learn_informing_run.yaml", ["train.informing_credit=0.5", "n_tasks=3"]
    )
    trainer = Trainer(cfg, "/nonexistent", progress=False)
    game, episodes = trainer.collect(0)
    advantage = torch.randn(len(episodes), 5, dtype=torch.float64)
    out, metrics = trainer.add_informing(game, episodes, advantage)
    phi = {b: brute_force_edge_shapley(game, ep) for b, ep in enumerate(episodes)}
    ref = advantage.clone()
    for b, ep in enumerate(episodes):
        mates = [c for c, other in enumerate(episodes) if other.group == ep.group]
        for m, msg in enumerate(ep.messages):
            ref[b, msg.turn] += 0.5 * (phi[b][m] - np.mean([phi[c][m] for c in mates]))
    torch.testing.assert_close(out, ref)
    assert not torch.equal(out, advantage)
    assert metrics["edges/edge_evals"] == len(episodes) * 16 and metrics["informing/agent_4"] == 0.0
    informing = np.mean(
        [sum(phi[b][m] for m, msg in enumerate(ep.messages) if msg.sender == 2) for b, ep in enumerate(episodes)]
    )
    assert metrics["informing/agent_2"] == pytest.approx(informing)


def test_a_training_run_with_informing_credit_logs_it_and_learns(tmp_path):
    from mas_credit.config import load_experiment, validate_train
    from mas_credit.outputs import read_metrics
    from mas_credit.train.trainer import train

    from .test_studies import ROOT

    cfg = load_experiment(
        ROOT / "experiments" / "learn_informing_run.yaml", ["train.informing_credit=1.0", "train.iterations=8"]
    )
    validate_train(cfg)
    run = train(cfg, tmp_path / "run", progress=False)
    trained, evaluated = read_metrics(run)
    assert all("informing/agent_2" in r and r["edges/edge_evals"] == 32 * 16 for r in trained)
    evals = [r["eval/success"] for r in evaluated]
    assert evals[-1] > evals[0] + 0.3


def test_a_training_batch_compares_informing_credit_with_agent_level_credit_alone_seed_by_seed(tmp_path):
    from mas_credit.batch import run_batch
    from mas_credit.config import load_batch

    from .test_studies import ROOT

    batch = tmp_path / "b.yaml"
    batch.write_text(
        f"name: b\nbase: {ROOT / 'experiments' / 'learn_informing_run.yaml'}\nmode: train\n"
        "grid: {train.informing_credit: [0.0, 1.0], seeds: [[0], [1]]}\n"
        "overrides: [train.iterations=3, train.eval_every=3, n_tasks=4]\n"
        "paired: {train.informing_credit: 0.0}\nexecutor: {kind: local, workers: 1}\n"
    )
    out = run_batch(load_batch(batch), out_dir=tmp_path / "out", progress=False)
    text = (out / "batch.md").read_text()
    assert "## Against train.informing_credit = 0.0 (paired by seed)" in text
    row = next(line for line in text.splitlines() if line.startswith("| briefing | grpo | 1.0 |"))
    assert row.endswith("(2 seeds) |")
    with pytest.raises(Exception, match="paired.train.lr must name a grid key and one of its values"):
        load_batch(batch, ["paired={train.lr: 1.0}"])


def test_play_shows_each_message_with_its_edge_credit(capsys):
    from mas_credit.cli import main

    assert main(["play", "briefing", "--n-agents", "5", "--skills", "1,1,1,1,1", "--estimators", "loo"]) == 0
    out = capsys.readouterr().out
    assert "Messages (edges; v(all) = 1.000, v(none) = 0.000):" in out
    assert "m0  agent_0 -> agent_4 (turn 0): 'digit 1 of the code is" in out and out.count("edge Shapley 0.250") == 2
    assert "m3  agent_3 -> agent_4 (turn 3): 'the room number is" in out and "edge Shapley 0.000" in out
