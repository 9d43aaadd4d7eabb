"""Credit at scale: the crew games' closed-form credit against enumeration (and shapiq's exact
computer), their PettingZoo conformance at 16..128 agents, the sparse coalition batch against the
dense one, and what every budgeted estimator promises: its budget kept, exactness where the method
claims it, unbiasedness where it claims that, one-line errors for bad budgets, and no 2**N
allocation anywhere at 64 agents."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test
from shapiq import ExactComputer

from mas_credit.agents import ScriptedTeam
from mas_credit.coalitions import bits_to_masks, full_mask, hashed_normal, mask_array, masks_to_bits
from mas_credit.counterfactual import fill_coalitions, fill_needs
from mas_credit.estimators import get_estimator
from mas_credit.estimators.shapley import exact_shapley
from mas_credit.games import make_game
from mas_credit.rollout import collect
from mas_credit.studies import _copies, ground_truth, null_players
from mas_credit.types import CreditBatch, Episode

CREW = [
    ("harvest", {}),
    ("squads", {}),
    ("squads", {"squad_size": 2}),
    ("beacons", {}),
    ("senate", {}),
    ("senate", {"max_weight": 9, "quota": 0.7}),
    ("convoy", {}),
    ("airport", {}),
    ("gloves", {}),
    ("projects", {}),
    ("projects", {"max_order": 2, "n_projects": 7}),
]
ORDER_TWO = [("harvest", {}), ("squads", {"squad_size": 2}), ("projects", {"max_order": 2})]
"""crew games whose every interaction is among at most two agents: paired methods are exact there"""
BUDGETED = ["shapley_sampled", "kernelshap", "svarm", "banzhaf", "loworder", "amortised"]


def episodes_of(name, params, n_agents, n_tasks=6, skill=0.7, seed=0, **game_kwargs):
    game = make_game(name, n_agents=n_agents, difficulty=2, **params, **game_kwargs)
    team = ScriptedTeam([skill] * n_agents, malformed_rate=0.1, seed=seed)
    return game, collect(game, team, n_tasks=n_tasks, group_size=2, seed=seed)


def estimator_and_config(name, **knobs):
    if name == "shapley_sampled":
        est = get_estimator("shapley")
        knobs = {"method": "sampled", **knobs}
    else:
        est = get_estimator(name)
    return est, est.make_config({"device": "cpu", **knobs})


def run(name, game, episodes, coalitions="auto", **knobs):
    est, cfg = estimator_and_config(name, **knobs)
    eps = _copies(episodes)
    needs = est.needs(cfg, game.n_agents)
    fill_needs(game, eps, needs)
    return est(CreditBatch.from_episodes(eps, coalitions=coalitions), cfg), needs


# -- the games' declared credit ---------------------------------------------------------------
@pytest.mark.parametrize("name,params", CREW)
@pytest.mark.parametrize("n_agents", [2, 3, 5, 8, 10])
def test_closed_form_credit_equals_enumeration(name, params, n_agents):
    lazy = [1] if n_agents > 2 else []
    game, episodes = episodes_of(name, params, n_agents, lazy_agents=lazy)
    eps = _copies(episodes)
    fill_coalitions(game, eps, "all")
    values = CreditBatch.from_episodes(eps).coalition_values
    for b, ep in enumerate(episodes):
        np.testing.assert_allclose(game.shapley(ep), exact_shapley(values)[b].numpy(), atol=1e-12, rtol=0)
        assert (game.null_players(ep) == null_players(values)[b].numpy()).all()
        assert game.team_values(ep, [full_mask(n_agents)])[0] == pytest.approx(ep.reward, abs=1e-12)
        assert np.all(game.shapley(ep)[lazy] == 0.0)


@pytest.mark.parametrize("name,params", CREW)
def test_closed_form_credit_equals_shapiq_exact_at_12(name, params):
    n_agents = 12
    game, episodes = episodes_of(name, params, n_agents, n_tasks=2)
    for ep in episodes[:2]:
        oracle = ExactComputer(lambda coalitions, ep=ep: game.team_values(ep, coalitions.astype(bool)), n_agents)
        values = oracle("SV", order=1)
        np.testing.assert_allclose(game.shapley(ep), [values[(i,)] for i in range(n_agents)], atol=1e-10)


@pytest.mark.parametrize("name,params", CREW[::2] + [CREW[5]])
@pytest.mark.parametrize("n_agents", [16, 32, 64, 128])
def test_crew_games_pass_the_pettingzoo_api_test_at_scale(name, params, n_agents):
    game = make_game(name, n_agents=n_agents, difficulty=3, lazy_agents=[n_agents - 1], **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # api_test warns that text observations are not numpy arrays
        parallel_api_test(game, num_cycles=3)
        parallel_seed_test(lambda: make_game(name, n_agents=n_agents, **params), num_cycles=3)


@pytest.mark.parametrize("name,params", CREW)
def test_at_64_agents_credit_is_efficient_and_lazy_agents_get_zero(name, params):
    game, episodes = episodes_of(name, params, 64, n_tasks=3, lazy_agents=[5, 63])
    for ep in episodes:
        phi = game.shapley(ep)
        v_empty = game.team_values(ep, [0])[0]
        assert phi.sum() == pytest.approx(ep.reward - v_empty, abs=1e-9)
        assert phi[5] == 0.0 and phi[63] == 0.0 and game.null_players(ep)[[5, 63]].all()


def test_convoy_charges_the_slow_truck_and_senate_pays_the_heavy_voter():
    convoy = make_game("convoy", n_agents=4)
    convoy.reset(seed=0)
    digits = convoy.task["digits"]
    texts = {a: f"DIGIT: {d}" for a, d in zip(convoy.possible_agents, digits)}
    texts["agent_3"] = f"DIGIT: {(digits[3] + 5) % 10}"  # off by 5: pace 0.5
    convoy.step(texts)
    ep = convoy.episode()
    phi = convoy.shapley(ep)
    assert ep.reward == pytest.approx(0.5) and phi[3] < 0 < phi[0] == phi[1] == phi[2]
    senate = make_game("senate", n_agents=5)
    senate.reset(seed=1)
    senate.step({a: f"DIGIT: {d}" for a, d in zip(senate.possible_agents, senate.task["digits"])})
    ep = senate.episode()
    weights = np.array(senate.task["weights"])
    phi = senate.shapley(ep)
    assert ep.reward == 1.0 and phi.sum() == pytest.approx(1.0)
    assert all(phi[i] >= phi[j] - 1e-12 for i in range(5) for j in range(5) if weights[i] > weights[j])


# -- coalitions at any width --------------------------------------------------------------------
@pytest.mark.parametrize("n_agents", [3, 62, 63, 64, 100, 128])
def test_masks_and_presence_rows_round_trip_at_any_width(n_agents):
    rng = np.random.default_rng(n_agents)
    bits = rng.random((50, n_agents)) < 0.5
    masks = bits_to_masks(bits)
    assert all(0 <= m <= full_mask(n_agents) for m in masks)
    assert (masks_to_bits(masks, n_agents) == bits).all()
    assert (masks_to_bits(mask_array(masks, n_agents), n_agents) == bits).all()
    by_hand = [sum(1 << i for i in range(n_agents) if row[i]) for row in bits]
    assert masks == by_hand


def test_known_noise_is_a_fixed_draw_per_episode_and_coalition():
    masks = [0, 5, 1 << 70, (1 << 70) | 5]
    first, again = hashed_normal(masks, 11), hashed_normal(masks[::-1], 11)[::-1]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, hashed_normal(masks, 12))
    draws = hashed_normal(list(range(20000)), 3)
    assert abs(draws.mean()) < 0.03 and abs(draws.std() - 1.0) < 0.03


def test_fill_with_noise_adds_the_same_known_draw_and_zero_noise_changes_nothing():
    game, episodes = episodes_of("projects", {}, 16, n_tasks=2)
    masks = [0, 3, 1 << 15, full_mask(16)]
    clean, noisy, again = _copies(episodes), _copies(episodes), _copies(episodes)
    fill_coalitions(game, clean, masks)
    fill_coalitions(game, noisy, masks, noise=0.1)
    fill_coalitions(game, again, masks[::-1], noise=0.1)
    for c, n, a in zip(clean, noisy, again):
        diffs = np.array([n.coalition_values[m] - c.coalition_values[m] for m in masks])
        assert np.all(diffs != 0) and np.abs(diffs).max() < 1.0
        assert all(n.coalition_values[m] == a.coalition_values[m] for m in masks)
    with pytest.raises(ValueError, match="noise must be a finite number"):
        fill_coalitions(game, _copies(episodes), masks, noise=float("nan"))


# -- the sparse batch ---------------------------------------------------------------------------
SPARSE_CASES = [
    ("shapley", {}),
    ("shapley", {"method": "sampled", "budget": 20}),
    ("sharp", {"method": "sampled", "budget": 20}),
    ("loo", {}),
    ("c3", {}),
    ("uniform", {}),
    ("kernelshap", {}),
    ("svarm", {}),
    ("banzhaf", {}),
    ("loworder", {}),
    ("amortised", {}),
]


@pytest.mark.parametrize("name,knobs", SPARSE_CASES)
@pytest.mark.parametrize("game_name,n_agents", [("vault", 3), ("potluck", 5), ("projects", 8), ("senate", 6)])
def test_sparse_and_dense_batches_give_the_same_numbers(name, knobs, game_name, n_agents):
    game, episodes = episodes_of(game_name, {}, n_agents)
    est = get_estimator(name)
    cfg = est.make_config({"device": "cpu", **knobs})
    eps = _copies(episodes)
    fill_needs(game, eps, est.needs(cfg, n_agents))
    dense, sparse = (CreditBatch.from_episodes(eps, coalitions=kind) for kind in ("dense", "sparse"))
    assert dense.is_dense and not sparse.is_dense and sparse.coalition_values is None
    assert sparse.coalition_table.shape[1] == len(est.needs(cfg, n_agents).coalitions)
    a, b = est(dense, cfg), est(sparse, cfg)
    torch.testing.assert_close(a.credit, b.credit, atol=1e-12, rtol=0)
    torch.testing.assert_close(a.advantage, b.advantage, atol=1e-12, rtol=0)


def test_a_sparse_batch_reads_gaps_as_nan_and_holds_the_union_of_coalitions():
    game, episodes = episodes_of("harvest", {}, 40, n_tasks=2)
    eps = _copies(episodes)
    fill_coalitions(game, eps[:2], [0, 7])
    fill_coalitions(game, eps[2:], [0, 1 << 39])
    batch = CreditBatch.from_episodes(eps)
    assert not batch.is_dense and batch.coalition_keys == (0, 7, 1 << 39)
    assert batch.coalition_masks.shape == (3, 40) and batch.coalition_masks[2, 39] and not batch.coalition_masks[2, 0]
    values = batch.values_at([7, 1 << 39, 12345])
    assert not torch.isnan(values[:2, 0]).any() and torch.isnan(values[2:, 0]).all()
    assert torch.isnan(values[:2, 1]).all() and torch.isnan(values[:, 2]).all()
    assert batch.evaluated_counts().tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="dense form stops at 10 agents"):
        CreditBatch.from_episodes(eps, coalitions="dense")


# -- budgets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUDGETED)
@pytest.mark.parametrize("n_agents,per_agent", [(4, 2), (8, 4), (16, 2), (16, 10), (64, 10), (128, 4)])
def test_every_budgeted_estimator_spends_no_more_than_its_budget(name, n_agents, per_agent):
    budget = per_agent * n_agents
    minimum = {"svarm": 2 * n_agents + 2, "kernelshap": 2 * n_agents, "loworder": 2 * n_agents}.get(name, 0)
    if budget < minimum or budget > 1 << n_agents:
        return
    game, episodes = episodes_of("harvest", {}, n_agents, n_tasks=2)
    out, needs = run(name, game, episodes, budget=budget)
    spent = len(needs.coalitions)
    assert spent == len(set(needs.coalitions)) <= budget
    assert spent >= budget - (n_agents + 1)  # it spends what it was given (a permutation's worth at most left)
    evals = fill_needs(game, _copies(episodes), needs)["cf/evals"]
    assert evals == spent * len(episodes)
    assert torch.isfinite(out.credit).all()


@pytest.mark.parametrize("name,params", ORDER_TWO)
@pytest.mark.parametrize("n_agents", [8, 16, 64])
@pytest.mark.parametrize("estimator", ["shapley_sampled", "kernelshap", "loworder"])
def test_paired_methods_are_exact_on_order_two_games_at_their_minimum_budget(name, params, n_agents, estimator):
    """One antithetic pair of permutations (2N coalitions), or N - 1 complementary pairs of the
    regression with the empty and grand coalitions (2N), already give the exact Shapley value of a
    game whose interactions involve at most two agents."""
    game, episodes = episodes_of(name, params, n_agents)
    out, needs = run(estimator, game, episodes, budget=2 * n_agents)
    assert len(needs.coalitions) <= 2 * n_agents
    truth = np.stack([game.shapley(ep) for ep in episodes])
    np.testing.assert_allclose(out.credit.numpy(), truth, atol=1e-9)


@pytest.mark.parametrize("estimator", ["svarm", "banzhaf"])
def test_the_unpaired_methods_are_not_exact_there(estimator):
    """The same games and budgets leave SVARM and MSR-Banzhaf with sampling error: the exactness
    above is the pairing's, not the games' being easy."""
    game, episodes = episodes_of("projects", {"max_order": 2}, 16)
    out, _ = run(estimator, game, episodes, budget=40)
    truth = np.stack([game.shapley(ep) for ep in episodes])
    assert np.abs(out.credit.numpy() - truth).max() > 1e-3


@pytest.mark.parametrize("name,params", ORDER_TWO)
@pytest.mark.parametrize("n_agents", [8, 16, 64])
def test_amortised_is_exact_on_order_two_games_once_its_cross_validation_drops_the_prior(name, params, n_agents):
    game, episodes = episodes_of(name, params, n_agents)
    out, _ = run("amortised", game, episodes, budget=4 * n_agents)
    truth = np.stack([game.shapley(ep) for ep in episodes])
    np.testing.assert_allclose(out.credit.numpy(), truth, atol=1e-9)
    assert out.metrics["amortised/prior_weight"] == 0.0


@pytest.mark.parametrize("per_agent", [0.25, 0.5, 1.0])
def test_amortised_credits_every_agent_below_two_n_evaluations(per_agent):
    """Sublinear: at N/4 to N evaluations per episode (64 agents: 16 to 64 coalitions) every agent of
    every episode gets a finite credit that sums to v(N) - v(empty), and the shared model beats
    sharing R - v(empty) equally (the budget-free baseline) on the additive game."""
    n_agents = 64
    game, episodes = episodes_of("harvest", {}, n_agents, n_tasks=16)
    out, needs = run("amortised", game, episodes, budget=int(per_agent * n_agents))
    assert len(needs.coalitions) <= per_agent * n_agents
    truth = np.stack([game.shapley(ep) for ep in episodes])
    credit = out.credit.numpy()
    np.testing.assert_allclose(credit.sum(axis=1), truth.sum(axis=1), atol=1e-9)  # efficient: truth sums to it too
    equal = np.repeat(truth.sum(axis=1, keepdims=True) / n_agents, n_agents, axis=1)
    assert np.sqrt(((credit - truth) ** 2).mean()) < 0.8 * np.sqrt(((equal - truth) ** 2).mean())


def test_loworder_is_exact_on_the_order_three_projects_game_at_64_agents():
    game, episodes = episodes_of("projects", {}, 64, n_tasks=4, skill=0.8)
    out, needs = run("loworder", game, episodes, budget=640)
    truth = np.stack([game.shapley(ep) for ep in episodes])
    assert len(needs.coalitions) <= 640
    np.testing.assert_allclose(out.credit.numpy(), truth, atol=1e-8)
    assert out.metrics["loworder/terms"] > 0  # it found three-agent terms: order 1 alone is not exact
    order_one, _ = run("loworder", game, episodes, budget=640, order=1)
    assert np.abs(order_one.credit.numpy() - truth).max() > 1e-3


def test_loworder_of_order_one_is_paired_kernelshap_on_its_design():
    from mas_credit.estimators.sampling import kernelshap, loworder

    game, episodes = episodes_of("senate", {}, 12)
    est, cfg = estimator_and_config("loworder", order=1, budget=60)
    masks, counts = loworder._design(12, 60, 0)
    eps = _copies(episodes)
    fill_coalitions(game, eps, list(masks))
    batch = CreditBatch.from_episodes(eps)
    by_kernel = batch.values_at(masks) @ _kernel_matrix_of(kernelshap, masks, counts, 12)
    torch.testing.assert_close(est(batch, cfg).credit, by_kernel, atol=1e-9, rtol=0)


def _kernel_matrix_of(kernelshap, masks, counts, n_agents):
    """kernelshap's projection solution on another design (monkeypatched in, then restored)."""
    saved = kernelshap._design
    try:
        kernelshap._design = lambda n, b, s: (masks, counts)
        kernelshap.kernel_matrix.cache_clear()
        return kernelshap.kernel_matrix(n_agents, 0, 0)
    finally:
        kernelshap._design = saved
        kernelshap.kernel_matrix.cache_clear()


def _banzhaf_by_enumeration(game, ep, n_agents):
    values = game.team_values(ep, np.arange(1 << n_agents))
    beta = np.zeros(n_agents)
    for i in range(n_agents):
        without = [m for m in range(1 << n_agents) if not m >> i & 1]
        beta[i] = np.mean([values[m | (1 << i)] - values[m] for m in without])
    return beta


@pytest.mark.parametrize("estimator", ["shapley_sampled", "svarm", "banzhaf"])
def test_the_unbiased_methods_average_to_their_value_over_designs(estimator):
    """Over many design seeds the estimate's mean is the exact value (Shapley; Banzhaf for banzhaf),
    within 4 standard errors for every agent of a weighted voting game of 7 (an order-7 game). SVARM
    promises it where every stratum is reached (an unreached one is interpolated, and counted): its
    designs that left one empty are set aside (a condition on the draws alone, not on the values)."""
    n_agents = 7
    game, episodes = episodes_of("senate", {"max_weight": 4}, n_agents, n_tasks=1, skill=0.9)
    ep = episodes[0]
    truth = _banzhaf_by_enumeration(game, ep, n_agents) if estimator == "banzhaf" else game.shapley(ep)
    draws = []
    for seed in range(300):
        out, _ = run(estimator, game, [ep], budget=64, seed=seed)
        if out.metrics.get("svarm/empty_strata", 0.0) == 0.0:
            draws.append(out.credit[0].numpy())
    assert len(draws) >= 150
    draws = np.array(draws)
    error = np.abs(draws.mean(axis=0) - truth)
    standard_error = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.all(error <= 4 * standard_error + 1e-12), (error, standard_error)
    assert draws.std(axis=0).max() > 1e-3  # the designs differ: a real average, not one value 300 times


@pytest.mark.parametrize(
    "name,knobs,n_agents,match",
    [
        ("kernelshap", {"budget": 10}, 8, "budget gives 10 coalitions per episode, below its minimum 16"),
        (
            "loworder",
            {"budget_per_agent": 1},
            16,
            r"budget_per_agent \(1 x 16 agents\) gives 16 .* below its minimum 32",
        ),
        ("svarm", {"budget": 20}, 16, "below its minimum 34 .*warm-up"),
        ("banzhaf", {"budget": 1}, 4, "below its minimum 2"),
        ("amortised", {"budget": 3}, 16, "below its minimum 4"),
        ("kernelshap", {"budget": 300}, 8, "budget 300 is more coalitions per episode than the 2\\*\\*8 = 256"),
        ("svarm", {}, 2, "needs at least 3 agents"),
        ("shapley", {"method": "exact"}, 40, "all 2\\*\\*40 .* beyond the 20-agent limit of enumeration"),
    ],
)
def test_a_bad_budget_or_team_size_is_one_line_naming_the_knob(name, knobs, n_agents, match):
    est = get_estimator(name)
    with pytest.raises(ValueError, match=match) as err:
        est.needs({"device": "cpu", **knobs}, n_agents)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["kernelshap", "svarm", "banzhaf", "loworder", "amortised"])
def test_a_non_integer_budget_is_one_line_naming_the_knob(name):
    with pytest.raises(ValueError, match="knob budget must be int"):
        get_estimator(name).make_config({"budget": 6.5})
    with pytest.raises(ValueError, match="budget must be >= 0"):
        get_estimator(name).make_config({"budget": -3})


@pytest.mark.reliability(
    "a coalition budget below an estimator's minimum, above 2**N or not an integer",
    "one line naming the knob and the minimum (or 2**N); exit 2, before any rollout",
)
def test_a_bad_budget_is_exit_code_2_on_the_cli_before_anything_runs(run_main, tmp_path):
    code, out, err = run_main(
        "study",
        "experiments/study_quickstart.yaml",
        "games=[{use: projects, n_agents: 16}]",
        "team.skills=[0.8]",
        "estimators=[{use: kernelshap, params: {budget: 20}}]",
        "--out",
        str(tmp_path / "study"),
    )
    assert code == 2 and "estimators.0" in err and "below its minimum 32" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "study").exists()


# -- no 2**N anywhere ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_agents", [64, 128])
def test_no_allocation_grows_as_two_to_the_n(n_agents):
    """Rollout, counterfactual fill, the batch, the ground truth and every coalition estimator at 64
    and 128 agents (2**64 of anything would not fit in memory): every tensor is at most B x (budget,
    turns or agents) wide."""
    game, episodes = episodes_of("projects", {}, n_agents, n_tasks=4)
    truth, nulls, v_empty = ground_truth(game, episodes)
    assert truth.shape == nulls.shape == (len(episodes), n_agents)
    budget = 4 * n_agents
    names = BUDGETED + ["loo", "c3", "uniform", "grpo"]
    for name in names:
        est, cfg = estimator_and_config(name, budget=budget) if name in BUDGETED else estimator_and_config(name)
        eps = _copies(episodes)
        fill_needs(game, eps, est.needs(cfg, n_agents))
        batch = CreditBatch.from_episodes(eps)
        assert not batch.is_dense and batch.coalition_table.shape[1] <= budget
        widest = max(
            t.numel() // max(1, t.shape[0])
            for t in (batch.coalition_table, batch.coalition_masks, batch.turn_agent, batch.acted)
        )
        assert widest <= max(budget, n_agents) * n_agents
        out = est(batch, cfg)
        assert out.credit.shape == (len(episodes), n_agents) and torch.isfinite(out.credit).all()


def test_a_study_at_64_agents_scores_against_the_closed_form_truth(tmp_path):
    import pandas as pd

    from mas_credit.config import load_experiment
    from mas_credit.studies import run_study

    cfg = load_experiment(
        "experiments/study_quickstart.yaml",
        [
            "games=[{use: projects, n_agents: 64}]",
            "team.skills=[0.8]",
            "seeds=[0]",
            "n_tasks=2",
            "group_size=2",
            "estimators=[grpo,loo,kernelshap,{use: loworder, params: {budget_per_agent: 10}}]",
        ],
    )
    run_dir = run_study(cfg, out_dir=tmp_path / "study", progress=False)
    frame = pd.read_parquet(run_dir / "credit.parquet")
    game = make_game("projects", n_agents=64)
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    episodes = [
        Episode.from_dict({k: v for k, v in json.loads(line).items() if k not in ("seed", "episode")}) for line in lines
    ]
    truth = np.stack([game.shapley(ep) for ep in episodes])
    mine = frame[frame.estimator == "loworder"].sort_values(["episode", "agent"])
    np.testing.assert_allclose(mine["truth"].to_numpy().reshape(-1, 64), truth, atol=1e-12)
    np.testing.assert_allclose(mine["credit"].to_numpy(), mine["truth"].to_numpy(), atol=1e-8)
    summary = (run_dir / "summary.md").read_text()
    assert "nrmse" in summary and "`loworder`" in summary


def test_the_frontier_marks_estimators_that_no_other_beats_on_both_counts(tmp_path, monkeypatch):
    """Spending no more and learning no less, one of the two strictly, dominates; a tie in both does not."""
    import pandas as pd

    import mas_credit.batch as batch

    runs = [("a", 0, 0.2), ("b", 10, 0.9), ("c", 20, 0.9), ("d", 30, 0.95), ("e", 5, 0.1), ("f", 10, 0.9)]
    ok = pd.DataFrame(
        [
            {"run": f"r{k}", "game": "g", "estimator": e, "coalition_evals": float(c), "episodes": 10.0}
            | {"learner_correct": v, "eval_success": 0.0}
            for k, (e, c, v) in enumerate(runs)
        ]
    )
    monkeypatch.setattr(batch, "read_metrics", lambda run_dir: ([], []))
    lines = batch.compute_frontier(tmp_path, ok, ["game", "estimator"])
    marks = {
        line.split("|")[2].strip(): line.rstrip().endswith("| yes |") for line in lines if line.startswith("| g |")
    }
    assert marks == {"a": True, "b": True, "c": False, "d": True, "e": False, "f": True}


def test_one_skill_serves_every_agent_and_repeat_makes_a_large_mixed_team():
    from mas_credit.agents import load_team, plain_members
    from mas_credit.config import ConfigError, load_experiment

    cfg = load_experiment(
        "experiments/study_quickstart.yaml",
        ["games=[{use: beacons, n_agents: 40}]", "team.skills=[0.7]", "estimators=[loo]"],
    )
    team = load_team(cfg.team, n_agents=40)
    assert team.skills == [0.7] * 40
    members = plain_members([{"kind": "tabular", "lr": 0.5, "repeat": 3}, {"kind": "scripted", "skill": 0.6}])
    assert members == [{"kind": "tabular", "lr": 0.5}] * 3 + [{"kind": "scripted", "skill": 0.6}]
    with pytest.raises(ValueError, match="team.members.0.repeat must be an integer >= 1"):
        plain_members([{"kind": "tabular", "repeat": 0}])
    with pytest.raises(ConfigError, match="team.members has 64 members but games.0 .* n_agents=32"):
        load_experiment("experiments/learn_scale_run.yaml", ["games=[{use: harvest, n_agents: 32}]", "team=tabular_64"])


def test_coalition_noise_reaches_the_estimators_and_never_the_truth(tmp_path):
    import pandas as pd

    from mas_credit.config import ConfigError, load_experiment
    from mas_credit.studies import run_study

    base = ["games=[{use: harvest, n_agents: 16}]", "team.skills=[0.8]", "seeds=[0]", "n_tasks=2", "group_size=2"]
    frames = {}
    for noise in (0.0, 0.05):
        cfg = load_experiment(
            "experiments/study_quickstart.yaml", [*base, "estimators=[loo]", f"coalition_noise={noise}"]
        )
        frames[noise] = pd.read_parquet(
            run_study(cfg, out_dir=tmp_path / str(noise), progress=False) / "credit.parquet"
        )
    assert (frames[0.0]["truth"] == frames[0.05]["truth"]).all()
    assert (frames[0.0]["credit"] != frames[0.05]["credit"]).any()
    for bad in ("nan", "-0.1", "inf"):
        with pytest.raises(ConfigError, match="coalition_noise must be a finite number"):
            load_experiment("experiments/study_quickstart.yaml", [f"coalition_noise={bad}"])


def test_play_shows_64_agents_with_the_closed_form_truth(run_main):
    code, out, err = run_main("play", "projects", "--n-agents", "64", "--estimators", "loworder,svarm")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.startswith("agent_")]
    assert len(rows) == 64 and "sum of Shapley" in out
    code, out, err = run_main("play", "projects", "--n-agents", "64", "--estimators", "svarm", "--skills", "0.5")
    assert code == 2


def test_the_enumerated_ground_truth_past_the_dense_batch_form_equals_the_closed_form():
    """A game of 11..20 agents with no closed form is enumerated for the truth (its table built for
    the truth only); here a crew game made to look like one, against its own closed form."""
    game = make_game("projects", n_agents=12)
    episodes = collect(game, ScriptedTeam([0.7] * 12, seed=3), n_tasks=2, group_size=2, seed=3)
    closed, nulls, v_empty = ground_truth(game, episodes)
    game.closed_form_credit = False  # the instance only
    phi, enumerated_nulls, enumerated_empty = ground_truth(game, episodes)
    torch.testing.assert_close(phi, closed, atol=1e-9, rtol=0)
    assert torch.equal(enumerated_nulls, nulls) and torch.equal(enumerated_empty, v_empty)
    assert all(not ep.coalition_values for ep in episodes)  # computed on copies
