import subprocess
import sys

import pytest

from mas_credit.cli import main
from mas_credit.config import SHIPPED

from .test_studies import ROOT


def test_play_prints_transcript_reward_and_shapley(capsys):
    assert main(["play", "vault", "--n-agents", "3", "--lazy", "2", "--skills", "1,1,1", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "agent_0 says: 'DIGIT:" in out and "Team reward R = 1.000" in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith("agent_") and len(line.split()) >= 4
    }
    assert float(rows["agent_0"][2]) == pytest.approx(0.5) and float(rows["agent_2"][2]) == 0.0
    assert "sum of Shapley = 1.000" in out


@pytest.mark.parametrize("game", ["potluck", "lookout", "council", "relay_v0", "orchestra"])
def test_play_every_game(game, capsys):
    assert main(["play", game, "--n-agents", "4", "--difficulty", "2", "--malformed", "0.2"]) == 0
    assert "Team reward R" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["play", "chess"], "unknown game 'chess'; valid games:"),
        (["play", "vault", "--n-agents", "3", "--skills", "1,1"], "--skills has 2 values but --n-agents is 3"),
        (["play", "vault", "--skills", "a,b,c"], "--skills must be comma-separated"),
        (["play", "vault", "--n-agents", "12"], "n_agents must be an integer in [2, 8]"),
        (["play", "council", "--param", "weights=[1]"], "weights must be a list of 3"),
        (["play", "vault", "--malformed", "2"], "malformed_rate must be in [0, 1]"),
        (["play", "vault", "--seed", "-1"], "--seed must be an integer in [0, 4294967295], got -1"),
        (["play", "vault", "--param", "difficulty=2"], "--param difficulty=...: give difficulty with --difficulty"),
        (["play", "council", "--param", "weights=[2,2"], "--param weights=[2,2: the value is expected ',' or ']'"),
        (
            ["play", "vault", "--estimators", "loo,sharpp"],
            "unknown estimator 'sharpp'; valid estimators: amortised, banzhaf, c3, coma",
        ),
    ],
)
def test_play_bad_input_exit_2(run_main, args, message):
    code, _, err = run_main(*args)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_a_config_dir_that_is_not_a_folder_exit_2(run_main, tmp_path):
    code, _, err = run_main("config", "show", ROOT / "experiments" / "demo.yaml", "--config-dir", tmp_path / "nope")
    assert code == 2 and err == (
        f"mas-credit: error: --config-dir {tmp_path / 'nope'} is not a folder; give a folder that holds games/, "
        "agents/ or estimators/\n"
    )


def test_unknown_verb_exit_2():
    """The real command line: argparse's error is the interpreter's exit code."""
    out = subprocess.run([sys.executable, "-m", "mas_credit.cli", "fly"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'fly'" in out.stderr


def test_games_lists_every_game(capsys):
    from mas_credit.games import list_games

    assert main(["games"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_games())


def test_games_keeps_long_names_in_their_column(capsys, monkeypatch):
    import mas_credit.games as games

    class WeakestLink(games.VaultEnv):
        name, credit_structure = "weakest_link_threshold_v0", "min"

    monkeypatch.setitem(games._REGISTRY, WeakestLink.name, WeakestLink)
    assert main(["games"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line]
    assert [row.split()[:2] for row in rows][-1] == ["weakest_link_threshold_v0", "min"]
    assert len({row.index("params:") for row in rows}) == 1  # every column starts at the same place


def test_play_shows_every_estimator_beside_the_ground_truth(capsys):
    from mas_credit.estimators import list_estimators

    names = list_estimators()
    assert main(["play", "vault", "--lazy", "2", "--skills", "1,1,1", "--estimators", ",".join(names)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("agent "))
    columns = ["shapley"] + [n for n in names if n != "shapley"]  # exact Shapley is the ground-truth column, once
    assert header.split()[2 : 2 + len(columns)] == columns
    lazy_row = next(line for line in out.splitlines() if line.startswith("agent_2 ")).split()
    credit = dict(zip(columns, map(float, lazy_row[2 : 2 + len(columns)])))
    assert credit["shapley"] == credit["sharp"] == credit["c3"] == credit["loo"] == 0.0
    assert credit["grpo"] == 1.0


def test_play_takes_game_options_and_shows_each_estimator_once(capsys):
    assert main(["play", "vault_lazy", "--skills", "1,1,1", "--estimators", "shapley,c3,dr_mas,c3"]) == 0
    out = capsys.readouterr().out
    assert "lazy agents [2]" in out
    header = next(line for line in out.splitlines() if line.startswith("agent "))
    assert header.split() == ["agent", "skill", "shapley", "c3", "dr_mas", "components"]
    assert main(["play", "vault_lazy", "--n-agents", "4", "--skills", "1,1,1,1", "--lazy", "3"]) == 0
    assert "4 agents" in capsys.readouterr().out


@pytest.mark.reliability("`mas-credit games \\| head -3`", "the first lines, no traceback; exit 141")
def test_a_closed_pipe_ends_quietly():
    """`mas-credit games | head -1`: the reader is gone before the output is flushed."""
    import os

    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run(
        [sys.executable, "-m", "mas_credit.cli", "games"], stdout=write, stderr=subprocess.PIPE, text=True
    )
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_estimators_lists_each_with_its_needs(capsys):
    from mas_credit.estimators import list_estimators

    assert main(["estimators"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name} " in out for name in list_estimators())
    assert "needs: coalitions:all" in out and "needs: coalitions:empty, critic" in out
    assert "edge_shapley  credit [B, E]" in out and "needs: edge sets:all" in out  # the edge estimators too


def test_play_with_an_llm_team_file(capsys):
    assert main(["play", "relay", "--team", str(SHIPPED / "agents" / "tiny_trio.yaml"), "--estimators", "loo"]) == 0
    out = capsys.readouterr().out
    assert "agent_0       llm" in out and "Team reward R" in out


def test_play_team_errors_exit_2(run_main):
    code, _, err = run_main("play", "vault", "--team", "tiny_trio", "--skills", "1,1,1")
    assert code == 2 and "drop them when you give --team" in err
    code, _, err = run_main("play", "vault", "--team", "tiny_quartet")
    assert code == 2 and "unknown option 'tiny_quartet'" in err


def test_the_study_header_starts_its_own_line_after_the_progress_bar(tmp_path):
    """With stdout and stderr in one log, the finished bar ends its line (it used to be
    cleared with a bare carriage return, leaving the header on the bar's line)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mas_credit.cli",
            "study",
            "experiments/study_quickstart.yaml",
            "n_tasks=2",
            "seeds=[0]",
            "--out",
            str(tmp_path / "s"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    log = out.stdout.decode()  # bytes: text mode would turn each \r into a newline
    assert out.returncode == 0, log
    lines = log.split("\n")
    bar = [line for line in lines if "game-seed" in line]
    assert bar and bar[-1].rstrip().split("\r")[-1].startswith("study study_quickstart: 100%")
    header = (tmp_path / "s" / "summary.md").read_text().splitlines()[0]
    assert header in lines
