"""Running a study: every pending run is claimed in the store, trained (resuming its run folder
if a previous attempt died), evaluated class-wise with the study's attacks, and recorded in one
transaction. A failure (exception, out-of-memory, killed worker) is recorded with its traceback
and retried up to ``retries`` times while the other runs go on.

Executors: ``local`` (in this process, or N worker processes; one per GPU where GPUs exist) and
``ray`` (a Ray cluster at ``address``, or a local Ray instance); the per-class results are the
same whichever runs them, since each run is seeded by its own config.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from classwise.errors import ClasswiseError, ConfigError
from classwise.progress import progress_bar
from classwise.provenance import versions
from classwise.registry import Registry
from classwise.study.export import metric_rows
from classwise.study.spec import Run, Study, describe_point
from classwise.study.store import STORE_FILE, Store, worker_name
from classwise.train import train
from classwise.train.rundir import CONFIG
from classwise.train.track import Tracking

log = logging.getLogger(__name__)
STORE = STORE_FILE


@dataclass(frozen=True)
class Outcome:
    done: int
    failed: int
    pending: int


@dataclass(frozen=True)
class RunOptions:
    """How each run of a study is trained: its device and where its curves go (TensorBoard or
    MLflow, under the run's id); neither is part of a run's id."""

    device: str = "cpu"
    track: Tracking = field(default_factory=Tracking)

    def on(self, device: str) -> RunOptions:
        return replace(self, device=device)


def execute_run(run: Run, study_dir: Path, how: RunOptions) -> list[dict[str, Any]]:
    """Train (or resume) one run in ``study_dir/runs/<id>``; its final evaluation (the study's
    evaluation, part of its config) is its result. Returns its metric rows."""
    run_dir = study_dir / "runs" / run.run_id
    track = how.track.for_run(run.run_id) if how.track else None
    resume = (run_dir / CONFIG).exists()
    result = train(run.config, run_dir, resume=resume, device=how.device, progress=False, track=track)
    return metric_rows(result.test)


def _attempt(store: Store, run: Run, study: Study, study_dir: Path, how: RunOptions) -> bool:
    """Claim, execute and record one run in this process; False if another worker had it."""
    if not store.claim(run.run_id, worker_name(), study.retries + 1):
        return False
    try:
        rows = execute_run(run, study_dir, how)
    except ClasswiseError as exc:  # bad input found only when the run started: its message, no traceback
        store.fail(run.run_id, traceback.format_exc())  # kept in the store (classwise study status)
        log.warning("run %s failed: %s", run.run_id, exc)
        return True
    except Exception:
        store.fail(run.run_id, traceback.format_exc())
        log.warning("run %s failed:\n%s", run.run_id, traceback.format_exc())  # a bug: its traceback helps
        return True
    store.finish(run.run_id, rows, versions())
    return True


def _todo(store: Store, study: Study) -> list[Run]:
    state = {r["run_id"]: r for r in store.runs()}
    limit = study.retries + 1
    return [
        run
        for run in study.runs
        if state[run.run_id]["status"] == "pending"
        or (state[run.run_id]["status"] == "failed" and state[run.run_id]["attempts"] < limit)
    ]


@dataclass(frozen=True)
class Execution:
    """What an executor is given: the store, the study and its folder, and how to run."""

    store: Store
    study: Study
    study_dir: Path
    how: RunOptions
    progress: bool
    workers: int = 0
    address: str | None = None


EXECUTORS: Registry[Callable[[Execution], None]] = Registry("executor")


def run_study(
    study: Study,
    study_dir: str | Path,
    *,
    executor: str = "local",
    workers: int = 0,
    address: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    only: Sequence[str] = (),
    track: Tracking | None = None,
) -> Outcome:
    """Run every unfinished run of ``study``; finished runs (same id) are skipped. ``only``: run just
    these runs (ids as ``study status`` shows them), in the order given, the rest staying pending;
    the outcome then counts these runs. ``track`` sends each run's curves to TensorBoard (a
    subfolder per run id) or MLflow (a run per id)."""
    execute = EXECUTORS.get(executor)
    how = RunOptions(device, track or Tracking())
    how.track.check()
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    chosen = replace(study, runs=select(study, only)) if only else study
    study_dir = Path(study_dir)
    store = Store(study_dir / STORE)
    with exclusive(study_dir):
        store.register(study.runs)  # the whole grid is the plan, whichever runs go now
        released = store.release_stale()
        if released:
            log.warning("%d run(s) of an interrupted study resume from their checkpoints", released)
        execute(Execution(store, chosen, study_dir, how, progress, workers, address))
    return outcome(store, chosen)


def select(study: Study, ids: Sequence[str]) -> tuple[Run, ...]:
    """The study's runs with these ids, in the order given (a repeated id once)."""
    by_id = {r.run_id: r for r in study.runs}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ConfigError(
            f"study {study.name} has no run {', '.join(map(repr, unknown))}; "
            "'classwise study status' lists its runs by id"
        )
    return tuple(by_id[i] for i in dict.fromkeys(ids))


@contextlib.contextmanager
def exclusive(study_dir: Path) -> Iterator[None]:
    """Hold the study folder's lock: a second ``study run`` on the same folder fails instead of
    taking over the first one's runs. The lock dies with its process, so a killed study never
    blocks the next."""
    handle = open(study_dir / ".lock", "w")  # noqa: SIM115 - held for the whole block
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ClasswiseError(f"{study_dir} is being run by another 'classwise study run'; wait for it to end") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def outcome(store: Store, study: Study) -> Outcome:
    ids = {r.run_id for r in study.runs}
    status = [r["status"] for r in store.runs() if r["run_id"] in ids]
    return Outcome(status.count("done"), status.count("failed"), status.count("pending") + status.count("running"))


@dataclass(frozen=True)
class RunStatus:
    """One run of a study as ``study status`` shows it."""

    run_id: str
    overrides: dict[str, Any]
    status: str
    attempts: int
    seconds: float | None
    error: str

    def cells(self) -> tuple[str, ...]:
        seconds = f"{self.seconds:.0f}" if self.seconds else ""
        return (self.run_id, describe_point(self.overrides), self.status, str(self.attempts), seconds, self.error)


def study_status(study: Study, study_dir: str | Path) -> list[RunStatus]:
    """Every run of ``study`` with its state in the folder's store (pending if never started)."""
    path = Path(study_dir) / STORE
    state = {r["run_id"]: r for r in Store(path).runs()} if path.exists() else {}
    rows = []
    for run in study.runs:
        r = state.get(run.run_id, {})
        error = (r.get("error") or "").strip().splitlines()
        rows.append(
            RunStatus(
                run.run_id,
                run.overrides,
                r.get("status", "pending"),
                r.get("attempts", 0),
                r.get("seconds"),
                error[-1][:80] if error else "",
            )
        )
    return rows


@EXECUTORS.register("local", description="in this process, or --workers N processes (one per GPU on CUDA)")
def run_local(e: Execution) -> None:
    """Runs claimed one by one from the store, in this process or in N worker processes."""
    store, study, study_dir, workers, how, progress = e.store, e.study, e.study_dir, e.workers, e.how, e.progress
    todo = _todo(store, study)
    bar = progress_bar(len(todo), f"study {study.name}", unit="run", enabled=progress)
    while todo:
        if workers <= 0:
            for run in todo:
                _attempt(store, run, study, study_dir, how)
                bar.update(1)
        else:
            _run_processes(store, study, study_dir, todo, workers, how)
            bar.update(len(todo) - len(_todo(store, study)))
        todo = _todo(store, study)  # retries of failed runs, up to the limit
    bar.close()


def _device_for(i: int, how: RunOptions) -> RunOptions:
    if how.device == "cuda" and torch.cuda.device_count() > 1:
        return how.on(f"cuda:{i % torch.cuda.device_count()}")
    return how


def _worker(
    store_path: str, study: Study, study_dir: str, run_ids: list[str], how: RunOptions, parent: int, share: int
) -> None:
    _die_with_parent(parent)
    if "OMP_NUM_THREADS" not in os.environ:  # N workers × cores/N threads, not N × all cores fighting
        torch.set_num_threads(share)
    store = Store(store_path)
    for run in study.runs:
        if run.run_id in run_ids:
            _attempt(store, run, study, Path(study_dir), how)


def _die_with_parent(parent: int) -> None:
    """A worker never outlives the ``study run`` that started it: on Linux the kernel kills it when
    its parent dies (PR_SET_PDEATHSIG); everywhere a thread checks every second that the parent is
    still there. A killed study's runs are then resumed once, by the next ``study run``, never
    trained twice side by side."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_processes(store: Store, study: Study, study_dir: Path, todo: list[Run], workers: int, how: RunOptions) -> None:
    """N worker processes share the to-do list through the store's atomic claims; a worker that dies
    (killed, out of memory) has its run recorded as failed, to be retried."""
    ctx = mp.get_context("spawn")
    ids = [r.run_id for r in todo]
    n = min(workers, len(todo))
    share = max(1, torch.get_num_threads() // n)  # the CPU threads each worker gets
    procs = [
        ctx.Process(
            target=_worker, args=(str(store.path), study, str(study_dir), ids, _device_for(i, how), os.getpid(), share)
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            for row in store.runs():
                if row["status"] == "running" and row["worker"] and row["worker"].endswith(f":{p.pid}"):
                    store.fail(row["run_id"], f"worker process {p.pid} died (exit code {p.exitcode})")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, before anything runs, when nothing listens at a ``host:port`` Ray address."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClasswiseError(f"Ray address {address!r} must be host:port (or ray://host:port)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClasswiseError(
            f"cannot reach the Ray cluster at {address!r}: {exc}. Start it with 'ray start --head', "
            "or leave out --address to use a local Ray instance"
        ) from None


@EXECUTORS.register("ray", description="a Ray cluster at --address, or a local Ray instance")
def run_ray(e: Execution) -> None:
    """Runs as Ray tasks; the study folder must be on a filesystem the workers share."""
    store, study, study_dir, address, how, progress = e.store, e.study, e.study_dir, e.address, e.how, e.progress
    try:
        import ray
    except ImportError:
        raise ClasswiseError("the ray executor needs Ray: pip install 'ray>=2.9'") from None
    if address not in (None, "auto"):
        check_reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClasswiseError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    remote = ray.remote(num_gpus=1 if how.device.startswith("cuda") else 0)(execute_run)
    todo = _todo(store, study)
    bar = progress_bar(len(todo), f"study {study.name} (ray)", unit="run", enabled=progress)
    while todo:
        pending = {}
        for run in todo:
            if store.claim(run.run_id, f"ray:{address or 'local'}", study.retries + 1):
                pending[remote.remote(run, study_dir, how)] = run
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ready[0])
            try:
                store.finish(run.run_id, ray.get(ready[0]), versions())
            except Exception as exc:  # the task raised, or its worker died
                store.fail(run.run_id, f"{type(exc).__name__}: {exc}")
            bar.update(1)
        todo = _todo(store, study)
    bar.close()
