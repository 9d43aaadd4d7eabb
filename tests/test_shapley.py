"""Exact and sampled Shapley: the axioms on random coalition tables, an outside oracle
(shapiq's ExactComputer), and sampled Shapley's budget behaviour."""

import numpy as np
import pytest
import torch
from shapiq import ExactComputer

from mas_credit.estimators.shapley import exact_shapley, sample_permutations, sampled_shapley, shapley_weights

from .reference import shapley_by_subsets

SIZES = [2, 3, 4, 5, 6, 7, 8]


def tables(seed, n_agents, batch=6):
    return torch.tensor(
        np.random.default_rng([seed, n_agents]).normal(size=(batch, 1 << n_agents)), dtype=torch.float64
    )


@pytest.mark.parametrize("n_agents", SIZES)
@pytest.mark.parametrize("seed", [0, 1])
def test_axioms(seed, n_agents):
    values = tables(seed, n_agents)
    phi = exact_shapley(values)
    full = (1 << n_agents) - 1
    # efficiency
    torch.testing.assert_close(phi.sum(dim=1), values[:, full] - values[:, 0], atol=1e-12, rtol=0)
    # additivity
    other = tables(seed + 100, n_agents)
    torch.testing.assert_close(exact_shapley(values + other), phi + exact_shapley(other), atol=1e-12, rtol=0)
    # null player: make agent j's presence irrelevant -> exactly 0
    j = seed % n_agents
    masks = torch.arange(1 << n_agents)
    null = values[:, masks & ~(1 << j)]
    assert (exact_shapley(null)[:, j] == 0).all()
    # symmetry: a table invariant under swapping agents 0 and 1 gives them equal credit
    bit0, bit1 = (masks >> 0) & 1, (masks >> 1) & 1
    swapped = (masks & ~3) | (bit0 << 1) | bit1
    symmetric = (values + values[:, swapped]) / 2
    phi_sym = exact_shapley(symmetric)
    torch.testing.assert_close(phi_sym[:, 0], phi_sym[:, 1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("n_agents", SIZES)
def test_exact_equals_shapiq_oracle(n_agents):
    values = tables(7, n_agents, batch=3)
    phi = exact_shapley(values).numpy()
    weights = 1 << np.arange(n_agents)
    for b in range(values.shape[0]):
        table = values[b].numpy()

        def game(coalitions, table=table):
            return table[(coalitions.astype(np.int64) * weights).sum(axis=1)]

        oracle = ExactComputer(game, n_players=n_agents)("SV", order=1)
        np.testing.assert_allclose(phi[b], [oracle[(i,)] for i in range(n_agents)], atol=1e-10)


@pytest.mark.parametrize("n_agents", [2, 5, 8])
def test_matrix_product_and_subset_sum_agree(n_agents):
    values = tables(3, n_agents)
    torch.testing.assert_close(values @ shapley_weights(n_agents), exact_shapley(values), atol=1e-12, rtol=0)
    for b in range(values.shape[0]):
        np.testing.assert_allclose(
            exact_shapley(values)[b].numpy(), shapley_by_subsets(values[b].tolist(), n_agents), atol=1e-12
        )


@pytest.mark.parametrize("n_agents", [3, 5, 8])
def test_sampled_permutations_respect_the_budget_and_are_efficient(n_agents):
    values = tables(1, n_agents)
    for budget in (n_agents + 1, 2 * n_agents, 40, 100):
        perms, masks = sample_permutations(n_agents, budget, seed=0)
        assert len(masks) <= budget and len(perms) >= 1
        visited = {0}
        for perm in perms:
            m = 0
            for a in perm:
                m |= 1 << a
                visited.add(m)
        assert visited == set(masks), "needs() must list exactly the coalitions the permutations read"
        phi = sampled_shapley(values, perms)
        full = (1 << n_agents) - 1
        torch.testing.assert_close(phi.sum(dim=1), values[:, full] - values[:, 0], atol=1e-12, rtol=0)


def test_antithetic_pairs_are_reverses():
    perms, _ = sample_permutations(6, 60, seed=2, antithetic=True)
    assert len(perms) % 2 == 0
    for first, second in zip(perms[::2], perms[1::2]):
        assert second == first[::-1]


def test_budget_below_one_permutation_is_an_error():
    with pytest.raises(ValueError, match="budget >= N\\+1 = 6"):
        sample_permutations(5, 4)


def test_budget_of_every_coalition_gives_exact():
    from mas_credit.estimators import get_estimator

    from .batches import random_batch

    for n_agents in (3, 5):
        batch = random_batch(0, n_agents, 2)
        exact = get_estimator("shapley")(batch, {"device": "cpu"}).credit
        sampled = get_estimator("shapley")(
            batch, {"device": "cpu", "method": "sampled", "budget": 1 << n_agents}
        ).credit
        torch.testing.assert_close(sampled, exact, atol=0, rtol=0)


def test_sampled_error_falls_as_the_budget_grows():
    n_agents = 8
    values = tables(5, n_agents, batch=64)
    exact = exact_shapley(values)
    errors = []
    for budget in (16, 64, 200):
        rmse = []
        for seed in range(6):
            perms, _ = sample_permutations(n_agents, budget, seed=seed)
            rmse.append(float(((sampled_shapley(values, perms) - exact) ** 2).mean().sqrt()))
        errors.append(np.mean(rmse))
    assert errors[0] > errors[1] > errors[2], errors
