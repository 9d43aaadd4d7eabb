"""Outside code: the example plug-in (examples/mas_credit_tally: a game, an estimator and a
team kind) installed into a folder outside the repository and found through entry points in every
process (CLI, batch workers, report), by `package.module:Object` references without
installing, and option folders found outside the repository."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mas_credit.agents import ModelTeam, ScriptedTeam, Team, TeamKind, describe_team, register_team_kind, team_kinds
from mas_credit.agents.kinds import _PLUGGED as kinds_registry
from mas_credit.agents.kinds import plugged_kind
from mas_credit.agents.tabular import MixedTeam
from mas_credit.config import SHIPPED, ConfigError, load_experiment, validate_train
from mas_credit.estimators import _REGISTRY as estimators_registry
from mas_credit.estimators.edges import _EDGE_REGISTRY as edge_registry
from mas_credit.games import _REGISTRY as games_registry
from mas_credit.games import make_game
from mas_credit.plugins import PluginError
from mas_credit.rollout import collect
from mas_credit.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mas_credit.cli"]
EXPERIMENT = """name: plug
games: [{use: tally, n_agents: 3, params: {quota: 2}}]
team: scripted_trio
estimators: [shapley, last_word]
seeds: [0, 1]
n_tasks: 2
group_size: 2
"""
BATCH = """name: plug_batch
base: exp.yaml
mode: study
grid:
  seeds: [[0], [1]]
executor: {kind: local, workers: 2}
"""


def pip_install_target(src: Path, site: Path) -> Path:
    """`pip install --target site src` (not editable, no dependencies, no index), as a user would."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    out = subprocess.run(pip + ["--target", str(site), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return site


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """(source folder, installed site folder): pip-installed with --target, as a user would."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(ROOT / "examples" / "mas_credit_tally", src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    return src, pip_install_target(src, tmp / "site")


def run(args, cwd, pythonpath, **env):
    """The CLI from `cwd` (a folder outside the repository) with `pythonpath` added."""
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pythonpath), str(ROOT)]), **env)
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, env=full)


def test_an_installed_plugin_runs_through_study_batch_and_report_from_outside_the_repository(plugin, tmp_path):
    _, site = plugin
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    (tmp_path / "batch.yaml").write_text(BATCH)
    games = run(["games"], tmp_path, site)
    assert games.returncode == 0 and "tally_v0" in games.stdout and "quota" in games.stdout
    listed = run(["estimators"], tmp_path, site).stdout
    assert "last_word" in listed and "first_word" in listed  # the edge estimator's entry point too
    study = run(["study", "exp.yaml", "--out", "out/study", "--no-progress"], tmp_path, site)
    assert study.returncode == 0, study.stderr
    frame = pd.read_parquet(tmp_path / "out" / "study" / "credit.parquet")
    assert set(frame["game"]) == {"tally"} and set(frame["estimator"]) == {"shapley", "last_word"}
    batch = run(
        ["batch", "batch.yaml", "--out", "out/batch", "--no-progress"], tmp_path, site
    )  # 2 spawned worker processes
    assert batch.returncode == 0, batch.stderr + batch.stdout
    table = (tmp_path / "out" / "batch" / "batch.md").read_text()
    assert "| tally | last_word | 2 |" in table and "| tally | shapley | 2 | 0.000 ± 0.000 |" in table
    if importlib.util.find_spec("ray") is not None:  # setup.sh installs the ray extra
        ray = run(["batch", "batch.yaml", "executor.kind=ray", "--out", "out/ray", "--no-progress"], tmp_path, site)
        assert ray.returncode == 0, ray.stderr + ray.stdout  # the Ray tasks found the plug-in
        rows = [line for line in table.splitlines() if line.startswith("| tally |")]
        assert len(rows) == 2 and all(row in (tmp_path / "out" / "ray" / "batch.md").read_text() for row in rows)
    (tmp_path / "out" / "study" / "summary.md").unlink()
    report = run(["report", "out/study"], tmp_path, site)  # rebuilds the game's names
    assert report.returncode == 0 and "## tally" in (tmp_path / "out" / "study" / "summary.md").read_text()
    shown = run(["config", "show", "exp.yaml"], tmp_path, site)
    assert "# games.0 <- tally: registered (built in or by a plug-in), no option file" in shown.stdout
    assert f"# team <- scripted_trio: {SHIPPED / 'agents' / 'scripted_trio.yaml'}" in shown.stdout


@pytest.mark.reliability(
    "a plug-in reference (`package.module:Object`) that cannot be imported, or a plug-in's name "
    "when it is not installed",
    "one line naming the reference and what to install, or the valid options; exit 2",
)
def test_package_module_object_references_need_no_install(plugin, tmp_path):
    src, _ = plugin
    (tmp_path / "exp.yaml").write_text(
        EXPERIMENT.replace("use: tally,", 'use: "mas_credit_tally:TallyEnv",').replace(
            "[shapley, last_word]", '[shapley, "mas_credit_tally:last_word"]'
        )
    )
    study = run(["study", "exp.yaml", "--out", "out", "--no-progress"], tmp_path, src)
    assert study.returncode == 0, study.stderr
    assert set(pd.read_parquet(tmp_path / "out" / "credit.parquet")["estimator"]) == {"shapley", "last_word"}
    # not importable: one line naming the reference and what to do
    (tmp_path / "bad.yaml").write_text(EXPERIMENT.replace("use: tally,", 'use: "no_such_pkg:Game",'))
    bad = run(["study", "bad.yaml", "--out", "bad", "--no-progress"], tmp_path, src)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cannot import no_such_pkg" in bad.stderr
    # without the plug-in, its name is an unknown option, with the valid ones listed
    (tmp_path / "named.yaml").write_text(EXPERIMENT)
    missing = run(["study", "named.yaml", "--out", "missing"], tmp_path, tmp_path)
    assert (
        missing.returncode == 2
        and "unknown option 'tally' (no file games/tally.yaml); valid options: briefing, council" in missing.stderr
    )


def broken_site(tmp_path: Path) -> Path:
    """A site folder holding one installed distribution whose game plug-in raises on import (a
    RuntimeError, not an ImportError), as a half-finished plug-in does."""
    site = tmp_path / "site"
    dist = site / "mas_credit_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mas-credit-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mas_credit.games]\nwobbly = mas_credit_broken:WobblyEnv\n")
    (site / "mas_credit_broken.py").write_text("raise RuntimeError('the wobbly table\\nis not set')\n")
    return site


@pytest.mark.reliability(
    "an installed plug-in, or a `package.module:Object` module, whose import raises anything",
    "every other verb still works, with one warning line naming the plug-in; asking for what it "
    "provides is one line naming it and its error; exit 2",
)
def test_a_plugin_whose_import_raises_is_skipped_with_one_line_and_named_when_asked_for(tmp_path):
    site = broken_site(tmp_path)
    games = run(["games"], tmp_path, site)
    warning = (
        "mas-credit: warning: plug-in 'wobbly' (mas_credit_broken:WobblyEnv, group mas_credit.games) failed to "
        "load: RuntimeError: the wobbly table is not set; skipped\n"
    )
    assert games.returncode == 0 and "vault_v0" in games.stdout and games.stderr == warning
    estimators = run(["estimators"], tmp_path, site)  # another group never imports it
    assert estimators.returncode == 0 and "shapley" in estimators.stdout and estimators.stderr == ""
    plain = EXPERIMENT.replace("use: tally", "use: vault").replace("params: {quota: 2}", "difficulty: 1")
    (tmp_path / "exp.yaml").write_text(plain.replace("[shapley, last_word]", "[shapley]"))
    study = run(["study", "exp.yaml", "--out", "ok", "--no-progress"], tmp_path, site)
    assert study.returncode == 0, study.stderr
    (tmp_path / "wobbly.yaml").write_text(EXPERIMENT.replace("use: tally", "use: wobbly"))
    asked = run(["study", "wobbly.yaml", "--out", "no", "--no-progress"], tmp_path, site)
    lines = asked.stderr.splitlines()
    assert asked.returncode == 2 and len(lines) == 2 and lines[0] == warning.strip()
    assert "unknown option 'wobbly'" in lines[1] and "plug-in 'wobbly'" in lines[1] and "RuntimeError" in lines[1]
    assert not (tmp_path / "no").exists()
    # a package.module:Object reference to the same module: its error, in one line
    (tmp_path / "ref.yaml").write_text(
        EXPERIMENT.replace("use: tally", 'use: "mas_credit_broken:WobblyEnv"').replace(
            "[shapley, last_word]", "[shapley]"
        )
    )
    ref = run(["study", "ref.yaml", "--out", "no", "--no-progress"], tmp_path, site)
    assert ref.returncode == 2 and ref.stderr.count("\n") == 1, ref.stderr
    assert (
        "'mas_credit_broken:WobblyEnv': importing mas_credit_broken raised RuntimeError: the wobbly table is not set; "
        "fix that module" in ref.stderr
    )


def test_option_folders_are_searched_in_config_dir_then_the_environment_then_upward_then_the_shipped_ones(tmp_path):
    mine, env_dir = tmp_path / "mine", tmp_path / "env"
    for folder, fast in ((mine, 5), (env_dir, 7)):
        (folder / "games").mkdir(parents=True)
        (folder / "games" / "fast_vault.yaml").write_text(
            f"name: vault_v0\nn_agents: 3\ndifficulty: 1\nlazy_agents: []\n# {fast}\n"
        )
    (env_dir / "games" / "env_only.yaml").write_text("name: lookout_v0\nn_agents: 3\ndifficulty: 1\nlazy_agents: []\n")
    (tmp_path / "games").mkdir()
    (tmp_path / "games" / "upward.yaml").write_text("name: potluck_v0\nn_agents: 3\ndifficulty: 2\nlazy_agents: []\n")
    exp = tmp_path / "work" / "exp.yaml"
    exp.parent.mkdir()
    exp.write_text(
        "name: x\ngames: [fast_vault, env_only, upward]\nteam: scripted_trio\nestimators: [shapley]\nseeds: [0]\n"
        "n_tasks: 1\ngroup_size: 1\n"
    )
    shown = run(
        ["config", "show", "exp.yaml", "--config-dir", str(mine)], exp.parent, ROOT, MAS_CREDIT_CONFIG_PATH=str(env_dir)
    )
    assert shown.returncode == 0, shown.stderr
    assert f"# games.0 <- fast_vault: {mine / 'games' / 'fast_vault.yaml'}" in shown.stdout  # --config-dir first
    assert f"# games.1 <- env_only: {env_dir / 'games' / 'env_only.yaml'}" in shown.stdout  # then the environment
    assert f"# games.2 <- upward: {tmp_path / 'games' / 'upward.yaml'}" in shown.stdout  # then upward
    assert (
        f"# team <- scripted_trio: {SHIPPED / 'agents' / 'scripted_trio.yaml'}" in shown.stdout
    )  # then the shipped options
    nowhere = run(["config", "show", "exp.yaml"], exp.parent, ROOT)
    assert nowhere.returncode == 2 and "unknown option 'fast_vault' (no file games/fast_vault.yaml)" in nowhere.stderr


def test_a_plugged_team_kind_plays_as_a_team_and_from_the_cli(plugin, tmp_path):
    _, site = plugin
    assert "reader" in run(["teams"], tmp_path, site).stdout
    (tmp_path / "exp.yaml").write_text(
        EXPERIMENT.replace("team: scripted_trio", "team: {use: reader, params: {care: 1.0}}")
    )
    study = run(["study", "exp.yaml", "--out", "out", "--no-progress"], tmp_path, site)
    assert study.returncode == 0, study.stderr
    episodes = [json.loads(line) for line in (tmp_path / "out" / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 8 and all(e["reward"] == 1.0 for e in episodes)  # care 1: every number read right
    assert "plug-in team kind reader (reads the last digit" in (tmp_path / "out" / "summary.md").read_text()
    for bad, says in (
        ("{use: reader, params: {care: 2}}", "team.params (reader): care must be a probability in [0, 1], got 2"),
        ("{use: reader, params: {speed: 2}}", "team.params (reader): unknown option speed; valid options: care"),
        ("{use: scripted_trio, params: {care: 1}}", "team.params is for plug-in team kinds"),
    ):
        (tmp_path / "bad.yaml").write_text(EXPERIMENT.replace("team: scripted_trio", f"team: {bad}"))
        out = run(["study", "bad.yaml", "--out", "bad", "--no-progress"], tmp_path, site)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and says in out.stderr, out.stderr


@pytest.fixture
def tally(plugin, monkeypatch):
    """The example package importable in this process (its entry points are not installed
    here); what it registers is removed afterwards, so later tests see the built-ins only."""
    registries = [games_registry, estimators_registry, kinds_registry, edge_registry]
    before = [dict(r) for r in registries]
    monkeypatch.syspath_prepend(str(plugin[0]))
    import mas_credit_tally

    yield mas_credit_tally
    for registry, held in zip(registries, before):
        registry.clear()
        registry.update(held)
    monkeypatch.delitem(sys.modules, "mas_credit_tally")


def tally_cfg(tmp_path, members: str, *overrides):
    (tmp_path / "exp.yaml").write_text(
        EXPERIMENT.replace("use: tally,", 'use: "mas_credit_tally:TallyEnv",')
        .replace("team: scripted_trio", "team: tabular_trio")
        .replace("[shapley, last_word]", "[sharp]")
    )
    return load_experiment(tmp_path / "exp.yaml", [f"team.members={members}", "train.plots=false", *overrides])


def test_an_edge_estimator_plugs_in_by_reference_and_runs_in_a_study(tally, tmp_path, run_main):
    """An outside edge estimator named `package.module:function` in `edges.estimators` runs beside
    exact edge Shapley and is labelled by its function's name; a reference to something that is
    not a registered edge estimator, or an unknown name, is a one-line error."""
    (tmp_path / "exp.yaml").write_text(
        """name: plug_edges
game: briefing
team: {use: scripted_trio, skills: [0.8, 0.8, 0.8, 0.8, 0.9]}
estimators: [shapley]
edges: {estimators: [edge_shapley, "mas_credit_tally:first_word"]}
seeds: [0]
n_tasks: 2
group_size: 2
"""
    )
    code, _, err = run_main("study", tmp_path / "exp.yaml", "--out", tmp_path / "out", "--no-progress")
    assert code == 0, err
    edges = pd.read_parquet(tmp_path / "out" / "edges.parquet")
    assert set(edges["estimator"]) == {"edge_shapley", "first_word"}
    first = edges[edges["estimator"] == "first_word"].sort_values(["episode", "edge"])
    exact = edges[edges["estimator"] == "edge_shapley"].groupby("episode")["truth"].sum()  # v(all) - v(none)
    assert (first[first["edge"] > 0]["credit"] == 0).all()
    gains = first[first["edge"] == 0].set_index("episode")["credit"]
    assert gains.to_numpy() == pytest.approx(exact.loc[gains.index].to_numpy(), abs=1e-12)
    assert (gains != 0).any(), "the check needs an episode whose messages matter"
    for ref, message in (
        ("mas_credit_tally:last_word", "'mas_credit_tally:last_word' is not a registered edge estimator"),
        ("first_wurd", "unknown edge estimator 'first_wurd'; valid edge estimators: edge_critic, edge_loo"),
    ):
        code, _, err = run_main("study", tmp_path / "exp.yaml", f"edges.estimators=[{ref}]", "--out", tmp_path / "x")
        assert code == 2 and message in err and err.count("\n") == 1


def test_a_plugged_member_plays_its_agent_in_a_mixed_team_and_never_learns(tally, tmp_path):
    members = '[{kind: "mas_credit_tally:READER", care: 1.0}, {kind: tabular, lr: 1.0}, {kind: scripted, skill: 0.0}]'
    cfg = tally_cfg(tmp_path, members, "train.iterations=3", "train.eval_every=1")
    validate_train(cfg)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert [learner.agents for learner in trainer.learners] == [[1]]  # the plug-in member has no learner
    assert isinstance(trainer.team.plugged[0], tally.ReaderTeam)
    trainer.run()
    assert torch.count_nonzero(trainer.team.tabular[1].logits) > 0
    episodes = collect(trainer.games[0], trainer.team, n_tasks=4, group_size=2, seed=5)
    for ep in episodes:
        numbers = trainer.games[0].make_task(ep.task_seed)["numbers"]
        assert ep.turns[0].text == f"NUMBER: {numbers[0]}"  # read from its own prompt
        assert ep.turns[0].prompt_ids is None and ep.turns[1].response_ids is not None
    assert (
        describe_team(trainer.team)["name"]
        == "mixed team (mas_credit_tally:READER, tabular, scripted; no language model)"
    )
    with pytest.raises(ConfigError, match=r"team.members.0 \(reader\): care must be a probability in \[0, 1\], got 3$"):
        tally_cfg(tmp_path, members.replace("care: 1.0", "care: 3"))
    with pytest.raises(ConfigError, match=r"team.members.0: kind must be one of scripted, tabular, llm.*got 'robot'"):
        tally_cfg(tmp_path, members.replace('"mas_credit_tally:READER"', "robot"))


def test_every_team_kind_keeps_the_policy_contract(tally):
    teams = [
        ScriptedTeam([0.9, 0.9]),
        MixedTeam([{"kind": "tabular"}, {"kind": "mas_credit_tally:READER"}]),
        tally.READER.build({}, 2, 0),
    ]
    assert all(isinstance(team, Team) and not isinstance(team, ModelTeam) for team in teams)
    game = make_game("mas_credit_tally:TallyEnv", n_agents=2)
    for team in teams:
        episode = collect(game, team, n_tasks=1, seed=0)[0]
        assert [turn.agent for turn in episode.turns] == [0, 1] and all(turn.text for turn in episode.turns)


def test_registering_a_team_kind_twice_is_a_no_op_and_a_clash_is_an_error(tally):
    assert register_team_kind(tally.READER) is tally.READER and register_team_kind(tally.READER) is tally.READER
    assert "reader" in team_kinds()
    other = TeamKind(name="reader", build=lambda options, n, seed: None)
    with pytest.raises(PluginError, match="team kind 'reader' is already registered by another plug-in"):
        register_team_kind(other)
    with pytest.raises(PluginError, match="team kind 'mixed' is built into mas-credit"):
        register_team_kind(TeamKind(name="mixed", build=other.build))
    with pytest.raises(PluginError, match="'mas_credit_tally:TallyEnv' is a type, not a mas_credit.agents.TeamKind"):
        plugged_kind("mas_credit_tally:TallyEnv")


def test_a_non_editable_install_ships_the_option_folders(tmp_path):
    """pip install (not -e) of mas-credit, then an experiment in a folder of its own: the options
    come from inside the installed package."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "mas_credit", src / "mas_credit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip_install_target(src, tmp_path / "site")
    shutil.rmtree(src)
    work = tmp_path / "work"
    work.mkdir()
    (work / "exp.yaml").write_text(
        EXPERIMENT.replace("{use: tally, n_agents: 3, params: {quota: 2}}", "vault")
        .replace("[shapley, last_word]", "[shapley, c3_tree]")
        .replace("group_size: 2", "group_size: 8")
    )
    full = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    shown = subprocess.run(CLI + ["config", "show", "exp.yaml"], cwd=work, capture_output=True, text=True, env=full)
    assert shown.returncode == 0, shown.stderr
    shipped = tmp_path / "site" / "mas_credit" / "conf"
    assert f"# team <- scripted_trio: {shipped / 'agents' / 'scripted_trio.yaml'}" in shown.stdout
    assert f"# estimators.1 <- c3_tree: {shipped / 'estimators' / 'c3_tree.yaml'}" in shown.stdout
    study = subprocess.run(
        CLI + ["study", "exp.yaml", "--out", "out", "--no-progress"], cwd=work, capture_output=True, text=True, env=full
    )
    assert study.returncode == 0 and set(pd.read_parquet(work / "out" / "credit.parquet")["estimator"]) == {
        "shapley",
        "c3_tree",
    }
