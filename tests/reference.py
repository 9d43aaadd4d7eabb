"""Slow, obvious references for every estimator: plain Python loops over lists and
dicts, written from docs/estimators.md without looking at the vectorised code. Tests
compare the torch estimators with these; benchmarks/estimators.py times both.

Each takes a CreditBatch (read through .tolist()) and the estimator's Config and
returns (credit [B][N], advantage [B][T]) as nested lists.
"""

from __future__ import annotations

import math
from collections import defaultdict

EPS = 1e-6


def _lists(batch):
    return dict(
        reward=batch.reward.tolist(),
        group=batch.group.tolist(),
        acted=batch.acted.tolist(),
        turn_agent=batch.turn_agent.tolist(),
        turn_valid=batch.turn_valid.tolist(),
        turn_format=batch.turn_format.tolist(),
    )


def mean_std(values):
    """verl/DrMAS convention: a single value gets mean 0, std 1; std unbiased."""
    if len(values) == 1:
        return 0.0, 1.0
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def shapley_by_subsets(values, n):
    """phi_i = sum_{S not containing i} |S|!(N-|S|-1)!/N! (v(S u i) - v(S))."""
    phi = [0.0] * n
    for i in range(n):
        for s in range(1 << n):
            if s >> i & 1:
                continue
            size = bin(s).count("1")
            w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            phi[i] += w * (values[s | (1 << i)] - values[s])
    return phi


def shapley_by_permutations(values, perms):
    n = len(perms[0])
    phi = [0.0] * n
    for perm in perms:
        mask = 0
        for agent in perm:
            phi[agent] += values[mask | (1 << agent)] - values[mask]
            mask |= 1 << agent
    return [p / len(perms) for p in phi]


def agent_norm(x, group, acted, eps=EPS):
    """x [B][N] -> normalised per (group, agent) over the episodes where the agent acted."""
    pools = defaultdict(list)
    for b, row in enumerate(x):
        for i, v in enumerate(row):
            if acted[b][i]:
                pools[(group[b], i)].append(v)
    out = []
    for b, row in enumerate(x):
        out_row = []
        for i, v in enumerate(row):
            if not acted[b][i]:
                out_row.append(0.0)
                continue
            mean, std = mean_std(pools[(group[b], i)])
            out_row.append((v - mean) / (std + eps))
        out.append(out_row)
    return out


def on_turns(per_agent, turn_agent):
    return [[per_agent[b][a] if a >= 0 else 0.0 for a in turns] for b, turns in enumerate(turn_agent)]


def grpo(batch, cfg):
    d = _lists(batch)
    credit = [[r if acted else 0.0 for acted in row] for r, row in zip(d["reward"], d["acted"])]
    pools = defaultdict(list)
    for b, r in enumerate(d["reward"]):
        pools[d["group"][b] if cfg.scale == "group" else 0].append(r)
    adv = []
    for b, r in enumerate(d["reward"]):
        if cfg.scale == "none":
            a = r
        else:
            mean, std = mean_std(pools[d["group"][b] if cfg.scale == "group" else 0])
            a = (r - mean) / (std + cfg.eps) if cfg.norm_by_std else r - mean
        adv.append([a if agent >= 0 else 0.0 for agent in d["turn_agent"][b]])
    return credit, adv


def dr_mas(batch, cfg):
    """Written after DrMAS' compute_grpo_outcome_advantage: rows, traj_accumulator, id2score."""
    d = _lists(batch)
    n = batch.n_agents
    comp = batch.components[cfg.reward].tolist() if cfg.reward != "team" else None
    rows = []  # (b, t, key, score)
    for b, turns in enumerate(d["turn_agent"]):
        for t, agent in enumerate(turns):
            if agent < 0:
                continue
            score = d["reward"][b] if comp is None else comp[b][agent]
            key = (d["group"][b], agent) if cfg.group_by_agent else d["group"][b]
            rows.append((b, t, key, score))
    if cfg.row_stats == "trajectories":  # a trajectory (key, episode) is one sample: the mean of its rows
        traj = defaultdict(list)
        for b, t, key, score in rows:
            traj[(key, b)].append(score)
        rows = [(b, t, key, sum(traj[(key, b)]) / len(traj[(key, b)])) for b, t, key, _ in rows]
        id2score = defaultdict(list)
        for (key, b), scores in traj.items():
            id2score[key].append(sum(scores) / len(scores))
    else:
        id2score = defaultdict(list)
        for b, t, key, score in rows:
            id2score[key].append(score)
    adv = [[0.0] * batch.n_turns for _ in range(batch.batch_size)]
    for b, t, key, score in rows:
        mean, std = mean_std(id2score[key])
        adv[b][t] = (score - mean) / (std + cfg.eps) if cfg.norm_by_std else score - mean
    credit = [[r if a else 0.0 for a in row] for r, row in zip(d["reward"], d["acted"])]
    assert len(credit[0]) == n
    return credit, adv


def m_grpo(batch, cfg, drop, pick):
    """drop [B][T], pick [B][D]: the same uniform draws the estimator uses."""
    d = _lists(batch)
    m = cfg.main_agent
    comps = {k: v.tolist() for k, v in batch.components.items()}
    if "format" in comps and "correct" in comps and cfg.rewards == "weighted":
        r_main = [
            cfg.a_format * comps["format"][b][m] + cfg.a_correct * comps["correct"][b][m]
            for b in range(batch.batch_size)
        ]
    elif "format" in comps and "correct" in comps:  # mrlx: 1 / format_score / 0
        r_main = [
            (1.0 if comps["correct"][b][m] >= 1 else cfg.format_score) if comps["format"][b][m] >= 1 else 0.0
            for b in range(batch.batch_size)
        ]
    else:
        r_main = list(d["reward"])

    def sub_reward(b, t):
        if cfg.rewards == "weighted":
            return r_main[b] if d["turn_valid"][b][t] else 0.0
        if not d["turn_format"][b][t]:
            return 0.0
        return cfg.format_score if r_main[b] == 0 else r_main[b] if r_main[b] == cfg.format_score else 1.0

    pools = defaultdict(list)
    for b, r in enumerate(r_main):
        pools[d["group"][b]].append(r)
    main_adv = [
        (r - mean_std(pools[d["group"][b]])[0]) / (mean_std(pools[d["group"][b]])[1] + cfg.eps)
        for b, r in enumerate(r_main)
    ]

    weight = [[0] * batch.n_turns for _ in range(batch.batch_size)]
    for b, turns in enumerate(d["turn_agent"]):
        calls = [t for t, a in enumerate(turns) if a >= 0 and a != m]
        if len(calls) >= cfg.d_max:
            for t in sorted(calls, key=lambda t: drop[b][t])[: cfg.d_max]:
                weight[b][t] = 1
            continue
        for t in calls:
            weight[b][t] = 1
        if not calls:
            continue
        valid = [t for t in calls if d["turn_valid"][b][t]]
        if cfg.duplicate == "best" and "correct" in comps and valid:
            best = max(comps["correct"][b][turns[t]] for t in valid)
            valid = [t for t in valid if comps["correct"][b][turns[t]] == best]
        eligible = calls if cfg.duplicate == "any" or not valid else valid
        for j in range(cfg.d_max - len(calls)):
            k = min(int(math.floor(pick[b][j] * len(eligible))), len(eligible) - 1)
            weight[b][eligible[k]] += 1

    rows = defaultdict(list)
    for b, turns in enumerate(d["turn_agent"]):
        for t, a in enumerate(turns):
            if a >= 0 and a != m:
                rows[d["group"][b]].extend([sub_reward(b, t)] * weight[b][t])
    adv = [[0.0] * batch.n_turns for _ in range(batch.batch_size)]
    credit = [[0.0] * batch.n_agents for _ in range(batch.batch_size)]
    for b, turns in enumerate(d["turn_agent"]):
        got = defaultdict(list)
        for t, a in enumerate(turns):
            if a < 0:
                continue
            if a == m:
                adv[b][t] = main_adv[b]
                weight[b][t] = 1
                continue
            gated = sub_reward(b, t)
            got[a].append(gated)
            if weight[b][t] > 0:
                mean, std = mean_std(rows[d["group"][b]])
                adv[b][t] = (gated - mean) / (std + cfg.eps)
        for a, values in got.items():
            credit[b][a] = sum(values) / len(values)
        credit[b][m] = r_main[b] if d["acted"][b][m] else 0.0
    return credit, adv, weight


def shapley_of_batch(batch, method, budget, seed, antithetic):
    from mas_credit.estimators.shapley import sample_permutations

    n = batch.n_agents
    values = batch.coalition_values.tolist()
    if method == "exact" or (1 << n) <= budget:
        return [shapley_by_subsets(v, n) for v in values]
    perms, _ = sample_permutations(n, budget, seed, antithetic)
    return [shapley_by_permutations(v, perms) for v in values]


def _budget(cfg, n):
    """k x N evaluations when budget_per_agent is set, else the budget itself."""
    return cfg.budget_per_agent * n if cfg.budget_per_agent > 0 else cfg.budget


def shapley(batch, cfg):
    d = _lists(batch)
    phi = shapley_of_batch(batch, cfg.method, _budget(cfg, batch.n_agents), cfg.seed, cfg.antithetic)
    adv = agent_norm(phi, d["group"], d["acted"]) if cfg.normalise == "agent" else phi
    return phi, on_turns(adv, d["turn_agent"])


def sharp(batch, cfg):
    d = _lists(batch)
    phi = shapley_of_batch(batch, cfg.method, _budget(cfg, batch.n_agents), cfg.seed, cfg.antithetic)
    if cfg.kappa > 0:
        phi = [[0.0 if abs(p) < cfg.kappa * max(abs(q) for q in row) - 1e-9 else p for p in row] for row in phi]
    name = cfg.tool_component
    if name == "auto":
        name = "tool" if "tool" in batch.components else "format" if "format" in batch.components else "none"
    tool = batch.components[name].tolist() if name != "none" else [[0.0] * batch.n_agents for _ in phi]
    r = [
        [
            cfg.w_team * d["reward"][b] + cfg.w_shapley * phi[b][i] + cfg.w_tool * tool[b][i]
            for i in range(batch.n_agents)
        ]
        for b in range(batch.batch_size)
    ]
    return phi, on_turns(agent_norm(r, d["group"], d["acted"], cfg.eps), d["turn_agent"])


def loo_credit(batch):
    n = batch.n_agents
    full = (1 << n) - 1
    values = batch.coalition_values.tolist()
    return [[r - values[b][full & ~(1 << i)] for i in range(n)] for b, r in enumerate(batch.reward.tolist())]


def loo(batch, cfg):
    d = _lists(batch)
    credit = loo_credit(batch)
    adv = agent_norm(credit, d["group"], d["acted"]) if cfg.normalise == "agent" else credit
    return credit, on_turns(adv, d["turn_agent"])


def c3_counterfactual(batch, cfg):
    d = _lists(batch)
    credit = loo_credit(batch)
    return credit, on_turns(agent_norm(credit, d["group"], d["acted"], cfg.eps), d["turn_agent"])


def c3_tree(batch, cfg):
    """Nodes and sibling sets from the batch's tree ids, then the formulas of docs/estimators.md
    (normaliser sqrt(var_pop + 1e-8) as the reference code). Returns credit, advantage and
    the turn weights of `rows: nodes`."""
    d = _lists(batch)
    node, sibling = batch.tree_node.tolist(), batch.tree_sibling.tolist()
    leaves_of, set_of = defaultdict(list), {}
    for b, row in enumerate(node):
        for t, k in enumerate(row):
            if k >= 0:
                leaves_of[k].append(d["reward"][b])
                set_of[k] = sibling[b][t]
    r = {k: sum(v) / len(v) for k, v in leaves_of.items()}
    members = defaultdict(list)
    for k, s in set_of.items():
        members[s].append(k)
    raw, normed = {}, {}
    for s, nodes in members.items():
        n = len(nodes)
        total = sum(r[k] for k in nodes)
        a = {k: (r[k] - (total - r[k]) / (n - 1)) if n > 1 else 0.0 for k in nodes}
        mean = sum(a.values()) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in a.values()) / n + 1e-8)
        for k in nodes:
            raw[k] = a[k]
            normed[k] = (a[k] - mean) / max(std, 1e-8)
    adv = [[normed[k] if k >= 0 else 0.0 for k in row] for row in node]
    credit = [[0.0] * batch.n_agents for _ in node]
    weight = [[0.0] * len(row) for row in node]  # rows: nodes: a node's first (episode, turn) is its row
    seen = set()
    for b, row in enumerate(node):
        for t, k in enumerate(row):
            if k >= 0:
                credit[b][d["turn_agent"][b][t]] += raw[k]
                if k not in seen:
                    seen.add(k)
                    weight[b][t] = 1.0
    return credit, adv, weight


def coma(batch, cfg):
    d = _lists(batch)
    alt = batch.alternative.tolist()
    credit = [
        [(d["reward"][b] - alt[b][i]) if d["acted"][b][i] else 0.0 for i in range(batch.n_agents)]
        for b in range(batch.batch_size)
    ]
    adv = agent_norm(credit, d["group"], d["acted"]) if cfg.normalise == "agent" else credit
    return credit, on_turns(adv, d["turn_agent"])


def llm_mca(batch, cfg):
    d = _lists(batch)
    shares = batch.critic_share.tolist()
    empty = [row[0] for row in batch.coalition_values.tolist()]
    gain = [d["reward"][b] - (empty[b] if cfg.baseline == "empty" else 0.0) for b in range(batch.batch_size)]
    credit = [[s * gain[b] for s in shares[b]] for b in range(batch.batch_size)]
    return credit, on_turns(agent_norm(credit, d["group"], d["acted"], cfg.eps), d["turn_agent"])


def uniform(batch, cfg):
    d = _lists(batch)
    empty = [row[0] for row in batch.coalition_values.tolist()]
    credit = []
    for b in range(batch.batch_size):
        gain = d["reward"][b] - (empty[b] if cfg.baseline == "empty" else 0.0)
        count = sum(d["acted"][b])
        credit.append([gain / count if a else 0.0 for a in d["acted"][b]])
    return credit, on_turns(agent_norm(credit, d["group"], d["acted"], cfg.eps), d["turn_agent"])


# -- the budgeted estimators: the same designs, the formulas written out -----------------------
def _values_of(batch, masks):
    """[B][K] v(S) of the design's coalitions, read one by one (dense or sparse batch)."""
    rows = []
    for b in range(batch.batch_size):
        if batch.is_dense:
            table = batch.coalition_values[b].tolist()
            rows.append([table[m] for m in masks])
        else:
            keys = list(batch.coalition_keys)
            table = batch.coalition_table[b].tolist()
            rows.append([table[keys.index(m)] for m in masks])
    return rows


def _members(mask, n):
    return [i for i in range(n) if mask >> i & 1]


def constrained_wls(rows, targets, weights, total):
    """argmin sum_j w_j (t_j - rows_j . phi)^2 subject to sum(phi) = total, from the normal equations
    (KKT), built with loops and solved by numpy's least squares."""
    import numpy as np

    p = len(rows[0])
    kkt = [[0.0] * (p + 1) for _ in range(p + 1)]
    rhs = [0.0] * (p + 1)
    for row, t, w in zip(rows, targets, weights):
        for a in range(p):
            rhs[a] += w * row[a] * t
            for c in range(p):
                kkt[a][c] += w * row[a] * row[c]
    for a in range(p):
        kkt[a][p] = kkt[p][a] = 1.0
    rhs[p] = total
    return np.linalg.lstsq(np.array(kkt), np.array(rhs), rcond=1e-12)[0][:p].tolist()


def kernelshap_phi(batch, masks, counts):
    """KernelSHAP's regression: v(S) - v(empty) ~ sum_{i in S} phi_i with weights draws / (|S| (N - |S|))
    over the sampled coalitions, sum phi = v(N) - v(empty)."""
    n = batch.n_agents
    full = (1 << n) - 1
    out = []
    for vals in _values_of(batch, masks):
        v = dict(zip(masks, vals))
        rows, targets, weights = [], [], []
        for m in masks:
            size = bin(m).count("1")
            if m in (0, full):
                continue
            rows.append([1.0 if m >> i & 1 else 0.0 for i in range(n)])
            targets.append(v[m] - v[0])
            weights.append(counts[m] / (size * (n - size)))
        out.append(constrained_wls(rows, targets, weights, v[full] - v[0]))
    return out


def kernelshap(batch, cfg):
    from mas_credit.estimators.sampling.kernelshap import _design, kernel_budget

    d = _lists(batch)
    masks, counts = _design(batch.n_agents, kernel_budget(cfg, batch.n_agents), cfg.seed)
    phi = kernelshap_phi(batch, masks, counts)
    adv = agent_norm(phi, d["group"], d["acted"]) if cfg.normalise == "agent" else phi
    return phi, on_turns(adv, d["turn_agent"])


def banzhaf(batch, cfg):
    """beta_i = mean of v over the draws holding i - mean over those without it (draws with repeats)."""
    from mas_credit.estimators.sampling.banzhaf import _design, banzhaf_budget

    d = _lists(batch)
    n = batch.n_agents
    masks, counts = _design(n, banzhaf_budget(cfg, n), cfg.seed)
    beta = []
    for vals in _values_of(batch, masks):
        row = []
        for i in range(n):
            inside = [v for m, v in zip(masks, vals) if m >> i & 1 for _ in range(counts[m])]
            outside = [v for m, v in zip(masks, vals) if not m >> i & 1 for _ in range(counts[m])]
            row.append(sum(inside) / len(inside) - sum(outside) / len(outside))
        beta.append(row)
    adv = agent_norm(beta, d["group"], d["acted"]) if cfg.normalise == "agent" else beta
    return beta, on_turns(adv, d["turn_agent"])


def svarm(batch, cfg):
    """Stratified SVARM+: strata (agent, sign, level) as means; the warm-up strata by enumerating their
    coalitions, the rest from the draws; an unreached stratum interpolated from its reached neighbours."""
    from mas_credit.estimators.sampling.svarm import _design, svarm_budget

    d = _lists(batch)
    n = batch.n_agents
    full = (1 << n) - 1
    masks, draws = _design(n, svarm_budget(cfg, n), cfg.seed)
    phi = []
    for vals in _values_of(batch, masks):
        v = dict(zip(masks, vals))
        row = []
        for i in range(n):
            total = 0.0
            for sign in (+1, -1):
                strata = {}
                # warm-up: exact means over every coalition of the stratum (sizes 0, 1, N-1, N)
                for level in range(n):
                    size = level + 1 if sign > 0 else level
                    if size in (0, 1, n - 1, n):
                        coalitions = (
                            [m for m in range(full + 1) if bin(m).count("1") == size and (m >> i & 1) == (sign > 0)]
                            if n <= 12
                            else None
                        )
                        strata[level] = sum(v[m] for m in coalitions) / len(coalitions)
                for m in draws:
                    size = bin(m).count("1")
                    if (m >> i & 1) != (sign > 0):
                        continue
                    level = size - 1 if sign > 0 else size
                    if size in (0, 1, n - 1, n):
                        continue
                    strata.setdefault(("draws", level), []).append(v[m])
                for key in [k for k in strata if isinstance(k, tuple)]:
                    strata[key[1]] = sum(strata[key]) / len(strata[key])
                    del strata[key]
                reached = sorted(strata)
                for level in range(n):
                    if level in strata:
                        value = strata[level]
                    else:
                        below = [r for r in reached if r < level]
                        above = [r for r in reached if r > level]
                        if not below or not above:
                            value = strata[(below or above)[-1 if below else 0]]
                        else:
                            lo, hi = below[-1], above[0]
                            t = (level - lo) / (hi - lo)
                            value = (1 - t) * strata[lo] + t * strata[hi]
                    total += sign * value
            row.append(total / n)
        phi.append(row)
    adv = agent_norm(phi, d["group"], d["acted"]) if cfg.normalise == "agent" else phi
    return phi, on_turns(adv, d["turn_agent"])


def loworder(batch, cfg):
    """Order 1: the paired regression of v(S) - v(N minus S) on x in {-1, +1}^N. Order 3: forward
    selection over the three-agent terms among the screened agents, each candidate tried by a full
    constrained refit, the best kept while it cuts the weighted sum of squares by min_gain."""
    from itertools import combinations

    from mas_credit.estimators.sampling.loworder import _design, loworder_budget

    d = _lists(batch)
    n = batch.n_agents
    full = (1 << n) - 1
    masks, counts = _design(n, loworder_budget(cfg, n), cfg.seed)
    phi = []
    for vals in _values_of(batch, masks):
        v = dict(zip(masks, vals))
        xs, diffs, weights = [], [], []
        for m in masks[2::2]:
            size = bin(m).count("1")
            xs.append([1.0 if m >> i & 1 else -1.0 for i in range(n)])
            diffs.append(v[m] - v[full ^ m])
            weights.append(counts[m] / (size * (n - size)))
        total = v[full] - v[0]

        def sse(rows, theta):
            return sum(w * (t - sum(a * b for a, b in zip(r, theta))) ** 2 for r, t, w in zip(rows, diffs, weights))

        theta = constrained_wls(xs, diffs, weights, total)
        row = list(theta)
        if cfg.order == 3 and n >= 3 and cfg.max_terms > 0:
            current = sse(xs, theta)
            target = sum(w * t * t for t, w in zip(diffs, weights))
            screened = sorted(sorted(range(n), key=lambda i: -abs(theta[i]))[: min(cfg.screen, n)])
            candidates = list(combinations(screened, 3))
            chosen = []
            limit = min(cfg.max_terms, max(0, (len(xs) - n - 1) // 2))  # the fit stays overdetermined
            while len(chosen) < limit and current > 1e-20 * max(target, 1e-300):
                best = None
                for t in candidates:
                    if t in chosen:
                        continue
                    rows = [x + [x[a] * x[b] * x[c] for a, b, c in chosen + [t]] for x in xs]
                    fit = sse(rows, constrained_wls(rows, diffs, weights, total))
                    if best is None or fit < best[0] - 1e-9 * current:  # near-ties: the first candidate
                        best = (fit, t)
                if best is None or best[0] > (1 - cfg.min_gain) * current:
                    break
                chosen.append(best[1])
                current = best[0]
            if chosen:
                rows = [x + [x[a] * x[b] * x[c] for a, b, c in chosen] for x in xs]
                theta = constrained_wls(rows, diffs, weights, total)
                row = list(theta[:n])
                for (a, b, c), g in zip(chosen, theta[n:]):
                    for i in (a, b, c):
                        row[i] += g / 3.0
        phi.append(row)
    adv = agent_norm(phi, d["group"], d["acted"]) if cfg.normalise == "agent" else phi
    return phi, on_turns(adv, d["turn_agent"])


def amortised(batch, cfg):
    """The shared model by its normal equations (loops), each episode's fit held to its prior by its
    KKT system (loops), the prior's strength by 5-fold cross-validation over the pairs (loops)."""
    import numpy as np

    from mas_credit.estimators.sampling.amortised import FOLDS, SELECT_FROM, _design, amortised_budget

    d = _lists(batch)
    n = batch.n_agents
    full = (1 << n) - 1
    masks, counts = _design(n, amortised_budget(cfg, n), cfg.seed)
    firsts = list(masks[2::2])
    xs = [[1.0 if m >> i & 1 else -1.0 for i in range(n)] for m in firsts]
    ws = [counts[m] / (bin(m).count("1") * (n - bin(m).count("1"))) for m in firsts]
    rows = _values_of(batch, masks)
    diffs = [[v[masks.index(m)] - v[masks.index(full ^ m)] for m in firsts] for v in rows]
    totals = [v[masks.index(full)] - v[masks.index(0)] for v in rows]
    comps = {k: batch.components[k].tolist() for k in sorted(batch.components)}
    features = []
    for b in range(batch.batch_size):
        per_agent = []
        for i in range(n):
            mine = [t for t, a in enumerate(d["turn_agent"][b]) if a == i]
            count = max(len(mine), 1)
            read = sum(d["turn_valid"][b][t] for t in mine) / count
            formed = sum(d["turn_format"][b][t] for t in mine) / count
            row = [1.0] + [comps[k][b][i] for k in comps] + [float(d["acted"][b][i]), read, formed]
            per_agent.append(row + [1.0 if j == i else 0.0 for j in range(n)])
        features.append(per_agent)
    p = len(features[0][0])

    def model(keep):
        normal = [[0.0] * p for _ in range(p)]
        rhs = [0.0] * p
        for b in range(batch.batch_size):
            for j in keep:
                g = [sum(xs[j][i] * features[b][i][q] for i in range(n)) for q in range(p)]
                for a in range(p):
                    rhs[a] += ws[j] * g[a] * diffs[b][j]
                    for c in range(p):
                        normal[a][c] += ws[j] * g[a] * g[c]
        ridge = cfg.ridge * max(sum(normal[a][a] for a in range(p)) / p, 1e-12)
        for a in range(p):
            normal[a][a] += ridge
        theta = np.linalg.solve(np.array(normal), np.array(rhs))
        return [[float(np.dot(features[b][i], theta)) for i in range(n)] for b in range(batch.batch_size)]

    def held(keep, prior, lam):
        out = []
        for b in range(batch.batch_size):
            kkt = [[0.0] * (n + 1) for _ in range(n + 1)]
            rhs = [0.0] * (n + 1)
            for j in keep:
                for a in range(n):
                    rhs[a] += ws[j] * xs[j][a] * diffs[b][j]
                    for c in range(n):
                        kkt[a][c] += ws[j] * xs[j][a] * xs[j][c]
            for a in range(n):
                kkt[a][a] += lam
                rhs[a] += lam * prior[b][a]
                kkt[a][n] = kkt[n][a] = 1.0
            rhs[n] = totals[b]
            out.append(np.linalg.lstsq(np.array(kkt), np.array(rhs), rcond=None)[0][:n].tolist())
        return out

    everything = list(range(len(firsts)))
    scale = max(sum(sum(ws[j] * xs[j][i] ** 2 for j in everything) for i in range(n)) / n, 1e-12)
    shares = [cfg.prior_weight * f for f in SELECT_FROM] if cfg.select else [cfg.prior_weight]
    if len(shares) > 1 and len(firsts) >= FOLDS:
        best = None
        for share in shares:
            error = 0.0
            for k in range(FOLDS):
                keep = [j for j in everything if j % FOLDS != k]
                phi = held(keep, model(keep), share * scale)
                for b in range(batch.batch_size):
                    for j in everything:
                        if j % FOLDS == k:
                            error += ws[j] * (diffs[b][j] - sum(x * f for x, f in zip(xs[j], phi[b]))) ** 2
            if best is None or error < best[0] or (error == best[0] and share > best[1]):
                best = (error, share)
        share = best[1]
    else:
        share = shares[-1]
    phi = held(everything, model(everything), share * scale)
    adv = agent_norm(phi, d["group"], d["acted"]) if cfg.normalise == "agent" else phi
    return phi, on_turns(adv, d["turn_agent"])
