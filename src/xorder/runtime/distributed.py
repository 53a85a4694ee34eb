"""Processes, devices and signals around one cell.

- A submitit job with several tasks (`hydra.launcher.tasks_per_node`, on Slurm or in submitit's local mode) runs
  the whole Hydra job in every task: `export_submitit_env` turns submitit's view of the job into torch's env://
  variables, so that the tasks train the cell as one process group. `from_main` lets the first process alone
  decide (under the cell lock) and tells the others.
- Cells run side by side on one machine (the joblib launcher, or separate shells) each take GPUs of their own, or
  with `cells_per_gpu=k` a slot of a GPU that k cells share: `pin_gpus` sets CUDA_VISIBLE_DEVICES from per-slot
  file locks before CUDA starts, after checking that k cells fit one GPU at their measured peak memory.
- `resolve_precision` honours a precision chosen through Accelerate (`accelerate launch --mixed_precision`,
  `accelerate config`) when `trainer.precision=auto`.
- A stop signal (Slurm's warning before a preemption or the time limit) only sets a flag; the training loop asks
  `stop_check` at its logging points, every process gets the same answer, the loop saves its checkpoint, and
  `leave` hands over to submitit's requeue so that the job runs again and resumes.

Nothing here imports torch at module level: a finished cell is skipped without it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

from xorder.errors import EXIT_USER_ERROR, Preempted, XorderError

log = logging.getLogger("xorder")

# A process may wait at a collective while another job trains a stage this cell needs (the stage lock).
GROUP_TIMEOUT = timedelta(hours=12)
_TORCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")

T = TypeVar("T")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


# ------------------------------------------------------------------------------------------ process group


def export_submitit_env() -> dict[str, str]:
    """Inside a submitit task of a job with several tasks, export torch's env:// variables (rank, world size, the
    first node's address and a port derived from the job id, the same in every task and different across the
    cells of a grid); returns them, or {} where there is no group to join (not under submitit, one task, or
    torchrun inside the task, which sets them itself). Call it before anything reads RANK or WORLD_SIZE."""
    if not os.environ.get("SUBMITIT_EXECUTOR") or os.environ.get("TORCHELASTIC_RUN_ID"):
        return {}
    import submitit

    if submitit.JobEnvironment().num_tasks <= 1:
        return {}
    # an inherited MASTER_PORT would be shared by every cell of the grid: the job id gives each its own
    os.environ.pop("MASTER_PORT", None)
    # every task keeps seeing all GPUs of its node: Accelerate picks cuda:LOCAL_RANK
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return {key: os.environ[key] for key in _TORCH_VARS}


def cpu_backend() -> bool:
    """Whether several processes must join as CPU processes: Accelerate builds a gloo group only when told `cpu`,
    and otherwise runs each of them as a separate single-process training."""
    import torch

    return world_size() > 1 and not torch.cuda.is_available()


def join_group() -> Any:
    """This process's Accelerate state, joining the launch's process group on first use (the Accelerator built
    later shares it). A CPU (gloo) group is left at exit on every path (a mistake, a stop signal, an error on
    another process), not only after a finished cell: one still alive while the interpreter shuts down aborts the
    process (SIGABRT), and the exit status the scheduler reads would be the abort's, not ours. An NCCL group is
    not: leaving it flushes its collectives, which blocks at exit when a failed peer never joins them."""
    import atexit

    from accelerate import PartialState

    gloo = cpu_backend()
    state = PartialState(cpu=gloo, timeout=GROUP_TIMEOUT)
    if gloo and state.num_processes > 1:
        atexit.unregister(_leave_group)  # once per process, however often it is joined
        atexit.register(_leave_group)
    return state


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def from_main(compute: Callable[[], T]) -> T:
    """`compute()` on the first process only, and its result on every process of the launch: the processes of one
    cell must take the same decision (skip, run, stop on a mistake), and only the first holds the cell lock under
    which it is taken. An error of the first process is raised on every process."""
    if world_size() == 1:
        return compute()
    from accelerate.utils import broadcast_object_list

    join_group()
    if rank() == 0:
        try:
            value = compute()
        except Exception as err:
            broadcast_object_list([("error", str(err), isinstance(err, XorderError))])
            raise
        broadcast_object_list([("ok", value, False)])
        return value
    payload: list[Any] = [None]
    broadcast_object_list(payload)
    outcome, value, user_error = payload[0]
    if outcome == "error":
        raise XorderError(value) if user_error else RuntimeError(f"the first process failed: {value}")
    return value


def exit_failed(err: BaseException) -> NoReturn:
    """End a process other than the first after an error, with its traceback on stderr. Hydra's job runner turns
    an exception into a failed result, and the submitit launcher reads only the first task's result: a process
    that exits instead leaves no result, which submitit reports with this stderr."""
    traceback.print_exception(err, file=sys.stderr)
    print(f"xorder: process {rank()} of {world_size()} failed: {err}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR if isinstance(err, XorderError) else 1)


# ------------------------------------------------------------------------------------------ GPUs of their own


def parallel_jobs(launcher: Mapping[str, Any]) -> int | None:
    """How many cells the Hydra launcher runs at once as processes of this machine (joblib's n_jobs, negative
    counting back from the CPU count as joblib does); None for any other launcher."""
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return None
    n_jobs = int(launcher.get("n_jobs", 1))
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, without starting CUDA (a process cannot move to other devices once it has):
    CUDA_VISIBLE_DEVICES when set, else torch's count (through NVML)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        import torch

        return [str(index) for index in range(torch.cuda.device_count())]
    devices = []
    for entry in (part.strip() for part in listed.split(",")):
        if not entry or entry.startswith("-"):  # CUDA ignores everything from the first invalid entry on
            break
        devices.append(entry)
    return devices


def gpu_lock_dir() -> Path:
    """Where the per-device locks live: local to the machine (flock over a network filesystem is unreliable) and
    per user; inside a Slurm allocation per job, since each allocation numbers its own GPUs from 0."""
    job = os.environ.get("SLURM_JOB_ID")
    name = f"xorder-gpus-{os.getuid()}" + (f"-slurm{job}" if job else "")
    path = Path(tempfile.gettempdir()) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


_held: list[IO[str]] = []  # lock files of the pinned GPU slots, open (so locked) until this process ends
_pinned: list[str] = []
# What `fits` adds to a cell's measured peak (torch's max_memory_allocated) on a shared GPU: the caching allocator
# holds about a tenth more than it hands out, and each process has its own CUDA context (about 500 MB)
ALLOCATOR_SLACK = 1.1
CONTEXT_MB = 600.0


def pin_gpus(
    setting: int | None,
    parallel: int | None,
    cells_per_gpu: int = 1,
    measured_peak: Callable[[], tuple[float, str] | None] = lambda: None,
    poll_s: float = 2.0,
) -> list[str]:
    """Give this process `setting` GPUs through CUDA_VISIBLE_DEVICES, each a slot of a GPU that at most
    `cells_per_gpu` xorder processes of this user share; `None` means one GPU per cell under a parallel launcher
    (`parallel` cells at once) or where cells share GPUs, none otherwise. The slots stay this process's until it
    ends: a joblib worker runs cell after cell, and CUDA cannot move to other devices once started. Waits while
    others hold them; returns the pinned GPUs ([] for nothing to pin: no GPU visible, or a multi-process cell,
    whose launcher places its processes: with cells_per_gpu > 1 its first process holds a slot of each GPU the
    cell's processes use on its node). `measured_peak`: the largest measured per-cell peak GPU memory and where
    it was measured, for the check that `cells_per_gpu` cells fit one GPU."""
    count = setting if setting is not None else (1 if parallel or cells_per_gpu > 1 else 0)
    if count < 0:
        raise XorderError(f"gpus_per_job={count}: must be at least 0 (0: leave CUDA_VISIBLE_DEVICES alone)")
    if cells_per_gpu < 1:
        raise XorderError(f"cells_per_gpu={cells_per_gpu}: must be at least 1 (1: a GPU per cell)")
    if count == 0 or _pinned:
        return list(_pinned)
    if world_size() > 1:
        if setting:
            raise XorderError(
                f"gpus_per_job={setting} pins the GPUs of a single-process cell; the processes of this "
                f"{world_size()}-process cell get theirs from their launcher (leave gpus_per_job unset)"
            )
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
        devices = visible_gpus()[:local]
        if cells_per_gpu > 1 and devices and int(os.environ.get("LOCAL_RANK", "0")) == 0:
            fits(cells_per_gpu, measured_peak())
            _hold(devices, len(devices), cells_per_gpu, poll_s)
        return []
    devices = visible_gpus()
    if not devices:
        return []
    visible = f"{len(devices)} are visible ({','.join(devices)})"
    if parallel and count * parallel > len(devices) * cells_per_gpu:
        shared = f" at cells_per_gpu={cells_per_gpu}" if cells_per_gpu > 1 else ""
        raise XorderError(
            f"{parallel} cells at once (hydra.launcher.n_jobs) x gpus_per_job={count}{shared} need "
            f"{-(-count * parallel // cells_per_gpu)} GPUs, but {visible}: lower hydra.launcher.n_jobs or "
            "gpus_per_job, or raise cells_per_gpu (gpus_per_job=0: the cells share the GPUs)"
        )
    if count > len(devices):
        raise XorderError(
            f"gpus_per_job={count} needs {count} GPUs, but {visible}: lower gpus_per_job "
            "(0: leave CUDA_VISIBLE_DEVICES alone)"
        )
    if cells_per_gpu > 1:
        fits(cells_per_gpu, measured_peak())
    _pinned.extend(_hold(devices, count, cells_per_gpu, poll_s))
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(_pinned)
    log.info("this process runs on GPU(s) %s (CUDA_VISIBLE_DEVICES)", os.environ["CUDA_VISIBLE_DEVICES"])
    return list(_pinned)


def _hold(devices: list[str], count: int, cells_per_gpu: int, poll_s: float) -> list[str]:
    """Wait for a slot on each of `count` of `devices` and keep them (locked) for this process's life."""
    folder = gpu_lock_dir()
    waited = False
    while (got := take_slots(devices, count, cells_per_gpu, folder)) is None:
        if not waited:
            log.info("waiting for %d free GPU slot(s) of %s (held by other xorder processes)", count, ",".join(devices))
            waited = True
        time.sleep(poll_s)
    _held.extend(handle for _, handle in got)
    return [device for device, _ in got]


def slots(devices: list[str], cells_per_gpu: int) -> list[tuple[str, int]]:
    """The order in which a cell tries the GPUs' slots: the first slot of every GPU before any second one, so
    that cells spread over the GPUs before they share one."""
    return [(device, slot) for slot in range(cells_per_gpu) for device in devices]


def take_slots(devices: list[str], count: int, cells_per_gpu: int, folder: Path) -> list[tuple[str, IO[str]]] | None:
    """A free slot on each of `count` different GPUs, locked, or None, holding nothing: nobody holds slots while
    waiting, so nobody deadlocks."""
    got: list[tuple[str, IO[str]]] = []
    for device, slot in slots(devices, cells_per_gpu):
        if any(device == taken for taken, _ in got):
            continue
        handle = _try_lock(folder, device, slot)
        if handle is not None:
            got.append((device, handle))
            if len(got) == count:
                return got
    for _, handle in got:
        handle.close()
    return None


def _try_lock(folder: Path, device: str, slot: int = 0) -> IO[str] | None:
    import fcntl

    name = f"gpu-{device.replace('/', '_')}" + (f".slot{slot}" if slot else "")  # slot 0: a whole GPU's lock
    handle = open(folder / f"{name}.lock", "a+")  # noqa: SIM115 (held open: the lock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def fits(cells_per_gpu: int, measured: tuple[float, str] | None, total_mb: float | None = None) -> None:
    """Refuse a `cells_per_gpu` whose cells, at the largest peak memory measured so far, do not fit the smallest
    GPU; nothing to check before any cell of this model was measured on a GPU, or without nvidia-smi."""
    total_mb = gpu_memory_mb() if total_mb is None else total_mb
    if measured is None or total_mb is None:
        log.info("cells_per_gpu=%d: no measured peak memory to check it against yet", cells_per_gpu)
        return
    peak, where = measured
    need = peak * ALLOCATOR_SLACK + CONTEXT_MB
    if cells_per_gpu * need <= total_mb:
        return
    most = int(total_mb // need)
    raise XorderError(
        f"cells_per_gpu={cells_per_gpu} does not fit: a cell peaked at {peak:,.0f} MB ({where}), about "
        f"{need:,.0f} MB with the allocator's cache and its CUDA context, and {cells_per_gpu} of them need "
        f"{cells_per_gpu * need:,.0f} MB of a {total_mb:,.0f} MB GPU: use cells_per_gpu={max(most, 1)}"
        + ("" if most >= 1 else " (one cell alone barely fits)")
    )


def gpu_memory_mb() -> float | None:
    """The memory of the smallest GPU of this machine, from nvidia-smi (NVML, without starting CUDA: the process
    is not pinned yet); None where there is no nvidia-smi."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.split()
        return min(float(value) for value in out) if out else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ mixed precision


def preempt_signal() -> signal.Signals:
    """The signal submitit checkpoints and requeues on (USR2, or SUBMITIT_PREEMPT_SIGNAL), sent by Slurm
    `signal_delay_s` before the time limit and, where the cluster allows it, before a preemption."""
    return signal.Signals[f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2')}"]


def stop_signals() -> list[signal.Signals]:
    """What asks a cell to stop: submitit's signal, USR1/USR2 (`sbatch --signal`), and TERM (what schedulers send
    before they kill a job)."""
    return sorted({signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, preempt_signal()})


_received: list[int] = []  # the stop signal, once one arrived
_previous: dict[int, Any] = {}  # the handlers ours replaced (inside a submitit job: submitit's requeue)


def _on_signal(signum: int, frame: Any) -> None:
    """Only note it (the training loop stops at its next logging point); the same signal twice ends the process
    at once, as the signal would have without xorder."""
    if signum in _received:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _received.append(signum)


def install_stop_signals() -> None:
    """Let a stop signal make the training loop save its checkpoint and stop (main thread only: Python delivers
    signals there). `restore_signals` puts the previous handlers back."""
    if _previous or threading.current_thread() is not threading.main_thread():
        return
    for sig in stop_signals():
        _previous[sig] = signal.signal(sig, _on_signal)


def restore_signals() -> None:
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()


def stop_check(accelerator: Any) -> Callable[[], bool]:
    """For the training loop: whether a stop signal reached any process of the cell. Every process gets the same
    answer at the same step (the highest signal number of all processes), so they save and stop together."""

    def requested() -> bool:
        local = _received[0] if _received else 0
        if accelerator.num_processes == 1:
            return bool(local)
        import torch
        import torch.distributed as dist

        flag = torch.tensor([local], device=accelerator.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        agreed = int(flag.item())
        if agreed and not local:
            _received.append(agreed)
        return bool(agreed)

    return requested


def leave(stopped: Preempted) -> NoReturn:
    """After the training loop saved its checkpoint on a stop signal: in a submitit job stopped by its signal,
    hand over to submitit's requeue (the first process checkpoints the job and requeues it; it runs again and the
    stage resumes from its checkpoint); otherwise exit as the signal would have, for the scheduler or the user to
    run the same command again."""
    signum = _received[0] if _received else int(preempt_signal())
    requeue = _previous.get(signum)
    if os.environ.get("SUBMITIT_EXECUTOR") and signum == preempt_signal() and callable(requeue):
        from submitit.core.utils import UncompletedJobError

        log.warning("%s; requeueing the job", stopped)
        try:
            requeue(signum, None)  # the first process exits in here; the others return
        except UncompletedJobError as err:
            raise XorderError(
                f"{err} The stage's checkpoint is kept: run the grid again to resume it "
                "(hydra.launcher.max_num_timeout sets how often a job is requeued)"
            ) from err
        sys.exit(0)
    log.warning("%s; run the same command again to resume", stopped)
    sys.exit(128 + signum)
