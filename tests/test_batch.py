"""Batches: a killed batch resumes to exactly the table of an uninterrupted one, running
only the missing runs; Ray gives the same table as local processes; a bad override fails
its own run with a one-line error and the others finish; batch-level config mistakes exit 2;
every run writes its reporting checklist."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mas_credit.batch import finished, render_batch, run_batch
from mas_credit.cli import main
from mas_credit.config import ConfigError, load_batch

from .devices import AUTO
from .test_studies import ROOT

CLI = [sys.executable, "-m", "mas_credit.cli"]
TIMING = ("wall", "ms_per_episode", "worker")


def write_batch(tmp_path, name="small", **changes):
    spec = {
        "name": name,
        "base": str(ROOT / "experiments" / "study_quickstart.yaml"),
        "mode": "study",
        "overrides": ["n_tasks=4", "group_size=4", "game=vault_lazy"],
        "grid": {"estimators": [["grpo"], ["sharp"], ["c3"], ["loo"]], "seeds": [[0], [1]]},
        "executor": {"kind": "local", "workers": 2},
    }
    spec.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def results_section(batch_dir):
    text = (batch_dir / "batch.md").read_text()
    return text.split("## Results", 1)[1].split("## Failed runs", 1)[0]


def comparable(batch_dir):
    frame = pd.read_parquet(batch_dir / "batch.parquet")
    frame = frame[[c for c in frame if not any(t in c for t in TIMING)]]
    return frame.sort_values(["run", "game", "estimator", "seed"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whole")
    out = run_batch(load_batch(write_batch(tmp)), out_dir=tmp / "out", progress=False)
    meta = json.loads((out / "batch.json").read_text())
    assert len(meta["executed"]) == 8 and meta["skipped"] == []
    return out


@pytest.mark.reliability(
    "a batch killed mid-way, then run again", "only the missing runs run; the same table as an uninterrupted batch"
)
def test_a_killed_batch_reruns_only_the_missing_runs_and_gives_the_same_table(tmp_path, uninterrupted):
    path = write_batch(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        CLI + ["batch", str(path), "--out", str(out), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("runs/*/result.json")):
        assert proc.poll() is None, "the batch ended before any run finished"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the batch and its workers die at once
    proc.wait()
    done_before = {p.parent.name for p in out.glob("runs/*/result.json") if json.loads(p.read_text())["status"] == "ok"}
    assert 1 <= len(done_before) < 8 and json.loads((out / "batch.json").read_text())["wall_s"] is None
    assert main(["report", str(out)]) == 0  # a killed batch's partial table
    assert "is still running or was killed" in (out / "batch.md").read_text()

    assert main(["batch", str(path), "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((out / "batch.json").read_text())
    assert set(meta["skipped"]) == done_before
    assert set(meta["executed"]) == {r["id"] for r in meta["runs"]} - done_before
    assert results_section(out) == results_section(uninterrupted)
    pd.testing.assert_frame_equal(comparable(out), comparable(uninterrupted))

    assert main(["batch", str(path), "--out", str(out), "--no-progress"]) == 0  # all finished: nothing runs again
    assert json.loads((out / "batch.json").read_text())["executed"] == []


def test_ray_gives_the_same_table_as_local_processes(tmp_path, uninterrupted):
    pytest.importorskip(
        "ray", reason="the ray extra is not installed here (pip install -e .[ray]; scripts/setup.sh installs it)"
    )
    path = write_batch(tmp_path, executor={"kind": "ray", "workers": 2})
    out = run_batch(load_batch(path), out_dir=tmp_path / "out", progress=False)
    workers = {json.loads(p.read_text())["worker"] for p in out.glob("runs/*/result.json")}
    assert len(workers) >= 1 and not any(w.endswith(f":{os.getpid()}") for w in workers), (
        "runs must execute in Ray workers"
    )
    assert results_section(out) == results_section(uninterrupted)
    pd.testing.assert_frame_equal(comparable(out), comparable(uninterrupted))


def test_one_workers_in_process_gives_the_same_table(tmp_path, uninterrupted):
    out = run_batch(load_batch(write_batch(tmp_path), ["executor.workers=1"]), out_dir=tmp_path / "out", progress=False)
    assert results_section(out) == results_section(uninterrupted)


@pytest.mark.reliability("one run of a batch fails", "its one-line error in `batch.md`; the others finish; exit 1")
def test_a_bad_override_fails_its_run_and_the_others_finish(tmp_path, capsys):
    path = write_batch(tmp_path, grid={"estimators": [["grpo"], ["sharpp"], ["sharp"]], "seeds": [[0]]})
    out = tmp_path / "out"
    assert main(["batch", str(path), "--out", str(out), "--no-progress"]) == 1  # 1: the batch ran, a run failed
    result = json.loads((out / "runs" / "estimators-sharpp__seeds-0" / "result.json").read_text())
    assert result["status"] == "failed" and "unknown option 'sharpp'" in result["error"] and "\n" not in result["error"]
    assert (out / "runs" / "estimators-sharpp__seeds-0" / "error.txt").is_file()
    frame = pd.read_parquet(out / "batch.parquet")
    assert set(frame.loc[frame["status"] == "ok", "estimator"]) == {"grpo", "sharp"}
    text = (out / "batch.md").read_text()
    assert "- `estimators-sharpp__seeds-0`: " in text and "| vault_lazy | sharp | 1 |" in text
    assert "1 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"executor": {"kind": "slurm"}}, "executor.kind 'slurm' is not valid; valid choices: local, ray"),
        ({"base": "nowhere.yaml"}, "base 'nowhere.yaml' not found"),
        ({"mode": "evaluate"}, "mode 'evaluate' is not valid; valid choices: study, train"),
        ({"grid": {"seeds": []}}, "grid.seeds is empty"),
        ({"grid": {"seeds": [[0], [1], [0]]}}, "grid.seeds lists [0] more than once; list each value once"),
        (
            {"grid": {"games.0.n_agents,team.skills": [[3, [1, 1, 1]], [4]]}},
            "grid.games.0.n_agents,team.skills links 2 keys, so each value must be a list of 2 (one per key), got [4]",
        ),
        ({"grid": {"seeds": 0}}, "grid.seeds must be a list of the values it takes, e.g. seeds: [0]"),
        ({"executor": {"workers": 0}}, "executor.workers must be >= 1"),
        (
            {"extra_grids": [{"estimators": [["shapley"]]}]},
            "extra_grids.0 must use the grid's keys (estimators, seeds), got estimators: every run needs a value",
        ),
        (
            {"extra_grids": [{"estimators": [["shapley"], ["sharp"]], "seeds": [[1]]}]},
            'the grids list the run [["estimators", ["sharp"]], ["seeds", [1]]] more than once; '
            "remove it from extra_grids",
        ),
        ({"extra_grids": [{"estimators": [], "seeds": [[1]]}]}, "extra_grids.0.estimators is empty"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"name": ".."}, "name '..' must be a plain folder name (outputs go to <output_dir>/<name>/)"),
    ],
)
def test_batch_config_mistakes_exit_2_with_one_line(tmp_path, changes, message, run_main):
    path = write_batch(tmp_path, **changes)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_batch(path)
    code, _, err = run_main("batch", path, "--out", tmp_path / "out")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "verb,file,message",
    [
        (
            "batch",
            "study_quickstart.yaml",
            "is an experiment, not a batch file (it has no base: or grid:); run it with",
        ),
        ("study", "batch_quickstart.yaml", "is a batch file (it has base: or grid:), not an experiment; run it with"),
        ("train", "learn_llm.yaml", "is a batch file (it has base: or grid:), not an experiment; run it with"),
    ],
)
@pytest.mark.reliability(
    "a batch file given to `study` or `train`, or an experiment given to `batch`",
    "one line saying which command runs it; exit 2, nothing written",
)
def test_a_file_given_to_the_wrong_verb_says_which_verb_runs_it(run_main, tmp_path, verb, file, message):
    code, _, err = run_main(verb, ROOT / "experiments" / file, "--out", tmp_path / "out")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_every_run_writes_its_checklist(uninterrupted):
    run_dir = uninterrupted / "runs" / "estimators-sharp__seeds-1"
    items = json.loads((run_dir / "checklist.json").read_text())
    costs = json.loads((run_dir / "costs.json").read_text())["records"]
    game = items["tasks"]["games"][0]
    assert items["model"]["kind"] == "scripted" and game["label"] == "vault_lazy" and game["lazy_agents"] == [2]
    assert items["method"] == [
        {
            "estimator": "sharp",
            "name": "sharp",
            "granularity": "multi-agent",
            "family": "game-theoretic (survey: Shapley)",
        }
    ]
    assert items["baseline"]["episode_level_grpo_same_model"] is False
    assert items["overhead"]["sharp"]["coalition_evals"] == sum(
        u["coalition_evals"] for u in costs if u["estimator"] == "sharp"
    )
    assert 0 < items["overhead"]["sharp"]["share_of_run_time"] < 1
    assert items["trajectories"]["turns"] == {"mean": 3.0, "min": 3.0, "median": 3.0, "max": 3.0, "episodes": 16}
    # the scripted team needs no GPU, but the estimators run where `device: auto` puts them
    assert (items["compute"]["gpu_hours"] > 0) == (AUTO == "cuda") and items["compute"]["wall_s"] > 0
    assert AUTO in items["compute"]["device"]["types"]
    assert items["variance"] == {"seeds": [1], "reported": False, "note": items["variance"]["note"]}
    assert "## Reporting checklist" in (run_dir / "summary.md").read_text()
    grpo = json.loads((uninterrupted / "runs" / "estimators-grpo__seeds-0" / "checklist.json").read_text())
    assert grpo["baseline"]["episode_level_grpo_same_model"] is True and grpo["method"][0]["granularity"].startswith(
        "episode"
    )
    text = (uninterrupted / "batch.md").read_text()
    assert (
        "Episode-level baseline (grpo) with the same model: yes" in text
        and "seeds per cell [2]; every cell has a 95% CI" in text
    )


def test_report_rerenders_a_batch(uninterrupted, tmp_path, capsys):
    before = (uninterrupted / "batch.md").read_text()
    (uninterrupted / "batch.md").unlink()
    assert main(["report", str(uninterrupted)]) == 0
    assert capsys.readouterr().out.endswith(f"rewrote {uninterrupted}/batch.md and its plots\n")
    assert (uninterrupted / "batch.md").read_text() == before == render_batch(uninterrupted)
    assert (uninterrupted / "plots" / "rmse.png").is_file()


@pytest.mark.reliability(
    "`report` on a batch whose batch.json or a run's result.json is cut short",
    "one line naming the file and the fix, the batch's files left as they were; exit 2; running the batch "
    "again runs that cell again",
)
def test_report_on_a_truncated_batch_or_result_file_is_one_line_and_rewrites_nothing(uninterrupted, tmp_path, run_main):
    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    before = (copy / "batch.md").read_text()
    result = copy / "runs" / "estimators-sharp__seeds-1" / "result.json"
    for damaged in (result, copy / "batch.json"):
        whole = damaged.read_bytes()
        damaged.write_bytes(whole[: len(whole) // 2])
        code, _, err = run_main("report", copy)
        assert code == 2 and err.count("\n") == 1 and f"{damaged} is damaged (not complete JSON" in err, err
        assert (copy / "batch.md").read_text() == before
        damaged.write_bytes(whole)
    result.write_bytes(result.read_bytes()[:40])
    assert not finished({"run_dir": result.parent})  # a cut result is not a finished run: the batch reruns it


def test_a_training_batch_reports_evaluation_and_credit_per_cell(tmp_path):
    path = write_batch(
        tmp_path,
        base=str(ROOT / "experiments" / "train_trio.yaml"),
        mode="train",
        overrides=[
            "team=tiny_trio",
            "n_tasks=2",
            "group_size=2",
            "train.iterations=1",
            "train.eval_tasks=2",
            "train.tensorboard=false",
        ],
        grid={"estimators": [["grpo"], ["sharp"]], "seeds": [[0]]},
        executor={"kind": "local", "workers": 1},
    )
    out = run_batch(load_batch(path), out_dir=tmp_path / "out", progress=False)
    frame = pd.read_parquet(out / "batch.parquet")
    assert list(frame["status"]) == ["ok", "ok"] and list(frame["estimator"]) == ["grpo", "sharp"]
    for _, row in frame.iterrows():
        run_dir = out / "runs" / row["run"]
        evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
        assert (
            row["eval_success_before"] == evals[0]["eval/success"] and row["eval_success"] == evals[-1]["eval/success"]
        )
        assert row["eval_gain"] == evals[-1]["eval/success"] - evals[0]["eval/success"]
        assert {f"credit_agent_{i}" for i in range(3)} <= set(frame.columns)
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in records if r["kind"] == "train"]
        for i in range(3):  # each learner's advantage variance, mean over the iterations
            assert row[f"adv_var_agent_{i}"] == pytest.approx(np.mean([r[f"loss/agent_{i}/adv_var"] for r in train]))
        assert [row[f"eval_correct_agent_{i}"] for i in range(3)] == [
            evals[-1][f"eval/correct/agent_{i}"] for i in range(3)
        ]
        assert json.loads((run_dir / "checklist.json").read_text())["kind"] == "train"
    text = (out / "batch.md").read_text()
    assert "| vault | grpo | 1 |" in text and "eval_success_before" in text and "adv_var_agent_2" in text


def alive_children(pid):
    """The live (not zombie) processes whose parent is `pid`, from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue
        if int(ppid) == pid and state != "Z":
            kids.append(int(stat.parent.name))
    return kids


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_slow_batch(tmp_path):
    """A 12-run batch on 2 workers, started in its own process group (as a terminal does);
    returns the process, its output folder and its worker pids once the first run finished."""
    path = write_batch(
        tmp_path,
        overrides=["n_tasks=8", "group_size=4", "game=vault_lazy", "estimators=[shapley,sharp,c3]"],
        grid={"seeds": [[s] for s in range(12)]},
        executor={"kind": "local", "workers": 2},
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        CLI + ["batch", str(path), "--out", str(out), "--no-progress"],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not list(out.glob("runs/*/result.json")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    # the pool's workers, not multiprocessing's resource tracker (which exits on its own once its parent is gone)
    workers = [pid for pid in alive_children(proc.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return proc, out, workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc (Linux)")
@pytest.mark.reliability(
    "Ctrl-C on a batch",
    "queued runs cancelled, running ones stopped, the partial `batch.md`/`batch.parquet` written, one line, exit 130",
)
def test_ctrl_c_cancels_the_queue_stops_the_workers_and_writes_the_partial_report(tmp_path):
    proc, out, workers = start_slow_batch(tmp_path)
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    _, stderr = proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert stderr.strip().startswith("mas-credit: interrupted: ") and "run the same command again" in stderr
    finished = len(list(out.glob("runs/*/result.json")))
    assert 1 <= finished < 12
    assert "was interrupted (Ctrl-C)" in (out / "batch.md").read_text()
    assert pd.read_parquet(out / "batch.parquet")["run"].nunique() == 12
    assert not any(alive(pid) for pid in workers)
    # the same command finishes the rest, and only the rest
    again = subprocess.run(
        CLI + ["batch", str(tmp_path / "small.yaml"), "--out", str(out), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and len(json.loads((out / "batch.json").read_text())["skipped"]) == finished


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc (Linux)")
@pytest.mark.reliability(
    "the batch process is killed (SIGKILL)", "its worker processes exit within a second instead of finishing the queue"
)
def test_workers_die_with_a_killed_batch(tmp_path):
    proc, out, workers = start_slow_batch(tmp_path)
    assert len(workers) == 2
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate()
    for _ in range(600):  # each worker checks for its parent every 0.5 s
        if not any(alive(pid) for pid in workers):
            break
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
    assert len(list(out.glob("runs/*/result.json"))) < 12


def test_extra_grids_add_their_runs_to_the_grids(tmp_path):
    path = write_batch(
        tmp_path,
        overrides=["n_tasks=2", "group_size=2", "game=vault"],
        grid={"estimators": [["grpo"], ["sharp"]], "seeds": [[0]]},
        extra_grids=[{"seeds": [[1], [2]], "estimators": [["shapley"]]}],
        executor={"kind": "local", "workers": 1},
    )
    out = run_batch(load_batch(path), out_dir=tmp_path / "out", progress=False)
    frame = pd.read_parquet(out / "batch.parquet").drop_duplicates("run")
    assert list(frame["run"]) == [
        "estimators-grpo__seeds-0",
        "estimators-sharp__seeds-0",
        "estimators-shapley__seeds-1",
        "estimators-shapley__seeds-2",
    ]
    assert (frame["status"] == "ok").all() and list(frame["seed"]) == [0, 0, 1, 2]
    assert 'plus {"estimators": [["shapley"]], "seeds": [[1], [2]]}' in (out / "batch.md").read_text()


def test_linked_grid_keys_sweep_team_sizes(tmp_path):
    path = write_batch(
        tmp_path,
        overrides=["n_tasks=2", "group_size=2", "game=vault", "estimators=[shapley]"],
        grid={"games.0.n_agents,team.skills": [[3, [0.9, 0.9, 0.9]], [5, [0.9, 0.9, 0.9, 0.9, 0.0]]], "seeds": [[0]]},
        executor={"kind": "local", "workers": 1},
    )
    out = run_batch(load_batch(path), out_dir=tmp_path / "out", progress=False)
    frame = pd.read_parquet(out / "batch.parquet")
    assert list(frame["status"]) == ["ok", "ok"]
    assert list(frame["grid/games.0.n_agents,team.skills"]) == ["3+0.9+0.9+0.9", "5+0.9+0.9+0.9+0.9+0.0"]
    for run_id, n in zip(frame["run"], (3, 5)):
        credit = pd.read_parquet(out / "runs" / run_id / "credit.parquet")
        assert credit["agent"].nunique() == n
    assert "| games.0.n_agents,team.skills | game | estimator | seeds |" in (out / "batch.md").read_text()


def test_more_workers_than_cores_is_one_warning_line(tmp_path, capsys):
    import os

    import yaml

    from mas_credit.batch import run_batch
    from mas_credit.config import load_batch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    spec = {
        "name": "many",
        "base": str(Path(__file__).resolve().parents[1] / "experiments" / "study_quickstart.yaml"),
        "overrides": ["seeds=[0]", "n_tasks=1", "group_size=2", "games=[vault]", "estimators=[grpo]"],
        "grid": {"seeds": [[0]]},
        "executor": {"kind": "local", "workers": cores + 1},
    }
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_batch(load_batch(path), out_dir=tmp_path / "out", progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert lines == [
        f"mas-credit: warning: executor.workers={cores + 1} is more than this machine's {cores} cores: the runs "
        f"share them and each takes longer (set executor.workers={cores})"
    ]
