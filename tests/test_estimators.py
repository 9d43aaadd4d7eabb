"""Every vectorised estimator equals its slow reference (tests/reference.py) on random
batches: seeds x N in 2..8 x group sizes (1 included) x agents that never act; plus the
registry, config handling, and the same numbers on CUDA where it exists."""
import numpy as np
import pytest
import torch

from mas_credit.estimators import get_estimator, list_estimators, register_estimator, Needs
from mas_credit.estimators.m_grpo import alignment_draws

from . import reference
from .batches import random_batch

SEEDS = [0, 1, 2, 3]
SIZES = [2, 3, 4, 5, 6, 7, 8]
GROUPS = [1, 2, 4]

VARIANTS = {
    "grpo": [{}, {"scale": "batch"}, {"scale": "none"}, {"norm_by_std": False}],
    "dr_mas": [{}, {"row_stats": "trajectories"}, {"group_by_agent": False}, {"norm_by_std": False},
               {"reward": "correct"}, {"group_by_agent": False, "row_stats": "trajectories"}],
    "m_grpo": [{}, {"d_max": 1}, {"d_max": 6, "duplicate": "any"}, {"duplicate": "best", "main_agent": 1}],
    "shapley": [{}, {"normalise": "none"}, {"method": "sampled", "budget": 40}, {"method": "sampled", "budget": 12, "antithetic": False}],
    "sharp": [{}, {"kappa": 0.5}, {"method": "sampled", "budget": 40, "tool_component": "format"}, {"tool_component": "none"}],
    "loo": [{}, {"normalise": "agent"}],
    "c3": [{}],
    "coma": [{}, {"normalise": "agent"}],
    "llm_mca": [{}],
}
REFERENCES = {"grpo": reference.grpo, "dr_mas": reference.dr_mas, "shapley": reference.shapley, "sharp": reference.sharp,
              "loo": reference.loo, "c3": reference.c3_counterfactual, "coma": reference.coma, "llm_mca": reference.llm_mca}


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
    for variant in VARIANTS[name]:
        if variant.get("main_agent", 0) >= n_agents:
            continue
        cfg = est.make_config(dict(variant, device="cpu"))
        out = est(batch, cfg)
        credit, adv = run_reference(name, batch, cfg)
        assert out.credit.shape == (batch.batch_size, n_agents)
        assert out.advantage.shape == (batch.batch_size, batch.n_turns)
        np.testing.assert_allclose(out.credit.numpy(), np.array(credit), atol=1e-9, err_msg=f"{name} {variant} credit")
        np.testing.assert_allclose(out.advantage.numpy(), np.array(adv), atol=1e-9, err_msg=f"{name} {variant} advantage")
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
    with pytest.raises(ValueError, match="valid estimators: c3, coma, dr_mas, grpo"):
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
    batch.coalition[1, 3] = float("nan")
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
    assert not torch.equal(a, est(batch).advantage.cpu()) or batch.n_turns == 1      # the default knobs (device auto)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine; the CPU/CUDA comparison needs a GPU")
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
