"""Batch jobs on a Ray cluster: one actor per job slot (a GPU, or ``--cpus-per-job`` CPUs), each a worker process
that keeps its priors loaded from one job to the next; jobs go to whichever actor is free.

No scheduling of our own beyond that: Ray places the actors by their resources, moves the inputs (bytes, in the
job's arguments) and the results (bytes, in the return value). A job whose worker is lost (killed, out of memory,
its node gone) is given to a fresh actor, up to ``retries`` times; a job that fails by itself (bad input, a bug)
is not retried. Ray is an optional dependency (``pip install "dreamsmith[cluster]"``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...runtime.errors import InputError
from .jobs_file import BatchJob

#: The package folder (the extension root).
PACKAGE_ROOT = Path(__file__).resolve().parents[3]

#: What ``--cluster`` takes besides a ``ray://HOST:PORT`` address.
CLUSTER_HINT = "local (a Ray cluster on this machine), auto (the cluster started here by `ray start`) or ray://HOST:PORT"


def import_ray():
    """The ``ray`` module, or an :class:`InputError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError('--cluster needs Ray: pip install "dreamsmith[cluster]" (or run without --cluster: the jobs '
                         "then run one after another here).") from None
    return ray


def worker_runtime_env() -> dict[str, Any]:
    """The Ray runtime environment of the workers: they import the engine as this driver does. An installed
    dreamsmith (pip, or the development install) needs nothing; a package run from a folder named ``dreamsmith``
    (the Blender extension's) is put in front of the workers' ``PYTHONPATH``, which serves this machine and nodes
    that see the folder at the same path. Nodes without it need ``pip install "dreamsmith[cluster]"``. (The code
    is not uploaded: a new copy of the package would build the C++ kernels again in every Ray session.)"""
    if PACKAGE_ROOT.name == "dreamsmith":
        return {"env_vars": {"PYTHONPATH": f"{PACKAGE_ROOT.parent}{os.pathsep}${{PYTHONPATH}}"}}
    return {}


class BatchWorker:
    """The actor: a worker process with a :class:`~.execute.JobRunner`."""

    def __init__(self, device: str) -> None:
        from ...runtime.device import prepare_kernels
        from .execute import JobRunner

        prepare_kernels()  # the worker's set-up builds (or loads) the C++ kernels, not its first job
        self.runner = JobRunner(device)

    def pid(self) -> int:
        """The worker's process id."""
        return os.getpid()

    def run(self, spec: dict[str, Any], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Run one job (see :meth:`~.execute.JobRunner.run`)."""
        return self.runner.run(spec, files)


class RayPool:
    """Actors on a Ray cluster, fed jobs as they come free.

    Args:
        address: ``local``, ``auto`` or ``ray://HOST:PORT`` (:data:`CLUSTER_HINT`); an already initialised Ray
            (e.g. a test's ``ray.init``) is used as it is.
        cpus, gpus: Resources of one job (``gpus`` ``None``: one GPU when the cluster has any, else none).
        retries: Times a lost worker's job is run again.
        device: The engine's device name for every job (``auto``: CUDA on a GPU slot, else the CPU).
        on_start: Called with ``(job, pid)`` when a job is handed to a worker (the terminal's log, the tests).
    """

    def __init__(self, address: str, cpus: float = 1.0, gpus: float | None = None, retries: int = 2,
                 device: str = "auto", on_start: Callable[[BatchJob, int], None] | None = None) -> None:
        ray = self.ray = import_ray()
        if address not in ("local", "auto") and not address.startswith("ray://"):
            raise InputError(f"--cluster {address!r} is not a cluster; give {CLUSTER_HINT}.")
        self.started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"Cannot reach the Ray cluster {address!r} ({exc}); start it with `ray start "
                                 "--head` (see the README) or use --cluster local.") from None
            self.started = True
        total = ray.cluster_resources()
        self.gpus = (1.0 if total.get("GPU", 0) >= 1 else 0.0) if gpus is None else float(gpus)
        self.cpus = float(cpus)
        slots = int(total.get("CPU", 0) // self.cpus) if self.cpus > 0 else 1 << 30
        if self.gpus > 0:
            slots = min(slots, int(total.get("GPU", 0) // self.gpus))
        if slots < 1:
            raise InputError(f"The cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs; one job "
                             f"asks for {self.cpus:g} CPUs and {self.gpus:g} GPUs. Lower --cpus-per-job or "
                             "--gpus-per-job, or add nodes.")
        self.slots = slots
        self.retries = retries
        self.device = ("cuda" if self.gpus > 0 else "cpu") if device == "auto" else device
        self.on_start = on_start
        self.actors: list[Any] = []
        self._cls = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0,
                               runtime_env=worker_runtime_env())(BatchWorker)
        lost = ray.exceptions
        self._lost = tuple(getattr(lost, n) for n in ("RayActorError", "WorkerCrashedError", "ObjectLostError",
                                                      "OwnerDiedError", "NodeDiedError", "OutOfMemoryError",
                                                      "ActorUnavailableError") if hasattr(lost, n))

    def _new_actors(self, n: int) -> list[tuple[Any, int]]:
        actors = [self._cls.remote(self.device) for _ in range(n)]
        try:
            pids = self.ray.get([a.pid.remote() for a in actors])
        except self.ray.exceptions.RayError as exc:
            for a in actors:
                self._drop(a)
            raise InputError(f"The cluster's workers cannot start the engine ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:300]}); install dreamsmith on every node (README, "
                             "'Batches on a cluster').") from None
        self.actors += actors
        return list(zip(actors, pids, strict=True))

    def _drop(self, actor: Any) -> None:
        if actor in self.actors:
            self.actors.remove(actor)
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass

    def run(self, jobs: list[BatchJob]) -> Iterator[tuple[str, BatchJob, dict[str, Any]]]:
        """Run ``jobs``; yields ``("start", job, {"worker"})``, ``("lost", job, {"error"})`` (it goes back in the
        queue) and ``("end", job, result)`` (:meth:`~.execute.JobRunner.run`'s result) as they happen."""
        ray = self.ray
        queue = deque(jobs)
        idle = deque(self._new_actors(min(self.slots, len(jobs)))) if jobs else deque()
        running: dict[Any, tuple[BatchJob, Any, int]] = {}
        while queue or running:
            while queue and idle:
                job = queue.popleft()
                actor, pid = idle.popleft()
                job.attempts += 1
                running[actor.run.remote(job.spec, job.files)] = (job, actor, pid)
                if self.on_start is not None:
                    self.on_start(job, pid)
                yield "start", job, {"worker": pid}
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                job, actor, pid = running.pop(ref)
                try:
                    result = ray.get(ref)
                except self._lost as exc:
                    self._drop(actor)
                    reason = f"the worker was lost ({type(exc).__name__})"
                    if job.attempts <= self.retries:
                        queue.appendleft(job)
                        yield "lost", job, {"error": reason}
                    else:
                        yield "end", job, {"status": "failed", "error": f"{reason} {job.attempts} times; giving up "
                                           "(rerun the batch to try again)", "kind": "WorkerLost", "files": {}}
                    if queue:
                        idle.extend(self._new_actors(1))
                    continue
                except ray.exceptions.RayError as exc:  # e.g. a job that could not be sent or returned
                    idle.append((actor, pid))
                    yield "end", job, {"status": "failed", "error": f"Ray could not run the job: {exc}",
                                       "kind": type(exc).__name__, "files": {}}
                    continue
                idle.append((actor, pid))
                yield "end", job, result

    def close(self) -> None:
        """Stop the actors (jobs still running are dropped) and Ray, if this pool started it."""
        for actor in list(self.actors):
            self._drop(actor)
        if self.started:
            self.ray.shutdown()
