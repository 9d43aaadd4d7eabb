"""Every vectorised estimator equals its slow reference (tests/reference.py) on random
batches: seeds x N in 2..8 x group sizes (1 included) x agents that never act; plus the
registry, config handling, and the same numbers on CUDA where it exists."""

import numpy as np
import pytest
import torch

from mas_credit.estimators import Needs, get_estimator, list_estimators, register_estimator
from mas_credit.estimators.m_grpo import alignment_draws

from . import reference
from .batches import random_batch

SEEDS = [0, 1, 2, 3]
SIZES = [2, 3, 4, 5, 6, 7, 8]
GROUPS = [1, 2, 4]

VARIANTS = {
    "grpo": [{}, {"scale": "batch"}, {"scale": "none"}, {"norm_by_std": False}],
    "dr_mas": [
        {},
        {"row_stats": "trajectories"},
        {"group_by_agent": False},
        {"norm_by_std": False},
        {"reward": "correct"},
        {"group_by_agent": False, "row_stats": "trajectories"},
    ],
    "m_grpo": [
        {},
        {"d_max": 1},
        {"d_max": 6, "duplicate": "any"},
        {"duplicate": "best", "main_agent": 1},
        {"rewards": "weighted"},
        {"rewards": "weighted", "d_max": 2, "main_agent": 1},
        {"format_score": 0.0},
    ],
    "shapley": [
        {},
        {"normalise": "none"},
        {"method": "sampled", "budget": 40},
        {"method": "sampled", "budget": 12, "antithetic": False},
        {"method": "sampled", "budget_per_agent": 3, "seed": 1},
    ],
    "sharp": [
        {},
        {"kappa": 0.5},
        {"method": "sampled", "budget": 40, "tool_component": "format"},
        {"tool_component": "none"},
    ],
    "loo": [{}, {"normalise": "agent"}],
    "c3": [{}],
    "coma": [{}, {"normalise": "agent"}],
    "llm_mca": [{}, {"baseline": "none"}],
    "uniform": [{}, {"baseline": "none"}],
    "kernelshap": [{}, {"budget_per_agent": 3, "seed": 1}, {"normalise": "none"}],
    "svarm": [{}, {"budget_per_agent": 3, "seed": 2}, {"normalise": "none"}],
    "banzhaf": [{}, {"budget": 4, "seed": 2}, {"normalise": "none"}],
    "loworder": [{}, {"order": 1}, {"screen": 4, "min_gain": 0.0, "seed": 3}, {"normalise": "none"}],
    "amortised": [{}, {"budget": 4}, {"select": False, "prior_weight": 1.0, "seed": 1}, {"normalise": "none"}],
}
REFERENCES = {
    "grpo": reference.grpo,
    "dr_mas": reference.dr_mas,
    "shapley": reference.shapley,
    "sharp": reference.sharp,
    "loo": reference.loo,
    "c3": reference.c3_counterfactual,
    "coma": reference.coma,
    "llm_mca": reference.llm_mca,
    "uniform": reference.uniform,
    "kernelshap": reference.kernelshap,
    "svarm": reference.svarm,
    "banzhaf": reference.banzhaf,
    "loworder": reference.loworder,
    "amortised": reference.amortised,
}
TOO_SMALL = {"svarm": 3}
"""the fewest agents an estimator takes (svarm's strata need three)"""


def run_reference(name, batch, cfg):
    if name == "m_grpo":
        drop, pick = alignment_draws(batch.batch_size, batch.n_turns, cfg)
        credit, adv, weight = reference.m_grpo(batch, cfg, drop.tolist(), pick.tolist())
        return credit, adv
    return REFERENCES[name](batch, cfg)


def test_every_estimator_has_variants_and_a_reference():
    assert sorted(VARIANTS) == list_estimators()


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_agents", SIZES)
@pytest.mark.parametrize("group_size", GROUPS)
def test_vectorised_equals_reference(name, seed, n_agents, group_size):
    batch = random_batch(seed, n_agents, group_size)
    est = get_estimator(name)
    if n_agents < TOO_SMALL.get(name, 0):
        with pytest.raises(ValueError, match=f"needs at least {TOO_SMALL[name]} agents"):
            est(batch, {"device": "cpu"})
        return
    for variant in VARIANTS[name]:
        if variant.get("main_agent", 0) >= n_agents:
            continue
        cfg = est.make_config(dict(variant, device="cpu"))
        out = est(batch, cfg)
        credit, adv = run_reference(name, batch, cfg)
        assert out.credit.shape == (batch.batch_size, n_agents)
        assert out.advantage.shape == (batch.batch_size, batch.n_turns)
        np.testing.assert_allclose(out.credit.numpy(), np.array(credit), atol=1e-9, err_msg=f"{name} {variant} credit")
        np.testing.assert_allclose(
            # 1e-8: the normalisation divides credit's ~1e-10 float error by a std that can be small
            # (kernelshap, budget_per_agent 3, seed 1 differed by 1.6e-9 under two xdist workers)
            out.advantage.numpy(),
            np.array(adv),
            atol=1e-8,
            err_msg=f"{name} {variant} advantage",
        )
        assert torch.isfinite(out.credit).all() and torch.isfinite(out.advantage).all()
        assert (out.advantage[batch.turn_agent < 0] == 0).all(), "padding must get advantage 0"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_agents", [2, 3, 8])
def test_m_grpo_weights_equal_reference(seed, n_agents):
    batch = random_batch(seed, n_agents, 3, max_turns_per_agent=3)
    est = get_estimator("m_grpo")
    for variant in VARIANTS["m_grpo"]:
        if variant.get("main_agent", 0) >= n_agents:
            continue
        cfg = est.make_config(dict(variant, device="cpu"))
        drop, pick = alignment_draws(batch.batch_size, batch.n_turns, cfg)
        _, _, weight = reference.m_grpo(batch, cfg, drop.tolist(), pick.tolist())
        np.testing.assert_array_equal(est(batch, cfg).turn_weight.numpy(), np.array(weight, dtype=float))


def test_registry_rejects_duplicates_and_lists_valid_names():
    with pytest.raises(ValueError, match="already registered"):
        register_estimator("grpo", object, lambda cfg, n: Needs())(lambda batch, cfg: None)
    grpo = get_estimator("grpo")
    assert (
        register_estimator("grpo", grpo.Config, grpo.needs_rule)(grpo.fn) is grpo.fn and get_estimator("grpo") is grpo
    )
    with pytest.raises(ValueError, match="valid estimators: amortised, banzhaf, c3, coma, dr_mas, grpo"):
        get_estimator("shaply")


def test_config_errors_name_the_knob_and_the_choices():
    with pytest.raises(ValueError, match="has no knob kapa; valid knobs: device, counterfactual, samples, method"):
        get_estimator("sharp").make_config({"kapa": 0.1})
    with pytest.raises(ValueError, match="row_stats 'episodes' is not valid; valid choices: steps, trajectories"):
        get_estimator("dr_mas").make_config({"row_stats": "episodes"})
    with pytest.raises(ValueError, match="knob d_max must be int"):
        get_estimator("m_grpo").make_config({"d_max": "four"})
    with pytest.raises(ValueError, match="device 'tpu' is not valid"):
        get_estimator("grpo").make_config({"device": "tpu"})
    with pytest.raises(ValueError, match="main_agent 5 is not an agent of a team of 3"):
        get_estimator("m_grpo")(random_batch(0, 3, 2), {"main_agent": 5})
    with pytest.raises(ValueError, match="reward 'tools' is neither 'team' nor a component"):
        get_estimator("dr_mas")(random_batch(0, 3, 2), {"reward": "tools"})


def test_missing_inputs_fail_with_the_fill_call_to_make():
    batch = random_batch(0, 3, 2)
    batch.coalition_values[1, 3] = float("nan")
    with pytest.raises(ValueError, match="episode 1 lacks; fill them first: fill_coalitions"):
        get_estimator("shapley")(batch)
    batch.alternative[0, :] = float("nan")
    batch.acted[0, 0] = True
    with pytest.raises(ValueError, match="fill_alternatives"):
        get_estimator("coma")(batch)
    batch.critic_share[2] = float("nan")
    with pytest.raises(ValueError, match="fill_critic"):
        get_estimator("llm_mca")(batch)
    with pytest.raises(ValueError, match="collect_tree"):
        get_estimator("c3")(batch, {"mode": "tree"})


def test_needs_declare_only_what_is_used():
    assert get_estimator("grpo").needs(None, 3) == Needs(groups=True)
    assert get_estimator("grpo").needs({"scale": "batch"}, 3) == Needs()
    assert get_estimator("shapley").needs(None, 3).coalitions == tuple(range(8))
    assert get_estimator("loo").needs(None, 3).coalitions == (7, 6, 5, 3)
    assert get_estimator("c3").needs({"mode": "tree"}, 3).tree_fanout == (2, 4)
    assert get_estimator("llm_mca").needs(None, 3).critic
    assert get_estimator("coma").needs({"samples": 3}, 3).alternatives == 3
    sampled = get_estimator("sharp").needs({"method": "sampled", "budget": 100}, 8)
    assert sampled.kind == "sampled" and 9 <= len(sampled.coalitions) <= 100


def test_cfg_forms_agree():
    from mas_credit.config import EstimatorConfig

    batch = random_batch(1, 3, 4)
    est = get_estimator("dr_mas")
    a = est(batch, {"row_stats": "trajectories", "device": "cpu"}).advantage
    b = est(batch, EstimatorConfig(name="dr_mas", device="cpu", params={"row_stats": "trajectories"})).advantage
    c = est(batch, est.Config(row_stats="trajectories", device="cpu")).advantage
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, est(batch).advantage.cpu()) or batch.n_turns == 1  # the default knobs (device auto)


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available on this machine; the CPU/CUDA comparison needs a GPU"
)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cuda_gives_the_cpu_numbers(name):
    est = get_estimator(name)
    for n_agents in (2, 5, 8):
        batch = random_batch(3, n_agents, 4)
        for variant in VARIANTS[name]:
            if variant.get("main_agent", 0) >= n_agents:
                continue
            cpu = est(batch, dict(variant, device="cpu"))
            gpu = est(batch, dict(variant, device="cuda"))
            assert gpu.credit.device.type == "cuda"
            torch.testing.assert_close(gpu.credit.cpu(), cpu.credit, atol=1e-5, rtol=0)
            torch.testing.assert_close(gpu.advantage.cpu(), cpu.advantage, atol=1e-5, rtol=0)


# -- no knob setting gives an advantage beyond +-1e3 on a shipped game ---------------------------------
KNOB_GRID = {
    "c3": {"mode": ["counterfactual", "tree"], "rows": ["nodes", "leaves"], "fanout": [(2, 2, 2)]},
    "coma": {"normalise": ["none", "agent"], "samples": [2]},
    "dr_mas": {
        "group_by_agent": [True, False],
        "row_stats": ["steps", "trajectories"],
        "norm_by_std": [True, False],
        "reward": ["team", "correct", "format", "parsed"],
    },
    "grpo": {"scale": ["group", "batch", "none"], "norm_by_std": [True, False]},
    "llm_mca": {"baseline": ["empty", "none"]},
    "uniform": {"baseline": ["empty", "none"]},
    "loo": {"normalise": ["none", "agent"]},
    "m_grpo": {
        "main_agent": [0, 2],
        "rewards": ["mrlx", "weighted"],
        "format_score": [0.1, 0.0],
        "d_max": [1, 4],
        "duplicate": ["valid", "any", "best"],
    },
    "shapley": {
        "method": ["exact", "sampled"],
        "budget": [6],
        "budget_per_agent": [0, 2],
        "antithetic": [True, False],
        "normalise": ["agent", "none"],
    },
    "sharp": {
        "method": ["exact", "sampled"],
        "budget": [6],
        "budget_per_agent": [0, 2],
        "antithetic": [True, False],
        "tool_component": ["auto", "none", "format", "correct"],
        "kappa": [0.0, 0.5],
        "w_team": [0.5, 0.0],
    },
    "kernelshap": {"budget": [0, 6], "budget_per_agent": [10, 2], "normalise": ["agent", "none"]},
    "svarm": {"budget": [0, 8], "budget_per_agent": [10, 3], "normalise": ["agent", "none"]},
    "banzhaf": {"budget": [0, 2], "budget_per_agent": [10, 1], "normalise": ["agent", "none"]},
    "loworder": {
        "budget": [0, 6],
        "budget_per_agent": [10, 2],
        "normalise": ["agent", "none"],
        "order": [1, 3],
        "screen": [3, 32],
        "max_terms": [0, 64],
        "min_gain": [0.05, 0.0],
    },
    "amortised": {
        "budget": [0, 4],
        "budget_per_agent": [10, 2],
        "normalise": ["agent", "none"],
        "prior_weight": [0.1, 0.0],
        "ridge": [1e-3],
        "select": [True, False],
    },
}
NOT_ARITHMETIC = {"device", "counterfactual", "samples", "seed", "eps", "a_format", "a_correct", "w_shapley", "w_tool"}
"""how the coalition values were obtained (replay or resample, k re-runs) does not change the arithmetic
on them; the weights and eps are numbers, not settings (the defaults are used)"""


def test_the_knob_grid_covers_every_setting():
    import dataclasses

    assert sorted(KNOB_GRID) == list_estimators()
    for name, grid in KNOB_GRID.items():
        fields = {f.name for f in dataclasses.fields(get_estimator(name).Config)}
        assert fields - NOT_ARITHMETIC - set(grid) == set(), name


@pytest.mark.parametrize("game_name", ["vault", "potluck", "lookout", "council", "relay", "orchestra", "rampart"])
def test_no_knob_setting_gives_an_advantage_beyond_1e3(game_name):
    import itertools

    from mas_credit.agents import ScriptedTeam
    from mas_credit.agents.critic import ScriptedCritic
    from mas_credit.counterfactual import fill_needs
    from mas_credit.estimators import Needs
    from mas_credit.games import make_game
    from mas_credit.rollout import collect, collect_tree
    from mas_credit.types import CreditBatch

    game = make_game(game_name, n_agents=3, difficulty=2, lazy_agents=[2])
    team = ScriptedTeam([0.8, 0.5, 0.6], malformed_rate=0.2, seed=1)
    flat = collect(game, team, n_tasks=4, group_size=3, seed=0)
    tree = collect_tree(game, team, n_tasks=2, fanout=(2, 2, 2), seed=0)
    for eps in (flat, tree):
        fill_needs(
            game,
            eps,
            Needs(coalitions=tuple(range(8)), kind="all", alternatives=2, critic=True),
            team=team,
            critic=ScriptedCritic(accuracy=0.7, malformed_rate=0.2),
        )
    batches = {"flat": CreditBatch.from_episodes(flat), "tree": CreditBatch.from_episodes(tree)}
    for name, grid in KNOB_GRID.items():
        est = get_estimator(name)
        for values in itertools.product(*grid.values()):
            knobs = dict(zip(grid, values), device="cpu")
            batch = batches["tree" if knobs.get("mode") == "tree" else "flat"]
            out = est(batch, knobs)
            for what, x in (("advantage", out.advantage), ("credit", out.credit)):
                assert torch.isfinite(x).all() and x.abs().max() <= 1e3, (name, knobs, what, float(x.abs().max()))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_no_float_knob_takes_nan_or_inf(name):
    """A rule over every float knob of every estimator (SHARP's `w_team: .nan` once gave all-NaN
    advantages and exit 0): NaN and inf are one-line errors naming the knob."""
    import dataclasses

    est = get_estimator(name)
    floats = [f.name for f in dataclasses.fields(est.Config) if isinstance(f.default, float)]
    for knob in floats:
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(ValueError, match=f"knob {knob} must be a finite number") as err:
                est.make_config({knob: bad})
            assert "\n" not in str(err.value)


def test_the_nan_rule_meets_the_float_knobs_that_exist():
    import dataclasses

    with_floats = {
        name
        for name in VARIANTS
        if any(isinstance(f.default, float) for f in dataclasses.fields(get_estimator(name).Config))
    }
    assert {"sharp", "m_grpo", "amortised", "loworder"} <= with_floats
