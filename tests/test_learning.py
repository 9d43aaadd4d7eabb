"""Learning studies: games' tabular form, mixed teams (scripted, saboteur, lazy, tabular,
frozen), tabular learners trained by the same trainer loop, and the learning metrics."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from mas_credit.agents import ScriptedTeam
from mas_credit.agents.tabular import MixedTeam
from mas_credit.config import SHIPPED, ConfigError, load_experiment, validate_train
from mas_credit.games import GameParamError, make_game
from mas_credit.games.base import GameBase
from mas_credit.outputs import read_metrics
from mas_credit.rollout import collect
from mas_credit.train.learners import TabularLearner
from mas_credit.train.summary import learning_metrics
from mas_credit.train.trainer import Trainer, resume

from .devices import DEVICES
from .test_studies import ROOT
from .test_train import run_until_killed, untimed_metrics

RUN = ROOT / "experiments" / "learn_tabular_run.yaml"
TABULAR_GAMES = ["vault", "potluck", "council", "lookout", "relay", "debate", "rampart"]


def tabular_cfg(overrides):
    cfg = load_experiment(RUN, ["team=tabular_trio", "game=potluck", "train.plots=false", *overrides])
    validate_train(cfg)
    return cfg


@pytest.mark.parametrize("name", TABULAR_GAMES)
@pytest.mark.parametrize("difficulty", [1, 3])
def test_games_give_legal_actions_and_a_small_observation_key(name, difficulty):
    game = make_game(name, n_agents=4, difficulty=difficulty, lazy_agents=[3])
    universe, keys = game.action_universe(), game.key_universe()
    assert len(set(map(repr, universe))) == len(universe)
    for seed in range(30):
        game.reset(seed=seed)
        for agent in range(4):
            legal = game.legal_actions(agent)
            assert legal and all(a in universe for a in legal) and game.observation_key(agent) in keys
            assert all(game.parse(agent, game.render_action(agent, a)) == a for a in legal)
            if agent != 3:
                assert game.expert_action(agent) in legal


@pytest.mark.parametrize("difficulty", [1, 2])
def test_orchestra_tabular_moves_render_to_distinct_game_moves_at_every_turn(difficulty):
    """Orchestra's tabular moves are abstract (route, reply, compose): at every turn of an
    expert-played episode each legal move renders to its own parseable text that re-renders
    the same, and the expert's move is one of them."""
    game = make_game("orchestra", n_agents=4, difficulty=difficulty, lazy_agents=[3])
    universe, keys = game.action_universe(), game.key_universe()
    assert len(set(universe)) == len(universe) and len(set(keys)) == len(keys)
    phases = set()
    for seed in range(20):
        game.reset(seed=seed)
        while not all(game.terminations.values()):
            agent = game._idx(game.agent_selection)
            key, legal = game.observation_key(agent), game.legal_actions(agent)
            phases.add(key[0])
            assert key in keys and legal and all(a in universe for a in legal)
            texts = [game.render_action(agent, a) for a in legal]
            assert len(set(texts)) == len(texts)
            assert all(
                game.parse(agent, t) is not None and game.render_action(agent, game.parse(agent, t)) == t for t in texts
            )
            expert = game.render_action(agent, game.expert_action(agent))
            assert expert in texts
            if key[0] == "plan":  # the key is the owners, and routing to them is the expert's plan
                assert texts[legal.index(("route", key[1]))] == expert
            game.step(expert)
        assert game._result[0] == 1.0
    assert phases == {"plan", "answer", "final"}


def test_a_game_without_a_tabular_form_says_what_it_lacks():
    class Bare(type(make_game("vault"))):
        action_universe = GameBase.action_universe

    with pytest.raises(
        GameParamError, match="vault_v0 has no tabular form: tabular members play games that define action_universe"
    ):
        Bare(n_agents=3).action_universe()


def test_scripted_saboteurs_and_lazy_members_play_as_told():
    game = make_game("vault", n_agents=3)
    team = MixedTeam(
        [{"kind": "scripted", "skill": 1.0}, {"kind": "scripted", "saboteur": True}, {"kind": "scripted", "lazy": True}]
    )
    episodes = collect(game, team, n_tasks=20, seed=0)
    correct = np.array([ep.components["correct"] for ep in episodes])
    assert correct[:, 0].all() and not correct[:, 1].any() and not correct[:, 2].any()
    assert all(ep.turns[1].valid and ep.turns[2].text == "" for ep in episodes)
    assert ScriptedTeam([1.0, 1.0], saboteurs=[1]).saboteurs == [1]


def final_success(run_dir):
    return read_metrics(run_dir)[1][-1]["eval/success"]


@pytest.mark.parametrize("estimator", ["grpo", "dr_mas", "loo", "sharp", "c3", "shapley"])
def test_tabular_learners_go_from_chance_to_at_least_0_9(estimator, tmp_path):
    """potluck (additive, deterministic team reward), three tabular learners: every estimator
    here has a learning signal, and within 30 iterations of 32 episodes greedy team success
    rises from chance (each agent picks one of its 2 dishes) to at least 0.9."""
    cfg = tabular_cfg([f"estimators=[{estimator}]", "train.iterations=30", "train.eval_every=10"])
    run = Trainer(cfg, tmp_path, progress=False).run()
    _, evals = read_metrics(run)
    assert evals[0]["eval/success"] <= 0.5 and evals[-1]["eval/success"] >= 0.9, [e["eval/success"] for e in evals]


ALL_ESTIMATORS = [
    ("grpo", {}),
    ("dr_mas", {}),
    ("m_grpo", {}),
    ("sharp", {}),
    ("c3", {}),
    ("c3", {"mode": "tree", "fanout": [2, 2]}),
    ("llm_mca", {}),
    ("loo", {}),
    ("coma", {}),
    ("shapley", {}),
]


@pytest.mark.parametrize("estimator,params", ALL_ESTIMATORS)
def test_a_mixed_team_trains_its_learners_only(estimator, params, tmp_path):
    members = (
        "[{kind: tabular, lr: 1.0}, {kind: tabular, frozen: true}, {kind: scripted, skill: 0.6}, "
        "{kind: scripted, saboteur: true}, {kind: scripted, lazy: true}]"
    )
    cfg = tabular_cfg(
        [
            f"team.members={members}",
            "games.0.n_agents=5",
            "train.iterations=2",
            "train.eval_every=1",
            "estimators=[{use: %s, params: %s}]" % (estimator, json.dumps(params)),
        ]
    )
    trainer = Trainer(cfg, tmp_path, progress=False)
    assert [learner.agents for learner in trainer.learners] == [[0]]
    learner, frozen = trainer.team.tabular[0], trainer.team.tabular[1]
    trainer.run()
    assert frozen.logits is not None and torch.count_nonzero(frozen.logits) == 0  # played, never moved
    assert torch.count_nonzero(learner.logits) > 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 2 and all(math.isfinite(r[k]) for r in train for k in r if isinstance(r[k], float))
    assert "loss/agent_0/pg" in train[0] and not any(k.startswith(("loss/agent_1/", "loss/agent_2/")) for k in train[0])
    assert all(f"credit/{estimator}/agent_{i}" in train[0] for i in range(5))


def test_learning_metrics_equal_a_slow_recomputation_from_metrics_jsonl(tmp_path):
    cfg = tabular_cfg(
        ["team=tabular_pair_noisy", "estimators=[loo]", "train.iterations=12", "train.eval_every=3"]
        + ["train.success_target=0.6"]
    )
    run = Trainer(cfg, tmp_path, progress=False).run()
    saved = json.loads((run / "learning.json").read_text())
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # the slow way: walk the records in order, counting the episodes each training iteration played
    played, episodes_to_target, points, learners_correct = 0, None, [], []
    for record in lines:
        if record["kind"] == "train":
            played += len(record["episode_turns"])
        else:
            points.append((record["iteration"], record["eval/success"]))
            # agents 0 and 1 learn; agent 2 is scripted (its correctness stays out)
            learners_correct.append(
                (record["iteration"], (record["eval/correct/agent_0"] + record["eval/correct/agent_1"]) / 2)
            )
            if episodes_to_target is None and record["eval/success"] >= 0.6:
                episodes_to_target = played

    def area(curve):
        total = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(curve, curve[1:]))
        return total / (curve[-1][0] - curve[0][0])

    assert saved["learn/episodes_to_target"] == episodes_to_target and episodes_to_target is not None
    assert saved["learn/auc"] == pytest.approx(area(points), abs=1e-12)
    assert saved["learn/episodes"] == played == 12 * 8 * 4
    assert (saved["learn/success_first"], saved["learn/success_last"]) == (points[0][1], points[-1][1])
    assert saved["learn/learner_correct_auc"] == pytest.approx(area(learners_correct), abs=1e-12)
    assert saved["learn/learner_correct_first"] == pytest.approx(learners_correct[0][1], abs=1e-12)
    assert saved["learn/learner_correct_last"] == pytest.approx(learners_correct[-1][1], abs=1e-12)
    last_eval = [r for r in lines if r["kind"] == "eval"][-1]
    assert last_eval["eval/correct/agent_2"] != learners_correct[-1][1]  # so counting agent 2 in would show
    assert "The learners' greedy correctness" in (run / "summary.md").read_text()
    assert learning_metrics([], [], 0.5) == {}
    never = learning_metrics([], [{"iteration": 0, "eval/success": 0.2}], 0.9)
    assert never["learn/episodes_to_target"] is None and never["learn/auc"] == 0.2


def same_up_to(a, b, rel):
    """a == b for nested JSON-like values, numbers within `rel` of each other (exactly equal when rel is 0)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_up_to(a[k], b[k], rel) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same_up_to(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and rel > 0:
        return a == pytest.approx(b, rel=rel, abs=rel)
    return a == b


@pytest.mark.parametrize("device", DEVICES)
def test_a_killed_tabular_run_resumes_to_the_same_result(tmp_path, monkeypatch, device):
    """Bit for bit with the estimator on the CPU. On CUDA, the group sums' atomic float64 adds
    (index_add_) may add in another order while other processes share the GPU (seen once in 12
    pytest workers on an H200; two runs alone matched), so there the records agree to 1e-9."""
    overrides = [
        f"estimators=[{{use: sharp, device: {device}}}]",
        "train.iterations=4",
        "train.checkpoint_every=2",
        "train.eval_every=2",
    ]
    whole = Trainer(tabular_cfg(overrides), tmp_path / "whole", progress=False)
    whole.run()
    run_until_killed(Trainer(tabular_cfg(overrides), tmp_path / "killed", progress=False), 3, monkeypatch)
    resume(tmp_path / "killed", progress=False)
    rel = 0.0 if device == "cpu" else 1e-9
    killed, uninterrupted = untimed_metrics(tmp_path / "killed"), untimed_metrics(tmp_path / "whole")
    assert len(killed) == len(uninterrupted) == 7 and same_up_to(killed, uninterrupted, rel)
    a = torch.load(tmp_path / "whole" / "checkpoint" / "state.pt", weights_only=False)["learners"]
    b = torch.load(tmp_path / "killed" / "checkpoint" / "state.pt", weights_only=False)["learners"]
    assert a.keys() == b.keys() == {"tabular/agent_0", "tabular/agent_1", "tabular/agent_2"}
    for key in a:
        torch.testing.assert_close(a[key]["policy"]["logits"], b[key]["policy"]["logits"], rtol=rel, atol=rel)


def test_same_up_to_tells_records_apart():
    record = {"a": 1.0, "b": [0.5, 2], "c": "x"}
    assert same_up_to(record, {"a": 1.0, "b": [0.5, 2], "c": "x"}, 0.0)
    assert not same_up_to(record, {"a": 1.0 + 1e-15, "b": [0.5, 2], "c": "x"}, 0.0)
    assert same_up_to(record, {"a": 1.0 + 1e-15, "b": [0.5, 2], "c": "x"}, 1e-9)
    assert not same_up_to(record, {"a": 1.0 + 1e-6, "b": [0.5, 2], "c": "x"}, 1e-9)
    assert not same_up_to(record, {"a": 1.0, "b": [0.5, 3], "c": "x"}, 1e-9)
    assert not same_up_to(record, {"a": 1.0, "b": [0.5], "c": "x"}, 1e-9)
    assert not same_up_to(record, {"a": 1.0, "b": [0.5, 2]}, 1e-9)


def test_the_tabular_log_prob_equals_a_plain_softmax():
    team = MixedTeam([{"kind": "tabular", "temperature": 0.5}])
    policy = team.tabular[0]
    game = make_game("council", n_agents=2, difficulty=3)
    game.reset(seed=0)
    policy.ensure(game)
    with torch.no_grad():
        policy.logits.copy_(
            torch.randn(policy.logits.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        )
    pairs = [([2, 0, 1, 3], [1]), ([0, 2, 3], [3]), ([1, 0, 1, 2, 3], [0])]
    got = policy.logprobs(pairs)
    for m, (prompt, response) in enumerate(pairs):
        row = [float(policy.logits[prompt[0], a]) / 0.5 for a in prompt[1:]]
        expected = row[prompt[1:].index(response[0])] - math.log(sum(math.exp(v) for v in row))
        assert float(got[m, 0]) == pytest.approx(expected, abs=1e-6)
    learner = TabularLearner(policy, 0, tabular_cfg([]).train)
    assert learner.params == [policy.logits]


BAD = [
    (
        ["team.members=[{kind: tabular}, {kind: tabular}]"],
        "team.members has 2 members but games.0 (potluck_v0) has n_agents=3",
    ),
    (
        ["team.members=[{kind: tabular, speed: 2}, {kind: tabular}, {kind: tabular}]"],
        "team.members.0 (tabular) has no key speed",
    ),
    (
        ["team.members=[{kind: robot}, {kind: tabular}, {kind: tabular}]"],
        "team.members.0: kind must be one of scripted, tabular, llm",
    ),
    (["team.members=[{kind: scripted}, {kind: tabular, frozen: true}, {kind: scripted}]"], "train needs a learner"),
    (
        ["team.members=[{kind: scripted, skill: 2}, {kind: tabular}, {kind: tabular}]"],
        "team.members.0.skill must be a probability",
    ),
    (["games=[potluck,vault]"], "a team with tabular members trains on one game"),
    (["train.success_target=1.5"], "train.success_target must be in (0, 1]"),
    (
        ["team=tabular_pair_noisy", "train.trained_agents=[0,2]"],
        "train.trained_agents [2] are scripted, frozen, served or plug-in members",
    ),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_mixed_team_mistakes_give_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        tabular_cfg(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_training_batch_compares_with_grpo_by_seed_and_draws_learning_curves(tmp_path):
    import pandas as pd
    import yaml

    from mas_credit.batch import learning_curves, run_batch
    from mas_credit.config import load_batch
    from mas_credit.report import cell_text, mean_ci

    spec = {
        "name": "learn",
        "base": str(RUN),
        "mode": "train",
        "overrides": ["train.iterations=6", "train.eval_every=2"],
        "grid": {"estimators": [["grpo"], ["loo"]], "seeds": [[0], [1], [2]]},
        "executor": {"kind": "local", "workers": 1},
    }
    path = tmp_path / "learn.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = run_batch(load_batch(path), out_dir=tmp_path / "out", progress=False)
    text = (out / "batch.md").read_text()
    frame = pd.read_parquet(out / "batch.parquet")
    # the slow way: seed by seed, loo minus grpo
    by_seed = {(r["estimator"], r["seed"]): r for _, r in frame.iterrows()}
    diffs = [by_seed["loo", s]["auc"] - by_seed["grpo", s]["auc"] for s in (0, 1, 2)]
    mean, half = mean_ci(diffs)
    row = next(
        line for line in text.split("## Against grpo", 1)[1].splitlines() if line.startswith("| potluck | loo |")
    )
    assert f"{mean:.3f} ± {half:.3f}" in row and "(3 seeds)" in row
    # the learners' correctness, paired the same way (its own column, after the final success)
    learners = [by_seed["loo", s]["learner_correct_auc"] - by_seed["grpo", s]["learner_correct_auc"] for s in (0, 1, 2)]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == cell_text(*mean_ci(learners)) and cells[4] != cells[2]
    assert "| Δ auc | Δ eval_success | Δ learner_correct_auc | Δ learner_correct |" in text
    assert (out / "plots" / "learning_curves.png").is_file()
    curves = learning_curves(out, frame[frame["status"] == "ok"], ["game", "estimator"])
    x, means, halves = curves[("potluck",)]["loo"]
    assert x == [0, 2, 4, 6]
    for k, iteration in enumerate(x):
        values = []
        for seed in (0, 1, 2):
            for line in (out / "runs" / f"estimators-loo__seeds-{seed}" / "metrics.jsonl").read_text().splitlines():
                record = json.loads(line)
                if record["kind"] == "eval" and record["iteration"] == iteration:
                    values.append(record["eval/success"])
        assert (means[k], halves[k]) == pytest.approx(mean_ci(values), nan_ok=True)
    # compute and signal: evaluations spent (the slow way: summed over each run's training records)
    section = text.split("## Compute and signal", 1)[1].split("## Failed runs", 1)[0]
    assert (out / "plots" / "frontier.png").is_file()
    for estimator in ("grpo", "loo"):
        spent = []
        for seed in (0, 1, 2):
            lines = (out / "runs" / f"estimators-{estimator}__seeds-{seed}" / "metrics.jsonl").read_text().splitlines()
            spent.append(sum(r.get("cf/evals", 0.0) for r in map(json.loads, lines) if r["kind"] == "train"))
        row = next(line for line in section.splitlines() if line.startswith(f"| potluck | {estimator} |"))
        assert f"| {np.mean(spent):,.0f} |" in row
    assert next(line for line in section.splitlines() if line.startswith("| potluck | grpo |")).endswith("| yes |")


def test_a_mixed_team_with_llm_members_trains_only_its_llm_learner(tmp_path):
    """tiny model: agent 0 an LLM learner, agent 1 a frozen LLM, agent 2 a perfect scripted
    teammate; one batched generate for both LLM members, only agent 0's adapter moves."""
    from .test_train import QUICK, TINY

    members = "[{kind: llm}, {kind: llm, frozen: true}, {kind: scripted, skill: 1.0}]"
    cfg = load_experiment(
        QUICK, TINY + ["team.kind=mixed", f"team.members={members}", "estimators=[grpo]", "team.device=cpu"]
    )
    validate_train(cfg)
    trainer = Trainer(cfg, tmp_path, progress=False)
    assert [(type(learner).__name__, learner.agents) for learner in trainer.learners] == [("LLMLearner", [0])]
    with torch.no_grad():  # agent 0's policy away from the base: the KL term moves it
        for name, p in trainer.team.models[0].named_parameters():
            if "lora_B" in name and ".agent_0." in name:
                p.fill_(0.01)
    before = trainer.adapter_state()
    calls = trainer.team.llm.calls
    trainer.run()
    after = trainer.adapter_state()
    moved = {key for key in before if any(not torch.equal(before[key][n], after[key][n]) for n in before[key])}
    assert moved == {"0/agent_0"}
    episodes = collect(make_game("vault", n_agents=3), trainer.team, n_tasks=2, group_size=2, seed=0)
    assert all(t.logprobs for ep in episodes for t in ep.turns[:2]) and not any(ep.turns[2].logprobs for ep in episodes)
    assert (trainer.team.llm.calls - calls) > 0 and all(ep.components["correct"][2] == 1 for ep in episodes)


@pytest.mark.slow
def test_a_mixed_team_with_the_real_default_model_plays_and_records_logprobs():
    from mas_credit.agents import load_team
    from mas_credit.config import load_team_config

    cfg = dataclasses.replace(
        load_team_config("smollm_trio"),
        kind="mixed",
        device="cpu",
        members=[{"kind": "llm"}, {"kind": "scripted", "skill": 1.0}, {"kind": "scripted", "lazy": True}],
    )
    team = load_team(cfg, n_agents=3)
    assert team.learner_agents() == [0]
    episodes = collect(make_game("vault", n_agents=3), team, n_tasks=2, group_size=2, seed=0)
    assert all(
        ep.turns[0].response_ids and len(ep.turns[0].logprobs) == len(ep.turns[0].response_ids) for ep in episodes
    )
    assert all(ep.turns[1].valid and ep.turns[2].text == "" for ep in episodes)


def test_play_shows_each_members_kind(capsys):
    from mas_credit.cli import main

    assert main(["play", "vault", "--team", str(SHIPPED / "agents" / "tabular_pair_noisy.yaml")]) == 0
    rows = [
        line.split()
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("agent_") and "correct=" in line
    ]
    assert [row[1] for row in rows] == ["tabular", "tabular", "0.80"]


class TorchAdamTabular(TabularLearner):
    """The slow reference of the grouped tabular update: one learner at a time through the shared
    `PolicyLearner.update` (autograd, torch's clip_grad_norm_ and torch.optim.Adam)."""

    def __init__(self, policy, agent, train_cfg):
        super().__init__(policy, agent, train_cfg)
        self._torch_adam = torch.optim.Adam([policy.logits], lr=policy.lr)

    @property
    def optimizer(self):
        return self._torch_adam

    def update(self, rows):
        from mas_credit.train.learners import PolicyLearner

        return PolicyLearner.update(self, rows)

    @classmethod
    def update_group(cls, learner_rows):
        return {learner: learner.update(rows) for learner, rows in learner_rows.items()}


def random_rows(policy, rng, count):
    rows = []
    for _ in range(count):
        key = int(rng.integers(len(policy.keys)))
        legal = sorted(
            rng.choice(len(policy.actions), size=int(rng.integers(2, len(policy.actions) + 1)), replace=False)
        )
        chosen = int(rng.choice(legal))
        rows.append(
            {
                "prompt": [key, *map(int, legal)],
                "response": [chosen],
                "sampler_logprobs": [float(-rng.random() * 2)],
                "adv": float(rng.normal()),
                "weight": float(rng.choice([1.0, 2.0, 0.5])),
            }
        )
    return rows


@pytest.mark.parametrize("epochs,clip_eps,tis_cap", [(1, 0.2, 0.0), (3, 0.05, 0.0), (2, 0.1, 2.0)])
def test_the_grouped_tabular_update_is_each_learners_own_update(epochs, clip_eps, tis_cap):
    """Five tabular learners (two learning rates, two temperatures) updated together by
    `update_group` end with the tables, Adam moments and stats of five learners updated one by one
    through `PolicyLearner.update` with torch's Adam, over four iterations."""
    cfg = dataclasses.replace(
        tabular_cfg([]).train, epochs=epochs, clip_eps=clip_eps, tis_cap=tis_cap, max_grad_norm=0.7
    )
    game = make_game("council", n_agents=5, difficulty=3)
    game.reset(seed=0)
    members = [{"kind": "tabular", "lr": 0.5 if i % 2 else 0.1, "temperature": 1.0 if i < 3 else 0.5} for i in range(5)]
    fast_team, slow_team = MixedTeam(members), MixedTeam(members)
    for team in (fast_team, slow_team):
        for policy in team.tabular.values():
            policy.ensure(game)
            with torch.no_grad():
                policy.logits.copy_(
                    torch.randn(policy.logits.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
                )
    fast = [TabularLearner(fast_team.tabular[i], i, cfg) for i in range(5)]
    slow = [TorchAdamTabular(slow_team.tabular[i], i, cfg) for i in range(5)]
    rng = np.random.default_rng(0)
    for iteration in range(4):
        rows = [random_rows(fast[i].policy, rng, 20 + 7 * i) for i in range(5)]
        got = TabularLearner.update_group(dict(zip(fast, rows)))
        want = TorchAdamTabular.update_group(dict(zip(slow, rows)))
        for f, s in zip(fast, slow):
            torch.testing.assert_close(f.policy.logits, s.policy.logits, atol=1e-10, rtol=0)
            state = s.optimizer.state[s.policy.logits]
            torch.testing.assert_close(f.adam["exp_avg"], state["exp_avg"], atol=1e-12, rtol=0)
            assert f.adam["step"] == int(state["step"]) == (iteration + 1) * epochs  # a step per epoch
            for key, value in want[s].items():
                assert got[f][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (iteration, key)
    assert any(want[s]["clip_frac"] > 0 for s in slow) or epochs == 1  # the clipped branch ran


def test_a_tabular_checkpoint_round_trips_its_adam_moments(tmp_path):
    cfg = tabular_cfg([]).train
    game = make_game("vault", n_agents=3)
    game.reset(seed=0)
    team = MixedTeam([{"kind": "tabular"}])
    team.tabular[0].ensure(game)
    learner = TabularLearner(team.tabular[0], 0, cfg)
    learner.update(random_rows(learner.policy, np.random.default_rng(1), 12))
    state = learner.state_dict()
    other_team = MixedTeam([{"kind": "tabular"}])
    other = TabularLearner(other_team.tabular[0], 0, cfg)
    other.load_state_dict(state)
    torch.testing.assert_close(other.policy.logits, learner.policy.logits, atol=0, rtol=0)
    assert other.adam["step"] == 1 and torch.equal(other.adam["exp_avg_sq"], learner.adam["exp_avg_sq"])
    legacy = torch.optim.Adam([torch.nn.Parameter(learner.policy.logits.detach().clone())], lr=0.5)
    legacy.state[legacy.param_groups[0]["params"][0]] = {
        "step": torch.tensor(3.0),
        "exp_avg": learner.adam["exp_avg"],
        "exp_avg_sq": learner.adam["exp_avg_sq"],
    }
    other.load_state_dict({"policy": state["policy"], "optimizer": legacy.state_dict()})  # a checkpoint of before
    assert other.adam["step"] == 3 and torch.equal(other.adam["exp_avg"], learner.adam["exp_avg"])
