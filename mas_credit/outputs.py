"""Run folders and atomic file writes for run outputs.

Every file is written to a temporary name in the same folder and renamed into place, so
a reader (or a run killed midway) never sees half a file. The temporary file is removed
if the write fails or is interrupted.

`claim_run_dir` gives a run its folder before any work: each run folder records its kind
(`kind.json`: study, train or batch). A run refuses a folder that holds another run unless
`overwrite` is set (the CLI's --overwrite), and an overwrite removes the old outputs. A
default folder (no --out) that is taken is not touched: the run gets `<name>-2`, `-3`, ...

`run_lock` makes a run folder one process's at a time (a study, a training run or its
resume, a batch): a second process on the same folder stops at once with one line. The lock
is an OS file lock on `.<name>.lock` beside the folder, so a killed process never leaves it
held; the one that takes it next clears any staging folder a killed study left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


@contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path beside `path`; on success it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def write_jsonl(path: str | Path, records) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")


def write_parquet(path: str | Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def save_figure(path: str | Path, figure) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


KIND_FILE = "kind.json"
RUN_KINDS = ("study", "train", "batch")


class RunDirError(ValueError):
    """A run folder that cannot be used (held by another run, a file, not writable): one line
    that names the folder and the fix."""


class BatchInterrupted(Exception):
    """Ctrl-C stopped a batch: queued runs were cancelled, running ones stopped, the partial
    report written. The message is the one line the CLI prints. (Here, not in `batch`, so the
    CLI can catch it without importing pandas for every verb.)"""


def run_kind(run_dir: str | Path) -> str | None:
    """What a folder holds: study, train or batch (from kind.json, or for folders made
    before it existed, from their files); None for an empty folder or one holding other files."""
    run_dir = Path(run_dir)
    try:
        return json.loads((run_dir / KIND_FILE).read_text())["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for kind, marks in (
        ("batch", ["batch.json"]),
        ("train", ["metrics.jsonl", "checkpoint"]),
        ("study", ["credit.parquet", "config.yaml"]),
    ):
        if any((run_dir / mark).exists() for mark in marks):
            return kind
    return None


def _occupied(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def check_run_dir(
    run_dir: str | Path, kind: str, overwrite: bool = False, default: bool = False, reuse_same_kind: bool = False
) -> Path:
    """The folder a `kind` run may write to (module docstring), checked, nothing written.
    `default`: the folder was not chosen by the user (a taken one is skipped for <name>-2, ...).
    `reuse_same_kind`: a folder holding the same kind is continued, not refused (a batch resumes)."""
    run_dir = Path(run_dir)

    def taken(path: Path) -> bool:
        if path.exists() and not path.is_dir():
            return True
        return _occupied(path) and not (reuse_same_kind and run_kind(path) == kind)

    if default:
        base, n = run_dir, 1
        while taken(run_dir):
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a folder; give --out a folder (new or empty)")
    held = run_kind(run_dir)
    if _occupied(run_dir) and not (reuse_same_kind and held == kind):
        if held is None:
            raise RunDirError(f"{run_dir} holds files that are not a mas-credit run; give --out a new or empty folder")
        if not overwrite:
            resume = f", continue it with --resume {run_dir}" if held == kind == "train" else ""
            raise RunDirError(
                f"{run_dir} already holds a {held} run; give --overwrite to replace it{resume}, or choose another --out"
            )
    return run_dir


def _mark(run_dir: Path, kind: str, shown: Path | None = None) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / KIND_FILE, {"kind": kind})
    except OSError as err:
        raise RunDirError(
            f"cannot write to {shown or run_dir} ({err.strerror or err}); give --out a writable folder (or set "
            f"output_dir to one)"
        ) from None


def claim_run_dir(
    run_dir: str | Path, kind: str, overwrite: bool = False, default: bool = False, reuse_same_kind: bool = False
) -> Path:
    """`check_run_dir`, then the folder made and marked with its kind before any work; an
    overwritten run's old outputs are removed first."""
    run_dir = check_run_dir(run_dir, kind, overwrite, default, reuse_same_kind)
    if _occupied(run_dir) and not (reuse_same_kind and run_kind(run_dir) == kind):
        shutil.rmtree(run_dir)
    _mark(run_dir, kind)
    return run_dir


@contextmanager
def run_lock(run_dir: str | Path):
    """Hold `run_dir` for this process (module docstring); RunDirError if another holds it. Staging
    folders of `staged_run_dir` that a killed run left beside it are removed once the lock is held."""
    run_dir = Path(run_dir)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(run_dir.with_name(f".{run_dir.name}.lock")), timeout=0)
        lock.acquire()
    except Timeout:
        raise RunDirError(
            f"{run_dir} is in use by another mas-credit process (a study, training run or batch writing there); "
            f"wait for it to finish or give --out another folder"
        ) from None
    except OSError as err:
        raise RunDirError(
            f"cannot write to {run_dir} ({err.strerror or err}); give --out a writable folder "
            f"(or set output_dir to one)"
        ) from None
    try:
        for stale in [*run_dir.parent.glob(f".{run_dir.name}.tmp-*"), *run_dir.parent.glob(f".{run_dir.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        yield run_dir
    finally:
        lock.release()


@contextmanager
def staged_run_dir(run_dir: Path, kind: str):
    """For a run that writes its outputs at the end (a study): yields a fresh sibling folder to
    write into, marked with its kind (so an unwritable place fails before any work); on
    success it replaces `run_dir` (an overwritten run's old outputs go, all of them); on an
    error or Ctrl-C it is removed, leaving `run_dir` as it was: nothing, or the previous
    complete outputs."""
    work = run_dir.with_name(f".{run_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        _mark(work, kind, shown=run_dir)
        yield work
        old = run_dir.with_name(f".{run_dir.name}.old-{os.getpid()}")
        if run_dir.exists():
            os.replace(run_dir, old)
        os.replace(work, run_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_json(path: str | Path, fix: str):
    """A JSON file a run wrote; a cut or garbled one is a one-line RunDirError naming it and `fix`."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is damaged (not complete JSON: {str(err).splitlines()[0]}); {fix}") from None


# -- manifest.json ----------------------------------------------------------------------
MANIFEST = "manifest.json"
RENDERED = frozenset(
    {"summary.md", "checklist.json", "learning.json", "batch.md", "batch.parquet", "result.json", "error.txt", MANIFEST}
)
"""what `report` rewrites (or a batch adds after the run), so a manifest leaves it out"""


def _manifest_files(run_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in run_dir.rglob("*")
        if p.is_file()
        and p.suffix != ".png"
        and p.name not in RENDERED
        and not any(part.startswith(".") for part in p.relative_to(run_dir).parts)
    )


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(run_dir: str | Path) -> None:
    """manifest.json: the size and sha256 of every file a finished run wrote (not what `report`
    rewrites), so later damage (a cut file, a flipped byte) is found, not read."""
    run_dir = Path(run_dir)
    files = {
        str(p.relative_to(run_dir)): {"size": p.stat().st_size, "sha256": _digest(p)} for p in _manifest_files(run_dir)
    }
    write_json(run_dir / MANIFEST, {"files": files})


def verify_manifest(run_dir: str | Path, fix: str) -> bool:
    """Check every file of the run's manifest.json (size, then sha256): RunDirError naming the first
    damaged or missing one and `fix`. False when the run has no manifest (a run still going, killed,
    or written before manifests), True when all match."""
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).is_file():
        return False
    manifest = read_json(run_dir / MANIFEST, fix)
    for name, entry in manifest["files"].items():
        path = run_dir / name
        if not path.is_file():
            raise RunDirError(f"{path} is missing (the run's manifest lists it); {fix}")
        size = path.stat().st_size
        if size != entry["size"]:
            raise RunDirError(
                f"{path} is damaged ({size:,} bytes; the run wrote {entry['size']:,}, says its manifest); {fix}"
            )
        if _digest(path) != entry["sha256"]:
            raise RunDirError(f"{path} is damaged (its sha256 is not the one the run wrote, says its manifest); {fix}")
    return True


# -- metrics.jsonl ----------------------------------------------------------------------
def is_metric_record(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("kind") in ("train", "eval")


def metric_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl. A last line cut short (what a run killed mid-write
    leaves) is dropped; a damaged line anywhere else is a one-line error."""
    lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    bad = [k for k, line in enumerate(lines) if not is_metric_record(line)]
    if bad and bad != [len(lines) - 1]:
        raise RunDirError(
            f"{path}: line {bad[0] + 1} is not a metric record (a damaged file); "
            f"resume from the checkpoint (mas-credit train --resume) or train again"
        )
    return [json.loads(line) for k, line in enumerate(lines) if k not in bad]


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    records = metric_records(Path(run_dir) / "metrics.jsonl")
    return [r for r in records if r["kind"] == "train"], [r for r in records if r["kind"] == "eval"]


def read_costs(run_dir: Path) -> dict:
    """A study's `costs.json`: the run's facts and, under "records", one cost record per
    (game, seed, estimator) (written as "units" before 2026-11-26; read either way)."""
    costs = json.loads((Path(run_dir) / "costs.json").read_text())
    if "units" in costs:
        costs["records"] = costs.pop("units")
    return costs
