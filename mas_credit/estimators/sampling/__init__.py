"""The budgeted coalition estimators (credit at scale): each spends at most `budget` (or
`budget_per_agent` x N) distinct coalition evaluations per episode, on a design drawn once per
batch. `shapley` with `method: sampled` (antithetic permutations) is the family's first member and
lives in `estimators/shapley.py`; these are the rest. shapiq's approximators (shapiq
`approximator/{montecarlo,regression,permutation}/`) are the same family, run beside them in
`benchmarks/scale.py`.
"""

from mas_credit.estimators.sampling import amortised, banzhaf, kernelshap, loworder, svarm  # noqa: F401
