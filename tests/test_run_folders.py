"""Run folders (issue 14): each records its kind; a run refuses a folder that holds another
run unless --overwrite, and an overwrite removes the old outputs; a taken default folder
gets a suffix; a folder that cannot be written fails before any work; a study stopped by
Ctrl-C leaves nothing."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mas_credit.cli import main
from mas_credit.outputs import RunDirError, claim_run_dir, run_kind

from .test_studies import ROOT

STUDY = str(ROOT / "experiments" / "study_quickstart.yaml")
TABULAR = str(ROOT / "experiments" / "learn_tabular_run.yaml")
SMALL_STUDY = ["seeds=[0]", "n_tasks=2", "games=[vault]", "estimators=[grpo]"]
SMALL_TRAIN = ["train.iterations=1", "train.eval_every=1"]


def cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


@pytest.mark.reliability(
    "`--out` holds another run (study, train or batch)",
    "`... already holds a <kind> run; give --overwrite to replace it, or choose another --out`; exit 2, the folder "
    "untouched",
)
def test_a_study_refuses_a_training_runs_folder_and_keeps_it_intact(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "train", TABULAR, *SMALL_TRAIN, "--out", str(run))[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, err = cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(run))
    assert code == 2 and err == (
        f"mas-credit: error: {run} already holds a train run; give --overwrite to replace it, or choose another --out"
    )
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert main(["train", "--resume", str(run)]) == 0 and run_kind(run) == "train"


def test_train_refuses_a_study_folder_and_a_second_train_points_to_resume(tmp_path, capsys):
    study, run = tmp_path / "study", tmp_path / "run"
    assert cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(study))[0] == 0
    code, err = cli(capsys, "train", TABULAR, *SMALL_TRAIN, "--out", str(study))
    assert code == 2 and f"{study} already holds a study run" in err and (study / "credit.parquet").is_file()
    assert cli(capsys, "train", TABULAR, *SMALL_TRAIN, "--out", str(run))[0] == 0
    code, err = cli(capsys, "train", TABULAR, *SMALL_TRAIN, "--out", str(run))
    assert (
        code == 2 and f"give --overwrite to replace it, continue it with --resume {run}, or choose another --out" in err
    )


@pytest.mark.reliability(
    "`--overwrite` on a run's folder",
    "the old outputs (plots included) are removed first; none is left beside the new ones",
)
def test_overwrite_replaces_the_old_outputs_entirely(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(run))[0] == 0
    (run / "stale_plot.png").write_bytes(b"from the first run")
    code, err = cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(run))
    assert code == 2 and "already holds a study run" in err and (run / "stale_plot.png").exists()
    assert cli(capsys, "study", STUDY, *SMALL_STUDY, "games=[potluck]", "--out", str(run), "--overwrite")[0] == 0
    assert not (run / "stale_plot.png").exists() and "potluck" in (run / "config.yaml").read_text()
    assert cli(capsys, "train", TABULAR, *SMALL_TRAIN, "--out", str(run), "--overwrite")[0] == 0
    assert run_kind(run) == "train" and not (run / "credit.parquet").exists()


@pytest.mark.reliability(
    "no `--out`, and `runs/<name>` is taken", "the run goes to `runs/<name>-2` (then `-3`, ...); nothing is replaced"
)
def test_a_taken_default_folder_gets_a_suffix(tmp_path, capsys):
    out = f"output_dir={tmp_path}"
    for _ in range(3):
        assert cli(capsys, "study", STUDY, *SMALL_STUDY, out)[0] == 0
    runs = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # beside them: each one's .<name>.lock
    assert sorted(p.name for p in runs) == ["study_quickstart", "study_quickstart-2", "study_quickstart-3"]
    assert all(run_kind(p) == "study" for p in runs)
    assert sorted(p.name for p in tmp_path.iterdir() if p not in runs) == sorted(f".{p.name}.lock" for p in runs)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_text("x"), "is a file, not a folder; give --out a folder (new or empty)"),
        (
            lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")),
            "holds files that are not a mas-credit run; give --out a new or empty folder",
        ),
    ],
)
@pytest.mark.reliability(
    "`--out` is a file, or holds files that are not a run",
    "one line, exit 2, before any work; `--overwrite` never deletes a folder that is not a run",
)
def test_folders_a_run_cannot_use_are_refused_even_with_overwrite(tmp_path, capsys, make, message):
    target = tmp_path / "target"
    make(target)
    for extra in ([], ["--overwrite"]):
        code, err = cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(target), *extra)
        assert code == 2 and err == f"mas-credit: error: {target} {message}"
    assert target.exists()


@pytest.mark.reliability(
    "`--out` cannot be written (under a file, read-only)",
    "`cannot write to <folder> (...); give --out a writable folder (or set output_dir to one)`, exit 2, before any "
    "compute",
)
def test_an_unwritable_folder_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import mas_credit.studies as studies

    monkeypatch.setattr(
        studies, "_run_study", lambda *a, **k: pytest.fail("the study ran before its folder was checked")
    )
    (tmp_path / "file").write_text("x")
    code, err = cli(capsys, "study", STUDY, "--out", str(tmp_path / "file" / "run"))
    assert code == 2 and err.startswith(f"mas-credit: error: cannot write to {tmp_path / 'file' / 'run'} (")
    assert err.endswith("); give --out a writable folder (or set output_dir to one)")
    with pytest.raises(RunDirError, match="cannot write to"):
        claim_run_dir(tmp_path / "file" / "batch", "batch")


def test_a_batch_folder_is_continued_but_other_runs_folders_are_not(tmp_path):
    first = claim_run_dir(tmp_path / "b", "batch")
    (first / "batch.json").write_text("{}")
    assert claim_run_dir(tmp_path / "b", "batch", reuse_same_kind=True) == first and (first / "batch.json").exists()
    assert claim_run_dir(tmp_path / "b", "batch", reuse_same_kind=True, default=True) == first
    with pytest.raises(RunDirError, match="already holds a batch run"):
        claim_run_dir(tmp_path / "b", "study")
    assert json.loads((first / "kind.json").read_text()) == {"kind": "batch"}


@pytest.mark.reliability(
    "Ctrl-C on a study",
    "`mas-credit: interrupted`, exit 130; the study wrote into a staged folder, so no folder is left",
)
def test_ctrl_c_on_a_study_prints_one_line_exits_130_and_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mas_credit.cli",
            "study",
            STUDY,
            "n_tasks=400",
            "seeds=[0,1,2,3,4,5]",
            "--out",
            str(run),
            "--no-progress",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not list(tmp_path.glob(".run.tmp-*/kind.json")):  # the study writes into a staged folder beside `run`
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130 and err.strip() == "mas-credit: interrupted"
    assert [p.name for p in tmp_path.iterdir()] == [".run.lock"]  # the lock's empty file, never held by the dead


def start_study(run, *more):
    """A study through the real command line in its own process, big enough to be caught at work;
    returns once it writes into its staged folder (it holds the folder's lock by then)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mas_credit.cli", "study", STUDY, "n_tasks=400", "seeds=[0,1,2,3,4,5]", *more]
        + ["--out", str(run), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not list(run.parent.glob(f".{run.name}.tmp-*/kind.json")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc


HOLD = """import sys, time
from mas_credit.outputs import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.reliability(
    "two processes on one run folder: two studies into one new --out, two `train --resume` at once, two batches "
    "into one folder",
    "the second stops at once with `<folder> is in use by another mas-credit process ...`; exit 2; the first "
    "finishes and its outputs are whole",
)
def test_a_second_process_on_a_run_folder_stops_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    first = start_study(run)
    second = subprocess.run(
        [sys.executable, "-m", "mas_credit.cli", "study", STUDY, *SMALL_STUDY, "--out", str(run), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    busy = f"mas-credit: error: {run} is in use by another mas-credit process"
    assert second.returncode == 2 and second.stderr.startswith(busy) and second.stderr.count("\n") == 1
    first.send_signal(signal.SIGINT)  # the first is not harmed by the second: stopped cleanly, as ever
    first.communicate()
    assert first.returncode == 130 and not run.exists()
    # a train run, then a second process holding it: resume, train --overwrite and a batch all stop
    trained, batch_dir = tmp_path / "trained", tmp_path / "batch"
    assert cli(capsys, "train", TABULAR, *SMALL_TRAIN, "--out", str(trained))[0] == 0
    (tmp_path / "b.yaml").write_text(
        f"name: b\nbase: {STUDY}\nmode: study\noverrides: [n_tasks=2]\ngrid: {{seeds: [[0], [1]]}}\n"
        "executor: {kind: local, workers: 1}\n"
    )
    for folder, argv in (
        (trained, ["train", "--resume", str(trained)]),
        (trained, ["train", TABULAR, *SMALL_TRAIN, "--out", str(trained), "--overwrite"]),
        (batch_dir, ["batch", str(tmp_path / "b.yaml"), "--out", str(batch_dir), "--no-progress"]),
    ):
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout.readline() == "held\n"
            code, err = cli(capsys, *argv)
            assert code == 2 and err.startswith(f"mas-credit: error: {folder} is in use by another") and "\n" not in err
        finally:
            holder.kill()
            holder.wait()
    assert cli(capsys, "train", "--resume", str(trained))[0] == 0  # a killed holder never leaves the lock held


def test_a_killed_study_leaves_no_staging_folder_behind_after_the_next_run(tmp_path, capsys):
    run = tmp_path / "run"
    proc = start_study(run)
    proc.kill()  # SIGKILL: nothing of the study's own runs, its staging folder stays
    proc.communicate()
    assert list(tmp_path.glob(".run.tmp-*"))
    assert cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(run))[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]


@pytest.mark.reliability(
    "a damaged `checkpoint/state.pt`, `metrics.jsonl` or `credit.parquet`",
    "one line naming the file and what to do; a last `metrics.jsonl` line cut short by a kill is dropped",
)
def test_damaged_run_files_are_one_line_errors_and_a_cut_last_line_is_dropped(tmp_path, capsys):
    run, study = tmp_path / "run", tmp_path / "study"
    assert (
        cli(
            capsys,
            "train",
            TABULAR,
            "train.iterations=2",
            "train.eval_every=1",
            "train.checkpoint_every=2",
            "--out",
            str(run),
        )[0]
        == 0
    )
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    (run / "manifest.json").unlink()  # a run killed mid-write has none: it is written when a run ends
    metrics.write_text("\n".join(lines) + '\n{"kind": "train", "itera')  # killed mid-write
    assert cli(capsys, "report", str(run))[0] == 0
    assert cli(capsys, "train", "--resume", str(run))[0] == 0 and metrics.read_text().splitlines() == lines
    assert (run / "manifest.json").is_file()  # the resumed run ended: its manifest again
    metrics.write_text("\n".join([lines[0], "#garbage", *lines[1:]]) + "\n")
    code, err = cli(capsys, "report", str(run))
    assert code == 2 and err.startswith(f"mas-credit: error: {metrics} is damaged (") and "says its manifest" in err
    (run / "manifest.json").unlink()  # a run from before manifests: the reader's own check still names the line
    code, err = cli(capsys, "report", str(run))
    assert code == 2 and err == (
        f"mas-credit: error: {metrics}: line 2 is not a metric record (a damaged file); "
        f"resume from the checkpoint (mas-credit train --resume) or train again"
    )
    code, err = cli(capsys, "train", "--resume", str(run))
    assert code == 2 and "its first 5 lines (the records up to the last checkpoint) are damaged or missing" in err
    state = run / "checkpoint" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    code, err = cli(capsys, "train", "--resume", str(run))
    assert code == 2 and err.startswith(f"mas-credit: error: {state} is damaged (") and "--overwrite" in err
    state.write_bytes(b"")
    assert cli(capsys, "train", "--resume", str(run))[0] == 2

    assert cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(study))[0] == 0
    parquet = study / "credit.parquet"
    parquet.write_bytes(parquet.read_bytes()[:200])
    code, err = cli(capsys, "report", str(study))
    assert code == 2 and err.startswith(f"mas-credit: error: {parquet} is damaged (200 bytes; the run wrote ")
    (study / "manifest.json").unlink()
    code, err = cli(capsys, "report", str(study))
    assert code == 2 and err.startswith(f"mas-credit: error: {study}: credit.parquet or costs.json is damaged (")


@pytest.mark.reliability(
    "a flipped byte in a finished study's credit.parquet, a cut metrics.jsonl of a finished training run, or a "
    "damaged file of a batch's finished run",
    "each run's manifest.json (size + sha256 of every file) is checked: one line naming the file, exit 2, the "
    "summary not rewritten; the batch does not count the run as finished on damaged files",
)
def test_reports_and_batches_check_each_run_s_manifest(tmp_path, capsys):
    study = tmp_path / "study"
    assert cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(study))[0] == 0
    manifest = json.loads((study / "manifest.json").read_text())["files"]
    assert {"credit.parquet", "costs.json", "episodes.jsonl", "config.yaml", "run.json"} <= set(manifest)
    assert not {"summary.md", "checklist.json"} & set(manifest) and not any(n.endswith(".png") for n in manifest)
    parquet, summary = study / "credit.parquet", (study / "summary.md").read_text()
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit flipped
    parquet.write_bytes(bytes(data))
    code, err = cli(capsys, "report", str(study))
    assert code == 2 and err == (
        f"mas-credit: error: {parquet} is damaged (its sha256 is not the one the run wrote, says its manifest); run "
        f"the study again (mas-credit study ... --out {study} --overwrite)"
    )
    assert (study / "summary.md").read_text() == summary
    trained = tmp_path / "trained"
    assert cli(capsys, "train", TABULAR, *SMALL_TRAIN, "--out", str(trained))[0] == 0
    metrics = trained / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:-10])
    code, err = cli(capsys, "report", str(trained))
    assert code == 2 and err.startswith(f"mas-credit: error: {metrics} is damaged (") and "\n" not in err
    batch = tmp_path / "b.yaml"
    batch.write_text(
        f"name: b\nbase: {STUDY}\nmode: study\noverrides: [n_tasks=2, 'games=[vault]']\ngrid: {{seeds: [[0], [1]]}}\n"
        "executor: {kind: local, workers: 1}\n"
    )
    out = tmp_path / "batch"
    assert cli(capsys, "batch", str(batch), "--out", str(out), "--no-progress")[0] == 0
    costs = out / "runs" / "seeds-1" / "costs.json"
    costs.write_text(costs.read_text().replace('"', "'", 1))
    code, err = cli(capsys, "batch", str(batch), "--out", str(out), "--no-progress")
    assert code == 2 and err.startswith(f"mas-credit: error: {costs} is damaged (") and "\n" not in err
    assert "remove " in err and "run the batch again" in err


@pytest.mark.reliability(
    "a study too big for memory (`n_tasks=100000000`)",
    "refused before it starts, with the estimate (per episode and estimator 1.0 KB + 1.1 KB per agent, measured "
    "by benchmarks/memory.py) and the knob "
    "`max_memory_gb` (default 8)",
)
def test_a_study_too_big_for_memory_is_refused_before_it_starts(tmp_path, capsys):
    code, err = cli(capsys, "study", STUDY, "n_tasks=100000000", "--out", str(tmp_path / "big"))
    assert code == 2 and err.startswith(
        "mas-credit: error: study_quickstart: 9,600,000,000 episodes (games x seeds x n_tasks x "
        "group_size) with 11 estimators would need about"
    )
    assert "over max_memory_gb=8; lower n_tasks, or raise max_memory_gb" in err and not (tmp_path / "big").exists()
    code, err = cli(capsys, "train", TABULAR, "n_tasks=100000000", "--out", str(tmp_path / "big"))
    assert code == 2 and "over max_memory_gb=8" in err
    assert cli(capsys, "study", STUDY, *SMALL_STUDY, "max_memory_gb=0.5", "--out", str(tmp_path / "ok"))[0] == 0
    # past half the bound: the run goes ahead with one warning line giving the figure
    code, err = cli(
        capsys, "study", STUDY, *SMALL_STUDY, "max_memory_gb=0.0002", "--out", str(tmp_path / "warned"), "--no-progress"
    )
    assert code == 0 and err.count("\n") == 0 and err.startswith("mas-credit: warning: study_quickstart: 16 episodes")
    assert "with 1 estimators will need about 0.0 GB of memory (max_memory_gb=0.0002)" in err


def test_the_memory_estimate_grows_with_the_team_and_the_estimators():
    from mas_credit.config import check_memory, load_experiment

    def gb(n_agents, estimators):
        cfg = load_experiment(
            STUDY,
            [f"games=[{{use: harvest, n_agents: {n_agents}}}]", "team={use: scripted_trio, skills: [0.8]}"]
            + [f"estimators=[{', '.join(estimators)}]", "seeds=[0]", "n_tasks=1000", "group_size=2"],
        )
        return check_memory(cfg, 1)

    assert gb(64, ["loo"]) / gb(8, ["loo"]) == pytest.approx((1 + 1.1 * 64) / (1 + 1.1 * 8))
    assert gb(8, ["loo", "grpo", "sharp"]) / gb(8, ["loo"]) == pytest.approx(2.0)
    assert gb(64, ["kernelshap", "loo"]) * 1e6 / 2000 == pytest.approx(3 * (1 + 1.1 * 64))  # KB per episode


@pytest.mark.reliability(
    "the disk fills up (or `--out`'s mount goes away) after a study's compute, as its outputs are written",
    "nothing computed is lost: `cannot write the study's outputs to <folder> (...); they are kept in <temp folder>: "
    "move that folder where you want it`; exit 2; `report` works on the kept folder",
)
def test_outputs_that_cannot_be_written_after_the_compute_are_kept_in_a_temp_folder(tmp_path, capsys, monkeypatch):
    import errno

    import mas_credit.studies as studies

    real = studies.write_parquet
    run = tmp_path / "run"

    def full_disk(path, frame):
        if str(path).startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, frame)

    monkeypatch.setattr(studies, "write_parquet", full_disk)
    code, err = cli(capsys, "study", STUDY, *SMALL_STUDY, "--out", str(run), "--no-progress")
    prefix = (
        f"mas-credit: error: cannot write the study's outputs to {run} (No space left on device); they are kept in "
    )
    assert code == 2 and err.startswith(prefix) and "\n" not in err
    kept = Path(err.removeprefix(prefix).split(":", 1)[0])
    try:
        assert not run.exists() and not list(tmp_path.glob(".run.tmp-*"))
        monkeypatch.setattr(studies, "write_parquet", real)
        assert cli(capsys, "report", str(kept))[0] == 0
        assert len(pd.read_parquet(kept / "credit.parquet")) > 0 and (kept / "manifest.json").is_file()
    finally:
        shutil.rmtree(kept, ignore_errors=True)
