"""Credit decomposition studies: the known contrasts, determinism, atomic outputs,
report re-rendering and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mas_credit.config import load_experiment
from mas_credit.report import score
from mas_credit.studies import run_study

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "experiments" / "study_quickstart.yaml"
SMALL = [
    "seeds=[0,1]",
    "n_tasks=3",
    "estimators=[shapley,loo,grpo,sharp,c3_tree]",
    "team.skills=[1,1,1]",
    "team.malformed_rate=0",
]
FILES = [
    "config.yaml",
    "episodes.jsonl",
    "credit.parquet",
    "costs.json",
    "summary.md",
    "error_vs_cost.png",
    "credit_vault.png",
    "credit_vault_lazy.png",
    "credit_lookout.png",
    "credit_council.png",
    "run.json",
    "checklist.json",
    "kind.json",
    "manifest.json",
]


def quick_study(out_dir, overrides):
    """The study quickstart with these overrides, run into `out_dir`; returns its folder."""
    return run_study(load_experiment(QUICK, overrides), out_dir=out_dir, progress=False)


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "small"
    quick_study(out, SMALL)
    return out


def mean_credit(frame, game, estimator):
    part = frame[(frame["game"] == game) & (frame["estimator"] == estimator)]
    return part.groupby("agent")[["credit", "truth"]].mean()


def test_the_study_writes_every_output(small_study):
    assert sorted(p.name for p in small_study.iterdir()) == sorted(FILES)
    summary = (small_study / "summary.md").read_text()
    assert "| `shapley` | 2 | 0.000 ± 0.000 |" in summary and "## lookout" in summary and "- **rmse**:" in summary
    assert (
        "| estimator | seeds | rmse | nrmse | kendall_tau | top_agent | null_credit | efficiency_gap | wrong_paid | "
        "right_charged | adv_sign_right | adv_sign_wrong | fallback | "
        "evals_per_episode |" in summary
    )
    assert "critic for llm_mca" not in summary  # llm_mca did not run
    assert len((small_study / "episodes.jsonl").read_text().splitlines()) == 4 * 2 * 3 * 8


def test_intervals_stay_in_each_metrics_range_and_the_critic_is_named_only_when_used(tmp_path):
    from mas_credit.report import RANGES, cell_text

    assert cell_text(0.172, 6.804, bounds=RANGES["kendall_tau"]) == "0.172 [-1.000, 1.000]"
    assert cell_text(0.9, 0.3, bounds=RANGES["top_agent"]) == "0.900 [0.600, 1.000]"
    assert cell_text(0.5, 0.1, bounds=RANGES["top_agent"]) == "0.500 ± 0.100"
    assert cell_text(0.02, 0.05, bounds=RANGES["rmse"]) == "0.020 [0.000, 0.070]"
    done = quick_study(
        tmp_path / "s",
        ["seeds=[0,1]", "n_tasks=2", "games=[vault]", "estimators=[shapley,{use: llm_mca, label: critic}]"],
    )
    assert "critic for llm_mca: scripted" in (done / "summary.md").read_text()


def test_known_contrasts(small_study):
    frame = pd.read_parquet(small_study / "credit.parquet")
    # AND with every agent right: Shapley 1/3 each, leave-one-out 1 each (over-credits)
    vault = mean_credit(frame, "vault", "loo")
    assert (vault["truth"] - 1 / 3).abs().max() < 1e-9 and (vault["credit"] == 1).all()
    # OR: leave-one-out gives 0 to everyone, Shapley 1/3
    lookout = mean_credit(frame, "lookout", "loo")
    assert (lookout["credit"] == 0).all() and (lookout["truth"] - 1 / 3).abs().max() < 1e-9
    # a lazy agent: 0 from exact Shapley, full credit R from grpo
    lazy = frame[(frame["game"] == "vault_lazy") & (frame["agent"] == 2)]
    grpo, shap = lazy[lazy["estimator"] == "grpo"], lazy[lazy["estimator"] == "shapley"]
    assert (grpo["credit"] == grpo["reward"]).all() and (grpo["reward"] == 1).all()
    assert (shap["credit"] == 0).all() and shap["null_player"].all()
    # exact shapley has zero error everywhere; the scores say the same
    per_seed = score(frame, json.loads((small_study / "costs.json").read_text())["records"])
    exact = per_seed[per_seed["estimator"] == "shapley"]
    assert (exact["rmse"] == 0).all() and (exact["efficiency_gap"].abs() < 1e-12).all()
    assert (per_seed[(per_seed["estimator"] == "loo") & (per_seed["game"] == "vault")]["rmse"] > 0.6).all()


def test_same_seed_same_credit(small_study, tmp_path):
    again = quick_study(tmp_path / "again", SMALL)
    a, b = pd.read_parquet(small_study / "credit.parquet"), pd.read_parquet(again / "credit.parquet")
    pd.testing.assert_frame_equal(a, b)
    other = quick_study(tmp_path / "other", SMALL[:-1] + ["team.malformed_rate=0", "seeds=[5]"])
    assert not pd.read_parquet(other / "credit.parquet")["credit"].equals(a["credit"])


def test_report_renders_again_from_saved_results(small_study, tmp_path, run_main):
    before = (small_study / "summary.md").read_text()
    for name in ("summary.md", "error_vs_cost.png", "credit_vault.png"):
        (small_study / name).unlink()
    code, _, err = run_main("report", small_study)
    assert code == 0, err
    assert (small_study / "summary.md").read_text() == before
    assert (small_study / "credit_vault.png").stat().st_size > 1000
    code, _, err = run_main("report", tmp_path)
    assert code == 2 and "has no credit.parquet" in err and err.count("\n") == 1


def test_an_interrupted_study_leaves_no_half_written_file(tmp_path, monkeypatch):
    import mas_credit.studies as studies

    cfg = load_experiment(QUICK, SMALL)
    calls = {"n": 0}
    real_fill = studies.fill_needs

    def dies_midway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_fill(*args, **kwargs)

    monkeypatch.setattr(studies, "fill_needs", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    monkeypatch.setattr(studies, "fill_needs", real_fill)

    # killed while writing credit.parquet over an earlier complete run: the old file stays whole
    done = run_study(cfg, out_dir=tmp_path / "run", progress=False)
    before = pd.read_parquet(done / "credit.parquet")

    def half_written(self, path, **kwargs):
        Path(path).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_written)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, out_dir=done, progress=False, overwrite=True)
    pd.testing.assert_frame_equal(pd.read_parquet(done / "credit.parquet"), before)
    assert not [p for p in done.iterdir() if p.name.startswith(".")], "no temporary files may be left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"], "nor a staged folder beside it"


BAD = [
    (
        ["estimators=[shapley,c3_tree]", "group_size=4"],
        "tree fan-out [2, 4] makes groups of 8 episodes but group_size is 4; set group_size=8",
    ),
    (["estimators=[shapley,shapley]"], "estimators ['shapley'] appear more than once; give each a distinct label"),
    (["estimators=[shapley,{use: c3, params: {mode: tree, fanout: [8]}},c3_tree]"], "different tree fan-outs"),
    (["critic.accuracy=2"], "critic: accuracy and malformed_rate must be in [0, 1]"),
    (["critic.kind=gpt"], "critic.kind 'gpt' is not available"),
    (
        ["estimators=[shapley,{use: sharp, params: {method: approx}}]"],
        "method 'approx' is not valid; valid choices: exact, sampled",
    ),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_bad_studies_give_one_line_errors(overrides, message, tmp_path, run_main):
    code, _, err = run_main("study", QUICK, *overrides, "--out", tmp_path / "x")
    assert code == 2, err
    assert message in err and err.startswith("mas-credit: error: ") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_study_cli_end_to_end(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mas_credit.cli",
            "study",
            str(QUICK),
            "seeds=[0]",
            "n_tasks=2",
            "--out",
            str(tmp_path / "q"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "# Credit study" in out.stdout and "| `coma` |" in out.stdout and "results in" in out.stdout
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == sorted(FILES)


def test_a_critic_that_always_falls_back_is_marked_and_compared_with_uniform(tmp_path):
    """llm_mca whose every critic answer is unreadable: the table shows its fallback rate,
    marks the row, says so in words, and shows `uniform` (its fallback) beside it."""
    done = quick_study(
        tmp_path / "s",
        ["seeds=[0,1]", "n_tasks=2", "games=[vault]", "estimators=[shapley,llm_mca]", "critic.malformed_rate=1.0"],
    )
    summary = (done / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| `llm_mca` †"))
    heads = next(line for line in summary.splitlines() if line.startswith("| estimator |")).split(" | ")
    assert row.split(" | ")[heads.index("fallback")] == "1.000 ± 0.000"
    assert "| `uniform` | 2 |" in summary and "`llm_mca` did not really run here:** it fell back on 100%" in summary
    assert "| `shapley` | 2 |" in summary and "| `shapley` †" not in summary
    frame = pd.read_parquet(done / "credit.parquet")
    llm, uni = (
        frame[frame["estimator"] == e].sort_values(["seed", "episode", "agent"])["credit"].to_numpy()
        for e in ("llm_mca", "uniform")
    )
    assert (llm == uni).all()  # a critic that always falls back *is* uniform
    honest = quick_study(
        tmp_path / "h", ["seeds=[0]", "n_tasks=2", "games=[vault]", "estimators=[llm_mca]", "critic.malformed_rate=0.0"]
    )
    assert "†" not in (honest / "summary.md").read_text().split("## Columns")[0]


def test_kendall_tau_b_and_the_confidence_interval_equal_scipy():
    """Oracles: scipy's tau-b (ties included) and Student t quantile at any number of seeds
    (the hand-written table used to switch to 1.96 beyond 30 degrees of freedom)."""
    import numpy as np
    from scipy.stats import kendalltau
    from scipy.stats import t as student_t

    from mas_credit.report import kendall_tau_b, mean_ci

    rng = np.random.default_rng(0)
    credit, truth = rng.integers(0, 3, size=(200, 5)).astype(float), rng.integers(0, 3, size=(200, 5)).astype(float)
    ours = kendall_tau_b(credit, truth)
    for b in range(200):
        ref = kendalltau(credit[b], truth[b]).statistic  # variant b is scipy's default
        assert (np.isnan(ours[b]) and np.isnan(ref)) or abs(ours[b] - ref) < 1e-12, b
    for n in (2, 3, 10, 31, 40, 200):
        values = rng.normal(size=n)
        mean, half = mean_ci(values)
        assert mean == pytest.approx(values.mean())
        assert half == pytest.approx(student_t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n), rel=1e-12)


def test_wrong_paid_and_right_charged_equal_a_plain_loop():
    """Reference: count, episode by episode, the wrong answers given credit > 0 and the right ones
    given credit < 0; a share of right (orchestra's main agent) or NaN (no component) counts as neither."""
    import numpy as np

    from mas_credit.report import SIGN_TOL, episode_scores

    rng = np.random.default_rng(1)
    credit = rng.choice([-1.0, -1e-12, 0.0, 1e-12, 0.5], size=(300, 4))
    correct = rng.choice([0.0, 1.0, 0.5, np.nan], size=(300, 4))
    advantage = rng.choice([-0.7, -1e-12, 0.0, 1e-12, 1.3, np.nan], size=(300, 4))  # NaN: the agent took no turn
    zeros = np.zeros(300)
    ours = episode_scores(credit, credit, zeros, zeros, np.zeros((300, 4), bool), correct, advantage)
    for b in range(300):
        wrong = [i for i in range(4) if correct[b, i] == 0]
        right = [i for i in range(4) if correct[b, i] == 1]
        paid = sum(credit[b, i] > SIGN_TOL for i in wrong) / len(wrong) if wrong else float("nan")
        charged = sum(credit[b, i] < -SIGN_TOL for i in right) / len(right) if right else float("nan")
        # the advantage's sign, over the answers (right or wrong) of agents that took a turn
        answered = [i for i in wrong + right if not np.isnan(advantage[b, i])]
        up = [i for i in answered if advantage[b, i] > SIGN_TOL]
        down = [i for i in answered if advantage[b, i] < -SIGN_TOL]
        good = sum(i in up for i in right) + sum(i in down for i in wrong)
        bad = sum(i in down for i in right) + sum(i in up for i in wrong)
        sign_right = good / len(answered) if answered else float("nan")
        sign_wrong = bad / len(answered) if answered else float("nan")
        for key, ref in (
            ("wrong_paid", paid),
            ("right_charged", charged),
            ("adv_sign_right", sign_right),
            ("adv_sign_wrong", sign_wrong),
        ):
            assert (np.isnan(ours[key][b]) and np.isnan(ref)) or ours[key][b] == pytest.approx(ref), (key, b)
    assert 0 < np.nanmean(ours["adv_sign_right"]) < 1 and 0 < np.nanmean(ours["adv_sign_wrong"]) < 1
    none = episode_scores(credit, credit, zeros, zeros, np.zeros((300, 4), bool))  # a game without `correct`
    assert all(np.isnan(none[k]).all() for k in ("wrong_paid", "right_charged", "adv_sign_right", "adv_sign_wrong"))


def test_each_agents_advantage_is_the_mean_over_its_turns():
    """Reference: a loop over the turns of real orchestra episodes (the main agent acts twice,
    sub-agents once per call, an uncalled sub-agent not at all; padded turns)."""
    import torch

    from mas_credit.agents import ScriptedTeam
    from mas_credit.games import make_game
    from mas_credit.rollout import collect
    from mas_credit.studies import per_agent_advantage
    from mas_credit.types import CreditBatch

    game = make_game("orchestra_v0", n_agents=3, difficulty=2)
    episodes = collect(game, ScriptedTeam(skills=[0.6, 0.6, 0.6], seed=0), n_tasks=8, group_size=4, seed=0)
    batch = CreditBatch.from_episodes(episodes, device="cpu")
    advantage = torch.randn(batch.turn_agent.shape, dtype=torch.float64)
    advantage[batch.turn_agent < 0] = torch.nan  # padding never counts
    ours = per_agent_advantage(advantage, batch.turn_agent, 3)
    assert ours.dtype == torch.float64 and ours.shape == (len(episodes), 3)
    turn_counts = set()
    for b, ep in enumerate(episodes):
        for i in range(3):
            mine = [float(advantage[b, t]) for t, turn in enumerate(ep.turns) if turn.agent == i]
            turn_counts.add(len(mine))
            if mine:
                assert float(ours[b, i]) == pytest.approx(sum(mine) / len(mine), abs=1e-12)
            else:
                assert torch.isnan(ours[b, i])
    assert {0, 1}.issubset(turn_counts) and max(turn_counts) >= 2


def test_exact_shapley_pays_wrong_answers_in_a_chain_and_never_in_an_additive_game(tmp_path):
    """relay: a wrong step can stand in for an absent agent's, so exact Shapley pays some wrong
    answers and charges some right ones; potluck (additive): never. grpo pays every wrong answer of
    a rewarded potluck episode, where the team reward is the share of right dishes."""
    done = quick_study(
        tmp_path / "s",
        ["seeds=[0]", "n_tasks=40", "games=[relay,potluck]", "estimators=[shapley,grpo]", "team.skills=[.5,.5,.8]"],
    )
    frame = pd.read_parquet(done / "credit.parquet")
    assert set(frame["correct"]) == {0.0, 1.0}
    per_seed = score(frame, json.loads((done / "costs.json").read_text())["records"]).set_index(["game", "estimator"])
    assert per_seed.loc[("relay", "shapley"), "wrong_paid"] > 0.05
    assert per_seed.loc[("relay", "shapley"), "right_charged"] > 0
    assert per_seed.loc[("potluck", "shapley"), ["wrong_paid", "right_charged"]].tolist() == [0.0, 0.0]
    assert per_seed.loc[("potluck", "grpo"), "wrong_paid"] > 0.5
    assert "wrong_paid | right_charged | adv_sign_right | adv_sign_wrong" in (done / "summary.md").read_text()
    # potluck: grpo's group-normalised team reward points some answers the wrong way, Shapley's never
    assert per_seed.loc[("potluck", "grpo"), "adv_sign_wrong"] > 0.1
    assert per_seed.loc[("potluck", "shapley"), "adv_sign_wrong"] == 0.0
    assert per_seed.loc[("potluck", "shapley"), "adv_sign_right"] > 0.5
    # a credit.parquet written before `correct` (or `advantage`) was recorded still scores, those columns empty
    records = json.loads((done / "costs.json").read_text())["records"]
    old = score(frame.drop(columns="correct"), records)
    assert old["wrong_paid"].isna().all() and (old["rmse"].to_numpy() == per_seed["rmse"].to_numpy()).all()
    older = score(frame.drop(columns="advantage"), records)
    assert (
        older["adv_sign_right"].isna().all()
        and (older["wrong_paid"].to_numpy() == per_seed["wrong_paid"].to_numpy()).all()
    )


def test_on_rampart_near_chance_c3_points_more_braces_the_wrong_way_than_grpo(tmp_path):
    """MIN game, two agents near chance: leave-one-out's R - v(N minus i) is 0 for a wrong brace
    that was not the only wrong one and -0.2 for a lone culprit. c3 normalises it within (group,
    agent), so the 0 of a wrong brace rises above a mean pulled down by a -0.2: c3 pushes up wrong
    braces that grpo leaves at 0 (the tabular study's rampart, where c3 learns slower than grpo).
    Exact Shapley charges every wrong brace that weakens the wall and points most answers right."""
    done = quick_study(
        tmp_path / "s",
        ["seeds=[0]", "n_tasks=40", "games=[rampart]", "estimators=[grpo,c3,shapley]", "team.skills=[.15,.15,.8]"],
    )
    frame = pd.read_parquet(done / "credit.parquet")
    per_seed = score(frame, json.loads((done / "costs.json").read_text())["records"]).set_index("estimator")
    assert per_seed.loc["c3", "adv_sign_wrong"] > max(0.2, 3 * per_seed.loc["grpo", "adv_sign_wrong"])
    assert per_seed.loc["shapley", "adv_sign_right"] > 0.5 > 3 * per_seed.loc["grpo", "adv_sign_right"]
