"""`mas-credit batch`: a grid of runs (a base experiment x every combination of the grid's
override values), each a study or a training run in its own folder, on a local process
pool or on Ray, then one aggregated report.

    <output_dir>/<batch>/
      runs/<run id>/     the run's own outputs (summary.md, checklist.json, ...) and result.json
      batch.parquet      one row per (run, game, estimator, seed) of every finished run; failed runs with their error
      batch.md           the table (mean and 95% CI across seeds per cell), failures, compute, the checklist
      batch.json         this invocation: which runs executed, which were skipped, wall time
      plots/<metric>.png one per metric

Resuming: a run is finished when its `result.json` says "ok"; re-running the batch skips
those and executes the rest (runs that failed, or that a kill interrupted; a training run
killed after a checkpoint continues from it). A run's failure (a bad override, a crash)
is recorded in its result.json and batch.md with a one-line error and never stops the
others. The report is rebuilt from the run folders, so it does not depend on which
invocation ran which run. This module must not compute scores (mas_credit.report does).
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mas_credit.config import BatchConfig, ConfigError, load_experiment, load_resolved, validate_train
from mas_credit.games import GameParamError
from mas_credit.outputs import (
    BatchInterrupted,
    check_run_dir,
    claim_run_dir,
    read_costs,
    read_json,
    read_metrics,
    run_lock,
    save_figure,
    verify_manifest,
    write_json,
    write_parquet,
    write_text,
)
from mas_credit.report import COSTS, METRICS, RANGES, RATES, cell_text, mean_ci, score
from mas_credit.studies import run_study
from mas_credit.train.summary import learning_metrics, line_style
from mas_credit.train.trainer import resume, train

TIMING = ["ms_per_episode", "run_wall_s"]
STUDY_TABLE = METRICS + RATES + [c for c in COSTS if c not in TIMING]
"""a study run's columns in batch.md: its scores and costs, less the timings, which vary run to run"""
REPLICATE = "seed"  # the axis the confidence intervals run over


# -- the grid ----------------------------------------------------------------------------
def _show(value) -> str:
    """A grid value as it appears in run ids and tables: [grpo] -> grpo, {use: vault, difficulty: 2} ->
    vault,difficulty=2."""
    if isinstance(value, (list, tuple)):
        return "+".join(_show(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_show(v)}" if k != "use" else _show(v) for k, v in value.items())
    return str(value)


def expand(cfg: BatchConfig, batch_dir: Path) -> list[dict]:
    """Every run of the batch, in grid order: id, folder, overrides and the grid values it takes."""
    keys = list(cfg.grid)
    runs, seen = [], set()
    combos = [values for grid in (cfg.grid, *cfg.extra_grids) for values in itertools.product(*(grid[k] for k in keys))]
    for values in combos:
        run_id = "__".join(f"{k}-{_show(v)}" for k, v in zip(keys, values)) or "base"
        run_id = re.sub(r"[^A-Za-z0-9._=+,-]", "-", run_id)[:150]
        while run_id in seen:  # two values that print alike still get two folders
            run_id += "_"
        seen.add(run_id)
        overrides = list(cfg.overrides)
        for key, value in zip(keys, values):
            linked = key.split(",")  # "a,b": [[a1, b1], [a2, b2]] sets a and b together
            overrides += [f"{k.strip()}={json.dumps(v)}" for k, v in zip(linked, value if len(linked) > 1 else [value])]
        runs.append(
            {
                "id": run_id,
                "run_dir": str((batch_dir / "runs" / run_id).resolve()),
                "base": cfg.base,
                "mode": cfg.mode,
                "overrides": overrides,
                "grid": {k: _show(v) for k, v in zip(keys, values)},
            }
        )
    return runs


def finished(run: dict) -> bool:
    """A run whose result.json says "ok"; its files are checked against its manifest, and a damaged
    one is a one-line error (never a run counted as finished on damaged files)."""
    path = Path(run["run_dir"]) / "result.json"
    if not path.is_file():
        return False
    try:
        ok = json.loads(path.read_text()).get("status") == "ok"
    except json.JSONDecodeError:
        return False
    if ok:
        verify_manifest(
            path.parent, f"remove {path.parent} and run the batch again: it runs that cell again and keeps the others"
        )
    return ok


# -- one run ---------------------------------------------------------------------------------
def _one_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return text if isinstance(err, (ConfigError, GameParamError)) else f"{type(err).__name__}: {text}"


def execute_run(run: dict, threads: int | None = None) -> dict:
    """Run one cell of a batch in its own folder and write its result.json. A failure of the
    run is caught and recorded (with the traceback in error.txt); it never propagates."""
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(run["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        cfg = load_experiment(run["base"], run["overrides"])
        if run["mode"] == "train":
            validate_train(cfg, run["base"])
            if (run_dir / "checkpoint" / "state.pt").is_file():
                resume(run_dir, progress=False)
            else:  # an earlier try that failed before its first checkpoint starts over
                shutil.rmtree(run_dir)
                train(cfg, out_dir=run_dir, progress=False)
        else:
            shutil.rmtree(run_dir)  # what an earlier, failed or killed, try left
            run_study(cfg, out_dir=run_dir, progress=False)
        result = {"status": "ok", "error": "", "rows": run_rows(run_dir, run["mode"])}
        (run_dir / "error.txt").unlink(missing_ok=True)  # left by an earlier failed try
    except Exception as err:  # noqa: BLE001 - one run's failure is data, not the batch's end
        write_text(run_dir / "error.txt", traceback.format_exc())
        result = {"status": "failed", "error": _one_line(err), "rows": []}
    result.update(id=run["id"], wall_s=time.perf_counter() - start, worker=f"{platform.node()}:{os.getpid()}")
    write_json(run_dir / "result.json", result)
    return result


def run_rows(run_dir: Path, mode: str) -> list[dict]:
    """What a finished run contributes to the batch table."""
    run = json.loads((run_dir / "run.json").read_text())
    if mode == "study":
        frame = pd.read_parquet(run_dir / "credit.parquet")
        per_seed = score(frame, read_costs(run_dir)["records"])
        return [
            {**{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}, "run_wall_s": run["wall_s"]}
            for row in per_seed.to_dict("records")
        ]

    cfg = load_resolved(run_dir / "config.yaml")
    train, evals = read_metrics(run_dir)
    e = cfg.estimators[0]
    label = e.label or e.name
    row = {
        "game": "+".join(g.label or g.name for g in cfg.games),
        "estimator": label,
        "seed": int(cfg.seeds[0]),
        "eval_success_before": evals[0].get("eval/success", math.nan),
        "eval_success": evals[-1].get("eval/success", math.nan),
        "eval_reward": evals[-1].get("eval/reward", math.nan),
        "train_reward_last": train[-1]["reward"] if train else math.nan,
        "run_wall_s": run["wall_s"],
        "coalition_evals": float(sum(r.get("cf/evals", 0.0) for r in train)),
        "episodes": float(sum(len(r["episode_turns"]) for r in train)),
    }
    learning = learning_metrics(train, evals, cfg.train.success_target)
    if learning:
        reached = learning["learn/episodes_to_target"]
        row.update(
            auc=learning["learn/auc"],
            episodes_to_target=math.nan if reached is None else float(reached),
            reached_target=float(reached is not None),
        )
        if "learn/learner_correct_auc" in learning:
            row.update(
                learner_correct_auc=learning["learn/learner_correct_auc"],
                learner_correct=learning["learn/learner_correct_last"],
            )
    for key, value in evals[-1].items():
        if key.startswith("eval/correct/"):  # each agent's greedy correctness at the end
            row[f"eval_correct_{key.rsplit('/', 1)[-1]}"] = value
    for key in train[0] if train else {}:
        if key.startswith(f"credit/{label}/"):  # mean over the iterations
            row[f"credit_{key.rsplit('/', 1)[-1]}"] = sum(r[key] for r in train) / len(train)
        if key.startswith("loss/") and key.endswith("/adv_var"):  # each learner's advantage variance, mean too
            row[f"adv_var_{key.split('/')[1]}"] = sum(r[key] for r in train) / len(train)
    return [row]


# -- executors -----------------------------------------------------------------------------------
def _threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _worker_init(parent: int) -> None:
    """In each local worker process: Ctrl-C is the parent's to handle (a terminal sends it to
    the whole process group), and the worker exits as soon as its parent is gone (killed,
    even with SIGKILL), instead of finishing the queue on its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    tqdm.set_lock(threading.RLock())  # not tqdm's default multiprocessing lock, which a stopped worker would leak

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_local(runs: list[dict], workers: int, on_result) -> None:
    if workers == 1:
        for run in runs:
            on_result(execute_run(run))
        return

    # spawn: a forked child would inherit the parent's torch thread pools
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    try:
        futures = {pool.submit(execute_run, run, _threads(workers)): run for run in runs}
        for future in as_completed(futures):
            try:
                on_result(future.result())
            except BrokenProcessPool as err:  # a worker was killed (e.g. out of memory): the run failed
                on_result(
                    {
                        "id": futures[future]["id"],
                        "status": "failed",
                        "error": f"worker process died: {err}",
                        "rows": [],
                        "wall_s": math.nan,
                        "worker": "",
                    }
                )
    except BaseException:  # Ctrl-C (or any error here): cancel the queue, stop the running runs
        workers_now = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers_now:
            process.terminate()
        for process in workers_now:
            process.join()
        pool.shutdown(wait=True)  # the pool's manager thread notices and releases its queues
        raise
    pool.shutdown()


def run_ray(runs: list[dict], executor, on_result) -> None:
    import ray

    started = not ray.is_initialized()
    if started:
        if executor.address:
            ray.init(address=executor.address, log_to_driver=False)
        else:
            ray.init(num_cpus=executor.workers, include_dashboard=False, log_to_driver=False)
    pending = {}
    try:
        remote = ray.remote(num_cpus=1, num_gpus=executor.gpus_per_run, max_retries=0)(execute_run)
        threads = None if executor.address else _threads(executor.workers)
        pending = {remote.remote(run, threads): run for run in runs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                run = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - the task itself died (node lost, killed)
                    result = {
                        "id": run["id"],
                        "status": "failed",
                        "error": _one_line(err),
                        "rows": [],
                        "wall_s": math.nan,
                        "worker": "",
                    }
                if not (Path(run["run_dir"]) / "result.json").is_file():  # a remote node without the shared folder
                    write_json(Path(run["run_dir"]) / "result.json", result)
                on_result(result)
    except KeyboardInterrupt:
        for ref in pending:  # queued and running tasks stop with the batch
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def run_batch(
    cfg: BatchConfig, out_dir: str | Path | None = None, progress: bool = True, overwrite: bool = False
) -> Path:
    """Execute the runs that have not finished, then (re)build the report; returns the batch folder.
    A folder holding this kind of run is continued (that is how a batch resumes); one holding a
    study or training run is refused unless `overwrite` (see `claim_run_dir`)."""
    batch_dir = check_run_dir(
        Path(out_dir) if out_dir is not None else Path(cfg.output_dir) / cfg.name,
        "batch",
        overwrite=overwrite,
        default=out_dir is None,
        reuse_same_kind=True,
    )
    with run_lock(batch_dir):  # one batch per folder: a second one into it stops with one line
        claim_run_dir(batch_dir, "batch", overwrite=overwrite, reuse_same_kind=True)
        return _run_batch(cfg, batch_dir, progress)


def _run_batch(cfg: BatchConfig, batch_dir: Path, progress: bool) -> Path:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cfg.executor.kind == "local" and cfg.executor.workers > cores:
        print(
            f"mas-credit: warning: executor.workers={cfg.executor.workers} is more than this machine's {cores} cores: "
            f"the runs share them and each takes longer (set executor.workers={cores})",
            file=sys.stderr,
        )
    runs = expand(cfg, batch_dir)
    todo = [run for run in runs if not finished(run)]
    skipped = [run["id"] for run in runs if run not in todo]
    start = time.perf_counter()
    done: list[str] = []

    def on_result(result: dict) -> None:
        done.append(result["id"])
        if progress:
            status = "ok" if result["status"] == "ok" else f"FAILED: {result['error']}"
            print(
                f"[{len(done) + len(skipped)}/{len(runs)}] {result['id']} ({result['wall_s']:.1f} s) {status}",
                flush=True,
            )

    meta = {
        "name": cfg.name,
        "base": cfg.base,
        "mode": cfg.mode,
        "grid": {k: list(v) for k, v in cfg.grid.items()},
        "paired": {k: _show(v) for k, v in cfg.paired.items()},
        "extra_grids": [{k: list(v) for k, v in g.items()} for g in cfg.extra_grids],
        "grid_keys": list(cfg.grid),
        "executor": {"kind": cfg.executor.kind, "workers": cfg.executor.workers, "address": cfg.executor.address},
        "runs": [{"id": r["id"], "grid": r["grid"]} for r in runs],
        "executed": [r["id"] for r in todo],
        "skipped": skipped,
        "wall_s": None,
    }
    write_json(batch_dir / "batch.json", meta)  # `mas-credit report` can show a batch still running (or killed)
    if progress and skipped:
        print(f"{len(skipped)} of {len(runs)} runs already finished; executing the other {len(todo)}", flush=True)
    interrupted = False
    try:
        if todo and cfg.executor.kind == "ray":
            run_ray(todo, cfg.executor, on_result)
        elif todo:
            run_local(todo, cfg.executor.workers, on_result)
    except KeyboardInterrupt:
        interrupted = True
    write_json(batch_dir / "batch.json", {**meta, "wall_s": time.perf_counter() - start, "interrupted": interrupted})
    render_batch(batch_dir)
    if interrupted:
        raise BatchInterrupted(
            f"interrupted: {len(done)} of {len(todo)} runs finished, the rest cancelled or stopped; partial "
            f"report in {batch_dir}/batch.md; run the same command again to finish the rest"
        )
    return batch_dir


# -- the report ------------------------------------------------------------------------------
def batch_frame(batch_dir: Path):
    """One row per (run, game, estimator, seed) of every run in batch.json, from the run folders."""

    meta = read_json(batch_dir / "batch.json", "run the batch again into this folder (finished runs are kept)")
    rows = []
    for run in meta["runs"]:
        path = batch_dir / "runs" / run["id"] / "result.json"
        result = (
            read_json(path, "run the batch again into this folder: it runs that cell again and keeps the others")
            if path.is_file()
            else {"status": "not run", "error": "not run yet, or killed before it finished", "rows": []}
        )
        base = {
            "run": run["id"],
            **{f"grid/{k}": run["grid"][k] for k in meta["grid_keys"]},
            "status": result["status"],
            "error": result.get("error", ""),
            "result_wall_s": result.get("wall_s", math.nan),
            "worker": result.get("worker", ""),
        }
        rows += [{**base, **row} for row in result["rows"]] or [base]
    frame = pd.DataFrame(rows)
    if {"eval_success", "eval_success_before"} <= set(frame):  # a training run's gain, paired within the run
        frame.insert(
            list(frame).index("eval_success") + 1, "eval_gain", frame["eval_success"] - frame["eval_success_before"]
        )
    return frame, meta


def _cell_keys(frame, meta) -> list[str]:
    """Cells: the grid's keys (less those the rows already carry: seeds, estimators, games) plus game and estimator."""
    carried = {"seeds", "seed", "estimators", "game", "games"}
    keys = [f"grid/{k}" for k in meta["grid_keys"] if k not in carried and f"grid/{k}" in frame]
    return keys + [k for k in ("game", "estimator") if k in frame]


def summarise_cells(frame, keys: list[str], metrics: list[str]):
    """Per cell: the number of seeds, and the mean and 95% CI half-width of each metric across them."""

    rows = []
    ok = frame[frame["status"] == "ok"]
    for cell, part in ok.groupby(keys, sort=False) if keys else [((), ok)]:
        cell = cell if isinstance(cell, tuple) else (cell,)
        row = dict(zip(keys, cell))
        row["seeds"] = int(part[REPLICATE].nunique())
        for m in metrics:
            row[m], row[f"{m}_ci"] = mean_ci(part[m].to_numpy(dtype=float))
        rows.append(row)
    return pd.DataFrame(rows)


def render_batch(batch_dir: str | Path) -> str:
    """(Re)write batch.parquet, batch.md and the plots from the run folders; returns batch.md's text."""
    batch_dir = Path(batch_dir)
    if not (batch_dir / "batch.json").is_file():
        raise FileNotFoundError(f"{batch_dir} has no batch.json; give the folder of a batch (runs/<batch name>/)")
    frame, meta = batch_frame(batch_dir)
    write_parquet(batch_dir / "batch.parquet", frame)
    ok = frame[frame["status"] == "ok"]
    metrics = (
        STUDY_TABLE
        if meta["mode"] == "study"
        else [
            "eval_success_before",
            "eval_success",
            "eval_gain",
            "auc",
            "episodes_to_target",
            "reached_target",
            "learner_correct_auc",
            "learner_correct",
            "eval_reward",
            "train_reward_last",
        ]
        + sorted(
            (c for c in frame if c.startswith(("eval_correct_agent_", "credit_agent_", "adv_var_agent_"))),
            key=lambda c: (c.rsplit("_", 1)[0], int(c.rsplit("_", 1)[1])),
        )
    )
    # per-agent columns for the first agents only: a team of 64 would give 192 columns and plots (all of
    # them stay in batch.parquet)
    metrics = [m for m in metrics if not m.startswith(PER_AGENT) or int(m.rsplit("_", 1)[1]) < PER_AGENT_SHOWN]
    metrics = [m for m in metrics if m in frame]
    keys = _cell_keys(frame, meta)
    cells = summarise_cells(frame, keys, metrics) if len(ok) else None
    names = [k.removeprefix("grid/") for k in keys]
    failed = frame[frame["status"] != "ok"].drop_duplicates("run")
    runs = frame.drop_duplicates("run")
    lines = [
        f"# Batch: {meta['name']}",
        "",
        f"Base experiment `{Path(meta['base']).name}` ({meta['mode']}), grid "
        f"{json.dumps({k: meta['grid'][k] for k in meta['grid_keys']})}"
        + "".join(f" plus {json.dumps(g)}" for g in meta.get("extra_grids", []))
        + "; "
        f"{len(runs)} runs: {int((runs['status'] == 'ok').sum())} finished, {len(failed)} failed or not (yet) run. "
        f"Executor {meta['executor']['kind']} with {meta['executor']['workers']} workers; the last invocation "
        + (
            f"was interrupted (Ctrl-C) after {meta['wall_s']:.1f} s: of its {len(meta['executed'])} runs, those not "
            "finished "
            f"were cancelled or stopped; run the batch again to finish them."
            if meta.get("interrupted")
            else f"executed {len(meta['executed'])} runs and skipped {len(meta['skipped'])} already finished, "
            f"in {meta['wall_s']:.1f} s."
            if meta["wall_s"] is not None
            else f"is still running or was killed ({len(meta['executed'])} runs to execute)."
        ),
        "",
        "## Results",
        "",
        f"Mean over seeds ± the half-width of a 95% confidence interval (Student t; no ± with one seed) per cell "
        f"({', '.join(names)}).",
        "",
    ]
    if cells is not None:
        lines += ["| " + " | ".join(names + ["seeds"] + metrics) + " |", "|" + "---|" * (len(names) + 1 + len(metrics))]
        for _, row in cells.iterrows():
            lines.append(
                "| "
                + " | ".join(
                    [str(row[k]) for k in keys]
                    + [str(row["seeds"])]
                    + [cell_text(row[m], row[f"{m}_ci"], bounds=RANGES.get(m)) for m in metrics]
                )
                + " |"
            )
    else:
        lines.append("No run finished.")
    curves = learning_curves(batch_dir, ok, keys) if meta["mode"] == "train" and len(ok) else None
    if meta["mode"] == "train" and len(ok) and (ok["estimator"] == "grpo").any() and (ok["estimator"] != "grpo").any():
        lines += _versus_value_section(ok, keys, "estimator", "grpo", title="grpo")
    for key, value in meta.get("paired", {}).items():
        if meta["mode"] == "train" and len(ok) and f"grid/{key}" in ok:
            lines += _versus_value_section(ok, keys, f"grid/{key}", value)
    if curves is not None:
        lines += [
            "",
            "Learning curves (greedy team success on held-out tasks, mean and 95% CI band over seeds, one colour "
            "per estimator): [learning_curves.png](plots/learning_curves.png).",
        ]
    if meta["mode"] == "train" and len(ok) and "coalition_evals" in ok:
        lines += compute_frontier(batch_dir, ok, keys)
    lines += ["", "## Failed runs", ""]
    lines += [f"- `{r['run']}`: {r['error']}" for _, r in failed.iterrows()] or ["None."]
    lines += [
        "",
        _compute_section(runs),
        _checklist_section(batch_dir, ok, cells, keys, meta),
        "Plots: " + ", ".join(f"[{m}](plots/{m}.png)" for m in metrics),
        "",
    ]
    text = "\n".join(lines)
    write_text(batch_dir / "batch.md", text)
    if cells is not None:
        _plots(batch_dir, cells, keys, metrics)
    return text


PAIRED = ("auc", "eval_success", "learner_correct_auc", "learner_correct")
PER_AGENT = ("eval_correct_agent_", "credit_agent_", "adv_var_agent_")
PER_AGENT_SHOWN = 8
"""batch.md shows the per-agent columns (and plots) of agents 0..7; batch.parquet keeps every agent's"""
"""training metrics compared with grpo seed by seed"""


def _versus_value_section(ok, keys: list[str], column: str, reference: str, title: str = "") -> list[str]:
    """Every other value of one column against its `reference` value (each estimator against grpo;
    the batch's `paired` grid keys), in the same cell and seed: the mean difference of the learning
    metrics, its 95% CI and a plain verdict (better / worse: the CI excludes 0)."""
    group_keys = [k for k in keys if k != column]
    metrics = [m for m in PAIRED if m in ok]
    name = column.removeprefix("grid/")
    title = title or f"{name} = {reference}"
    lines = [
        "",
        f"## Against {title} (paired by seed)",
        "",
        f"Difference to {title} in the same cell and seed, mean ± 95% CI; better / worse when the CI excludes 0.",
        "",
        "| "
        + " | ".join([k.removeprefix("grid/") for k in group_keys] + [name] + [f"Δ {m}" for m in metrics])
        + " | verdict (auc) |",
        "|" + "---|" * (len(group_keys) + 2 + len(metrics)),
    ]
    for cell, part in ok.groupby(group_keys, sort=False) if group_keys else [((), ok)]:
        cell = cell if isinstance(cell, tuple) else (cell,)
        base = part[part[column] == reference].set_index(REPLICATE)
        for value, rows in part[part[column] != reference].groupby(column, sort=False):
            rows = rows.set_index(REPLICATE)
            common = rows.index.intersection(base.index)
            diffs = {m: mean_ci((rows.loc[common, m] - base.loc[common, m]).to_numpy(dtype=float)) for m in metrics}
            lines.append(
                "| "
                + " | ".join([str(c) for c in cell] + [str(value)] + [cell_text(*diffs[m]) for m in metrics])
                + f" | {_verdict(*diffs.get('auc', (math.nan, math.nan)))} ({len(common)} seeds) |"
            )
    return lines


def _verdict(mean: float, half: float) -> str:
    if half != half:
        return "–"
    return "better" if mean - half > 0 else "worse" if mean + half < 0 else "no clear difference"


def learning_curves(batch_dir: Path, ok, keys: list[str]):
    """plots/learning_curves.png: per cell without the estimator, greedy success against training
    iterations, mean over seeds with a 95% CI band (Student t), one colour per estimator. Returns
    the figure's data (cell -> estimator -> iterations, mean, half-width), or None without evals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    group_keys = [k for k in keys if k != "estimator"]
    estimators = list(dict.fromkeys(ok["estimator"]))
    data: dict = {}
    for (run_id, estimator), part in ok.groupby(["run", "estimator"], sort=False):
        _, evals = read_metrics(batch_dir / "runs" / run_id)
        cell = tuple(str(part.iloc[0][k]) for k in group_keys)
        for record in evals:
            if "eval/success" in record:
                data.setdefault(cell, {}).setdefault(estimator, {}).setdefault(record["iteration"], []).append(
                    record["eval/success"]
                )
    if not data:
        return None
    palette = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 3.6), squeeze=False)
    out = {}
    for ax, (cell, per_estimator) in zip(axes[0], data.items()):
        for estimator, points in per_estimator.items():
            x = sorted(points)
            stats = [mean_ci(points[i]) for i in x]
            mean = np.array([m for m, _ in stats])
            half = np.nan_to_num(np.array([h for _, h in stats]))
            colour = palette(estimators.index(estimator) % 10)
            ax.plot(
                x, mean, color=colour, label=estimator, **line_style(estimators.index(estimator))
            )  # equal curves stay visible
            ax.fill_between(x, mean - half, mean + half, color=colour, alpha=0.15)
            out.setdefault(cell, {})[estimator] = (x, mean, half)
        ax.set_title(" / ".join(cell) or "all runs")
        ax.set_xlabel("training iteration")
        ax.set_ylabel("greedy team success")
        ax.set_ylim(-0.05, 1.05)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(batch_dir / "plots" / "learning_curves.png", fig)
    plt.close(fig)
    return out


def compute_frontier(batch_dir: Path, ok, keys: list[str]) -> list[str]:
    """The compute-vs-signal frontier (the survey's Sec. 9.2): per cell without the estimator, each
    estimator's coalition evaluations against what its learners learned. Writes plots/frontier.png
    (the learners' greedy correctness, mean over seeds, against training episodes and against the
    coalition evaluations spent so far) and returns the section's lines: per estimator its
    evaluations per episode, the learners' final correctness and team success, and whether it is on
    the frontier (no other estimator of the cell reached a higher final correctness with fewer
    evaluations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    group_keys = [k for k in keys if k != "estimator"]
    column = "learner_correct" if "learner_correct" in ok else "eval_success"
    curves: dict = {}
    for (run_id, estimator), part in ok.groupby(["run", "estimator"], sort=False):
        train, evals = read_metrics(batch_dir / "runs" / run_id)
        learners = {k.split("/")[1] for r in train for k in r if k.startswith("loss/agent_") and k.endswith("/turns")}
        spent = np.cumsum([0.0] + [r.get("cf/evals", 0.0) for r in train])  # before iteration k
        played = np.cumsum([0.0] + [len(r["episode_turns"]) for r in train])
        cell = tuple(str(part.iloc[0][k]) for k in group_keys)
        for record in evals:
            keys_ = [k for k in record if "/correct/" in k and k.rsplit("/", 1)[1] in learners]
            value = float(np.mean([record[k] for k in keys_])) if keys_ else record.get("eval/success", math.nan)
            k = min(int(record["iteration"]), len(spent) - 1)
            curves.setdefault(cell, {}).setdefault(estimator, {}).setdefault(k, []).append((played[k], spent[k], value))
    lines = [
        "",
        "## Compute and signal",
        "",
        f"Per cell, each estimator's coalition evaluations against its learners' final greedy correctness "
        f"(`{column}`, mean ± 95% CI over seeds); `frontier`: no other estimator of the cell spent no more "
        "evaluations and reached no lower a final value (one of the two strictly). Curves against training "
        "episodes and against evaluations spent: [frontier.png](plots/frontier.png).",
        "",
        "| " + " | ".join(k.removeprefix("grid/") for k in group_keys) + " | estimator | evaluations per episode | "
        f"evaluations per run | {column} | eval_success | frontier |",
        "|" + "---|" * (len(group_keys) + 6),
    ]
    for cell_values, part in ok.groupby(group_keys, sort=False) if group_keys else [((), ok)]:
        cell_values = cell_values if isinstance(cell_values, tuple) else (cell_values,)
        rows = []
        for estimator, runs_ in part.groupby("estimator", sort=False):
            spent = float(runs_["coalition_evals"].mean())
            value, half = mean_ci(runs_[column].to_numpy(float))
            success, success_half = mean_ci(runs_["eval_success"].to_numpy(float))
            per_episode = spent / max(float(runs_["episodes"].mean()), 1.0)
            rows.append((estimator, per_episode, spent, value, half, success, success_half))
        for estimator, per_episode, spent, value, half, success, success_half in rows:
            dominated = any(  # another spent no more and learned no less, and is better in one of them
                o[0] != estimator and o[2] <= spent and o[3] >= value - 1e-12 and (o[2] < spent or o[3] > value + 1e-12)
                for o in rows
            )
            lines.append(
                "| "
                + " | ".join(str(v) for v in cell_values)
                + f" | {estimator} | {per_episode:,.1f} | {spent:,.0f} | {cell_text(value, half)} | "
                f"{cell_text(success, success_half)} | {'' if dominated else 'yes'} |"
            )
    if not curves:  # no run recorded an evaluation: the table stands alone
        return lines
    palette = plt.get_cmap("tab10")
    estimators = list(dict.fromkeys(ok["estimator"]))
    fig, axes = plt.subplots(2, len(curves), figsize=(4.2 * len(curves), 6.6), squeeze=False)
    for col, (cell, per_estimator) in enumerate(curves.items()):
        for estimator, points in per_estimator.items():
            iterations = sorted(points)
            x_played = [np.mean([p[0] for p in points[k]]) for k in iterations]
            x_spent = [np.mean([p[1] for p in points[k]]) for k in iterations]
            y = [np.mean([p[2] for p in points[k]]) for k in iterations]
            style = dict(color=palette(estimators.index(estimator) % 10), label=estimator)
            axes[0][col].plot(x_played, y, **style, **line_style(estimators.index(estimator)))
            axes[1][col].plot(x_spent, y, **style, **line_style(estimators.index(estimator)))
        axes[0][col].set_title(" / ".join(cell) or "all runs")
        axes[0][col].set_xlabel("training episodes")
        axes[1][col].set_xlabel("coalition evaluations spent")
        axes[1][col].set_xscale("symlog", linthresh=1e3)
        for row in (0, 1):
            axes[row][col].set_ylabel(
                "learners' greedy correctness" if column == "learner_correct" else "greedy success"
            )
            axes[row][col].set_ylim(-0.05, 1.05)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(batch_dir / "plots" / "frontier.png", fig)
    plt.close(fig)
    return lines


def _compute_section(runs) -> str:
    lines = ["## Compute", "", "| run | status | wall s | worker |", "|---|---|---|---|"]
    for _, r in runs.iterrows():
        lines.append(f"| `{r['run']}` | {r['status']} | {cell_text(r['result_wall_s'], math.nan)} | {r['worker']} |")
    return "\n".join(lines + ["", f"Sum of run wall times: {runs['result_wall_s'].fillna(0).sum():.1f} s.", ""])


def _checklist_section(batch_dir: Path, ok, cells, keys, meta) -> str:
    """The checklist items that need more than one run: the baseline with the same model, variance across seeds,
    GPU-hours and credit-assignment overhead in all."""
    checklists = []
    for run_id in dict.fromkeys(ok["run"]) if len(ok) else []:
        path = batch_dir / "runs" / run_id / "checklist.json"
        if path.is_file():
            checklists.append(read_json(path, f"run the batch again with --overwrite, or remove runs/{run_id}"))
    models = sorted({c["model"]["name"] for c in checklists})
    with_grpo = sorted({c["model"]["name"] for c in checklists if c["baseline"]["episode_level_grpo_same_model"]})
    gpu_hours = sum(c["compute"]["gpu_hours"] for c in checklists)
    overhead: dict = {}
    for c in checklists:
        for name, o in c["overhead"].items():
            acc = overhead.setdefault(
                name, {"coalition_evals": 0.0, "llm_calls": 0.0, "tokens": 0.0, "seconds": 0.0, "runs": 0}
            )
            for k in ("coalition_evals", "llm_calls", "tokens", "seconds"):
                acc[k] += o[k]
            acc["runs"] += 1
    seeds = sorted(set(cells["seeds"])) if cells is not None and len(cells) else []
    lines = [
        "## Reporting checklist (batch)",
        "",
        "Each run's own checklist is in runs/<id>/checklist.json and its summary.md; across the batch:",
        "",
        f"- Base models: {', '.join(models) or '–'}.",
        "- Episode-level baseline (grpo) with the same model: "
        f"{'yes for ' + ', '.join(with_grpo) if with_grpo else 'no'}"
        + (f"; missing for {', '.join(sorted(set(models) - set(with_grpo)))}" if set(models) - set(with_grpo) else "")
        + ".",
        f"- Variance across seeds: seeds per cell {seeds or '–'}"
        + (
            "; every cell has a 95% CI."
            if seeds and min(seeds) >= 2
            else "; cells with one seed have no CI (add seeds to the grid)."
        ),
        f"- Compute: GPU-hours {gpu_hours:.4f} in all.",
        "- Credit-assignment overhead in all: "
        + (
            "; ".join(
                f"`{name}` {o['coalition_evals']:.0f} coalition evaluations, {o['llm_calls']:.0f} LLM calls, "
                f"{o['tokens']:.0f} tokens, "
                f"{o['seconds']:.2f} s over {o['runs']} runs"
                for name, o in overhead.items()
            )
            or "–"
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def _plots(batch_dir: Path, cells, keys, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [" / ".join(str(row[k]) for k in keys) for _, row in cells.iterrows()]
    for m in metrics:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(labels) + 1.5), 3.8))
        errors = np.nan_to_num(cells[f"{m}_ci"].to_numpy(dtype=float), nan=0.0)
        ax.bar(np.arange(len(labels)), cells[m].to_numpy(dtype=float), yerr=errors, capsize=3, color="tab:blue")
        ax.set_xticks(np.arange(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(m)
        ax.set_title(f"{m}: mean over seeds, 95% CI")
        save_figure(batch_dir / "plots" / f"{m}.png", fig)
        plt.close(fig)
