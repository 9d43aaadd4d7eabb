"""Outside code: the example plug-in (examples/mas_credit_tally: a game and an estimator)
installed into a folder outside the repository and found through entry points in every
process (CLI, batch workers, report), by `package.module:Object` references without
installing, and option folders found outside the repository."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """(source folder, installed site folder): pip-installed with --target, as a user would."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(ROOT / "examples" / "mas_credit_tally", src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                          "--target", str(tmp / "site"), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return src, tmp / "site"


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
    assert "last_word" in run(["estimators"], tmp_path, site).stdout
    study = run(["study", "exp.yaml", "--out", "out/study", "--no-progress"], tmp_path, site)
    assert study.returncode == 0, study.stderr
    frame = pd.read_parquet(tmp_path / "out" / "study" / "credit.parquet")
    assert set(frame["game"]) == {"tally"} and set(frame["estimator"]) == {"shapley", "last_word"}
    batch = run(["batch", "batch.yaml", "--out", "out/batch", "--no-progress"], tmp_path, site)   # 2 spawned worker processes
    assert batch.returncode == 0, batch.stderr + batch.stdout
    table = (tmp_path / "out" / "batch" / "batch.md").read_text()
    assert "| tally | last_word | 2 |" in table and "| tally | shapley | 2 | 0.000 ± 0.000 |" in table
    (tmp_path / "out" / "study" / "summary.md").unlink()
    report = run(["report", "out/study"], tmp_path, site)                                  # rebuilds the game's names
    assert report.returncode == 0 and "## tally" in (tmp_path / "out" / "study" / "summary.md").read_text()
    shown = run(["config", "show", "exp.yaml"], tmp_path, site)
    assert "# games.0 <- tally: registered by a plug-in, no option file" in shown.stdout
    assert f"# team <- scripted_trio: {ROOT / 'agents' / 'scripted_trio.yaml'}" in shown.stdout


@pytest.mark.reliability("a plug-in reference (`package.module:Object`) that cannot be imported, or a plug-in's name "
                         "when it is not installed", "one line naming the reference and what to install, or the valid options; exit 2")
def test_package_module_object_references_need_no_install(plugin, tmp_path):
    src, _ = plugin
    (tmp_path / "exp.yaml").write_text(EXPERIMENT.replace("use: tally,", 'use: "mas_credit_tally:TallyEnv",')
                                       .replace("[shapley, last_word]", '[shapley, "mas_credit_tally:last_word"]'))
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
    assert missing.returncode == 2 and "unknown option 'tally' (no file games/tally.yaml); valid options: council" in missing.stderr


def test_option_folders_are_searched_in_config_dir_then_the_environment_then_upward_then_the_shipped_ones(tmp_path):
    mine, env_dir = tmp_path / "mine", tmp_path / "env"
    for folder, fast in ((mine, 5), (env_dir, 7)):
        (folder / "games").mkdir(parents=True)
        (folder / "games" / "fast_vault.yaml").write_text(f"name: vault_v0\nn_agents: 3\ndifficulty: 1\nlazy_agents: []\n# {fast}\n")
    (env_dir / "games" / "env_only.yaml").write_text("name: lookout_v0\nn_agents: 3\ndifficulty: 1\nlazy_agents: []\n")
    (tmp_path / "games").mkdir()
    (tmp_path / "games" / "upward.yaml").write_text("name: potluck_v0\nn_agents: 3\ndifficulty: 2\nlazy_agents: []\n")
    exp = tmp_path / "work" / "exp.yaml"
    exp.parent.mkdir()
    exp.write_text("name: x\ngames: [fast_vault, env_only, upward]\nteam: scripted_trio\nestimators: [shapley]\nseeds: [0]\n"
                   "n_tasks: 1\ngroup_size: 1\n")
    shown = run(["config", "show", "exp.yaml", "--config-dir", str(mine)], exp.parent, ROOT, MAS_CREDIT_CONFIG_PATH=str(env_dir))
    assert shown.returncode == 0, shown.stderr
    assert f"# games.0 <- fast_vault: {mine / 'games' / 'fast_vault.yaml'}" in shown.stdout          # --config-dir first
    assert f"# games.1 <- env_only: {env_dir / 'games' / 'env_only.yaml'}" in shown.stdout          # then the environment
    assert f"# games.2 <- upward: {tmp_path / 'games' / 'upward.yaml'}" in shown.stdout             # then upward
    assert f"# team <- scripted_trio: {ROOT / 'agents' / 'scripted_trio.yaml'}" in shown.stdout     # then the shipped options
    nowhere = run(["config", "show", "exp.yaml"], exp.parent, ROOT)
    assert nowhere.returncode == 2 and "unknown option 'fast_vault' (no file games/fast_vault.yaml)" in nowhere.stderr
