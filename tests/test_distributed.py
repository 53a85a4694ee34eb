"""Cells across processes and devices: a submitit job with two tasks trains one cell exactly as torchrun does, the
processes of a cell decide together, cells side by side pin GPUs of their own, a precision chosen through Accelerate
is honoured and hashed, and a stop signal checkpoints the stage for the requeued job to resume."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import compose, demo_overrides, fresh_cache, run_demo_cell, xorder_cli
from xorder import records
from xorder.errors import XorderError
from xorder.plan import plan
from xorder.runtime import distributed, precision

FAST = (
    "trainer.intermediate.max_steps=10",
    "trainer.target.max_steps=10",
    "trainer.eval_every=10",
    "data.synthetic_examples=200",
    "order=english_only",
    "trainer.log_every=2",
)
BIN = Path(sys.executable).parent


def _record(results: Path) -> dict:
    written = list(results.glob(f"**/{records.METRICS}"))
    assert len(written) == 1, written
    metrics = json.loads(written[0].read_text())
    assert records.validate(metrics) == []
    return metrics


def _trained(cache: Path, metrics: dict) -> list[dict]:
    """What each stage of the record computed: its losses at every logging point and its evaluations."""
    out = []
    for stage in metrics["stages"]:
        assert not stage["reused"]
        summary = json.loads((cache / "stages" / stage["hash"] / "summary.json").read_text())
        out.append(
            {
                "hash": stage["hash"],
                "processes": summary["processes"],
                "losses": summary["losses"],
                "history": summary["history"],
            }
        )
    return out


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=str(BIN)) or shutil.which("torchrun")
    assert torchrun
    return subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
        check=False,
    )


# ------------------------------------------------------------------------------------------ one cell, two tasks


@pytest.mark.slow
def test_a_two_task_submitit_cell_trains_as_torchrun_does(cache_dir: Path, tmp_path: Path):
    """The README's local stand-in for a Slurm grid of multi-GPU cells: hydra.launcher.tasks_per_node=2."""
    grid_cache, grid_results = fresh_cache(cache_dir, tmp_path / "cache1"), tmp_path / "results1"
    out = xorder_cli(
        "run",
        "-m",
        "hydra/launcher=local",
        "hydra.launcher.tasks_per_node=2",
        *demo_overrides(grid_cache, grid_results, *FAST),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = _record(grid_results)
    assert metrics["provenance"]["device"].endswith(" x2")
    grid = _trained(grid_cache, metrics)
    assert [stage["processes"] for stage in grid] == [2, 2]
    logs = {path.name: path.read_text() for path in grid_results.glob(".submitit/*/*_log.out")}
    assert sorted(name.split("_")[1] for name in logs) == ["0", "1"]  # two tasks, and the first alone wrote
    assert [name.split("_")[1] for name, text in logs.items() if "record: " in text] == ["0"]

    torch_cache, torch_results = fresh_cache(cache_dir, tmp_path / "cache2"), tmp_path / "results2"
    args = ["-m", "xorder", "run", *demo_overrides(torch_cache, torch_results, *FAST)]
    alone = _torchrun(*args, cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-3000:]
    reference = _record(torch_results)
    assert _trained(torch_cache, reference) == grid
    assert metrics["scores"] == reference["scores"]
    assert metrics["provenance"]["config_hash"] == reference["provenance"]["config_hash"]

    # run again: the first process finds the record complete, and both processes skip it (none waits for the other)
    written = next(torch_results.glob(f"**/{records.METRICS}")).stat().st_mtime_ns
    again = _torchrun(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skip: complete record" in again.stdout + again.stderr
    assert next(torch_results.glob(f"**/{records.METRICS}")).stat().st_mtime_ns == written


_GROUP_SCRIPT = textwrap.dedent("""
    import atexit, json, os, signal
    import torch.distributed as dist
    from accelerate import Accelerator
    from xorder.runtime import distributed
    from xorder.errors import XorderError

    def mistake():
        raise XorderError("a record of another config")

    def at_exit():  # registered first, so it runs last: after xorder's own exit handlers
        with open(f"left{os.environ['RANK']}.txt", "w") as f:
            f.write("left" if not dist.is_initialized() else "still joined")

    atexit.register(at_exit)
    distributed.join_group()
    accelerator = Accelerator(cpu=distributed.cpu_backend())
    out = {"rank": distributed.rank(), "processes": accelerator.num_processes}
    out["decided"] = distributed.from_main(lambda: f"decided by {distributed.rank()}")
    try:
        distributed.from_main(mistake)
    except XorderError as err:
        out["error"] = str(err)
    distributed.install_stop_signals()
    check = distributed.stop_check(accelerator)
    out["before"] = check()
    if distributed.rank() == 1:
        os.kill(os.getpid(), signal.SIGUSR2)  # only the second process is told to stop
    accelerator.wait_for_everyone()
    out["after"] = check()
    with open(f"result{distributed.rank()}.json", "w") as f:
        json.dump(out, f)
""")


@pytest.mark.slow
def test_the_processes_of_a_cell_decide_and_stop_together(tmp_path: Path):
    script = tmp_path / "group.py"
    script.write_text(_GROUP_SCRIPT)
    out = _torchrun(str(script), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads((tmp_path / f"result{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    for result in results:
        assert result["processes"] == 2
        assert result["decided"] == "decided by 0"  # the second process never computed its own
        assert result["error"] == "a record of another config"  # the first one's mistake stops both
        assert result["before"] is False
        assert result["after"] is True  # the signal reached one process; both stop at the same step
    # no end_training in the script: the group is left at exit all the same (a live gloo group can abort the exit)
    assert [(tmp_path / f"left{rank}.txt").read_text() for rank in (0, 1)] == ["left", "left"]


@pytest.mark.slow
def test_a_failure_on_another_process_exits_with_its_traceback(tmp_path: Path):
    """Hydra's submitit launcher reads only the first task's result: the others must not fail quietly."""
    code = (
        "from xorder.runtime import distributed\nfrom xorder.errors import XorderError\nimport sys\n"
        "try:\n    {}\nexcept Exception as err:\n    distributed.exit_failed(err)\n"
    )
    env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2"}
    crash = subprocess.run(
        [sys.executable, "-c", code.format("1 / 0")], capture_output=True, text=True, env=env, check=False
    )
    assert crash.returncode == 1
    assert "ZeroDivisionError" in crash.stderr and "Traceback" in crash.stderr
    assert "xorder: process 1 of 2 failed: division by zero" in crash.stderr
    mistake = subprocess.run(
        [sys.executable, "-c", code.format("raise XorderError('no such task')")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert mistake.returncode == 2
    assert "xorder: process 1 of 2 failed: no such task" in mistake.stderr


_FAIL_SECOND = textwrap.dedent("""
    # sitecustomize of the test below: xorder.pipeline.run.run_cell fails in the second process of a submitit job
    import importlib.abc, importlib.machinery, os, sys

    class FailSecond(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "xorder.pipeline.run":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                original = module.run_cell

                def run_cell(*args, **kwargs):
                    if os.environ.get("RANK") == "1":
                        raise RuntimeError("injected failure of the second process")
                    return original(*args, **kwargs)

                module.run_cell = run_cell

            spec.loader.exec_module = exec_module
            return spec

    if os.environ.get("SUBMITIT_EXECUTOR"):
        sys.meta_path.insert(0, FailSecond())
""")


@pytest.mark.slow
def test_a_failure_of_the_second_task_fails_the_grid_with_its_traceback(cache_dir: Path, tmp_path: Path):
    """Hydra's submitit launcher keeps only the first task's result: the second task's error must still end the
    grid, with its own traceback."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(_FAIL_SECOND)
    results = tmp_path / "results"
    out = xorder_cli(
        "run",
        "-m",
        "hydra/launcher=local",
        "hydra.launcher.tasks_per_node=2",
        *demo_overrides(fresh_cache(cache_dir, tmp_path / "cache"), results, *FAST),
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "inject")},
    )
    assert out.returncode != 0
    assert "(task: 1)" in out.stderr and "RuntimeError: injected failure of the second process" in out.stderr
    assert "xorder: process 1 of 2 failed: injected failure of the second process" in out.stderr
    assert not list(results.glob(f"**/{records.METRICS}"))


def _exported(env: dict[str, str]) -> dict[str, str]:
    code = "import json; from xorder.runtime import distributed; print(json.dumps(distributed.export_submitit_env()))"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_", "TORCHELASTIC"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env}, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.slow
def test_a_slurm_task_exports_its_place_in_the_job():
    """What srun gives the last of four tasks (two nodes, two each) of array task 3 of job 4242."""
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4245",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_NTASKS": "4",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "MASTER_PORT": "29500",
    }  # inherited from the submitting shell: every cell of the grid would share it
    exported = _exported(slurm)
    assert exported == {
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(random.Random("4242_3").randint(20000, 60000)),
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
    }
    assert _exported({**slurm, "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}) == {}
    assert _exported({**slurm, "TORCHELASTIC_RUN_ID": "x"}) == {}  # torchrun inside the task sets its own
    assert _exported({}) == {}


# ------------------------------------------------------------------------------------------ stop and requeue


def _submitit_tasks(folder: Path) -> list[int]:
    """Process ids of the submitit tasks whose job folder lies under `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in argv and any(str(folder).encode() in arg for arg in argv):
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_a_stop_signal_checkpoints_and_the_requeued_job_resumes(cache_dir: Path, tmp_path: Path):
    """Slurm's signal before the time limit, sent to a submitit job: the stage stops at its next logging point
    with a checkpoint, submitit requeues the job, and the rerun resumes there and ends with the scores of a run
    that was never stopped."""
    cell = (
        "trainer.intermediate.epochs=20",
        "trainer.intermediate.max_steps=40",
        "trainer.target.max_steps=10",
        "trainer.eval_every=20",
        "data.synthetic_examples=200",
        "order=english_only",
        "trainer.log_every=4",
    )
    cache, results = fresh_cache(cache_dir, tmp_path / "cache1"), tmp_path / "results1"
    command = [
        sys.executable,
        "-m",
        "xorder",
        "run",
        "-m",
        "hydra/launcher=local",
        *demo_overrides(cache, results, *cell),
    ]
    job = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not any("step 4/40" in log.read_text() for log in results.glob("**/xorder.log")):
        assert job.poll() is None and time.time() < deadline, job.communicate()[0][-3000:]
        time.sleep(0.05)
    tasks = _submitit_tasks(results)
    assert len(tasks) == 1
    os.kill(tasks[0], signal.SIGUSR2)
    output = job.communicate(timeout=600)[0]
    assert job.returncode == 0, output[-3000:]

    log = next(results.glob("**/xorder.log")).read_text()
    stopped = re.findall(r"stage english stopped at step (\d+) of 40 on request", log)
    assert len(stopped) == 1 and 4 < int(stopped[0]) < 40, log[-3000:]
    assert f"stage english: resuming at step {stopped[0]} of 40" in log
    assert "Requeued job" in "".join(path.read_text() for path in results.glob(".submitit/*/*_log.*"))
    metrics = _record(results)

    reference, _ = run_demo_cell(fresh_cache(cache_dir, tmp_path / "cache2"), tmp_path / "results2", *cell)
    assert _trained(cache, metrics) == _trained(tmp_path / "cache2", reference)
    assert metrics["scores"] == reference["scores"]


@pytest.mark.slow
def test_a_stop_signal_outside_a_scheduler_exits_for_a_rerun(tmp_path: Path):
    """Without submitit, `leave` exits as the signal would have: the same command run again resumes."""
    code = textwrap.dedent("""
        import os, signal
        from xorder.runtime import distributed
        from xorder.errors import Preempted
        distributed.install_stop_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        distributed.leave(Preempted("stage english stopped at step 8 of 40 on request"))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBMITIT_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 128 + signal.SIGTERM
    assert "run the same command again to resume" in out.stderr


# ------------------------------------------------------------------------------------------ GPUs of their own

_PIN_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from xorder.runtime import distributed
    count, parallel = int(sys.argv[1]), (int(sys.argv[2]) or None)
    pinned = distributed.pin_gpus(count, parallel, poll_s=0.05)
    print(",".join(pinned) + "|" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    while not os.path.exists(sys.argv[3]):  # hold the GPUs until told to end
        time.sleep(0.05)
""")


@pytest.mark.slow
def test_processes_side_by_side_pin_gpus_of_their_own(tmp_path: Path):
    script = tmp_path / "pin.py"
    script.write_text(_PIN_SCRIPT)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2", "TMPDIR": str(tmp_path)}

    def start(count: int, name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(script), str(count), "0", str(tmp_path / name)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    first = start(2, "end1")
    assert first.stdout.readline().strip() == "0,1|0,1"
    second = start(1, "end2")
    assert second.stdout.readline().strip() == "2|2"  # the one GPU left
    third = start(2, "end3")  # waits: only one GPU is free until the first process ends
    time.sleep(1.0)
    assert third.poll() is None
    (tmp_path / "end1").touch()
    first.wait(timeout=60)
    assert third.stdout.readline().strip() == "0,1|0,1"  # the first process's GPUs, free once it ended
    for name, process in (("end2", second), ("end3", third)):
        (tmp_path / name).touch()
        assert process.wait(timeout=60) == 0


def test_pinning_is_a_no_op_without_gpus_and_refuses_impossible_requests(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert distributed.pin_gpus(None, 2) == [] and distributed.pin_gpus(1, None) == []  # CPU: nothing to pin
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert distributed.pin_gpus(None, None) == [] and distributed.pin_gpus(0, 4) == []  # not asked for
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    with pytest.raises(
        XorderError,
        match=r"3 cells at once \(hydra.launcher.n_jobs\) x gpus_per_job=2 need 6 GPUs, "
        r"but 4 are visible \(0,1,2,3\)",
    ):
        distributed.pin_gpus(2, 3)
    with pytest.raises(XorderError, match=r"gpus_per_job=5 needs 5 GPUs, but 4 are visible \(0,1,2,3\): lower"):
        distributed.pin_gpus(5, None)
    with pytest.raises(XorderError, match="gpus_per_job=-1: must be at least 0"):
        distributed.pin_gpus(-1, None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(XorderError, match="get theirs from their launcher"):
        distributed.pin_gpus(1, None)
    assert distributed.pin_gpus(None, 2) == []  # the processes of a multi-process cell are placed by their launcher


def test_cells_sharing_gpus_spread_over_every_gpu_before_doubling_up(tmp_path: Path):
    assert distributed.slots(["0", "1"], 2) == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    held = [distributed.take_slots(["0", "1"], 1, 2, tmp_path) for _ in range(4)]
    assert [got[0][0] for got in held if got] == ["0", "1", "0", "1"]  # two cells on each GPU
    assert distributed.take_slots(["0", "1"], 1, 2, tmp_path) is None  # every slot is held
    held[2][0][1].close()  # the second cell on GPU 0 ends
    again = distributed.take_slots(["0", "1"], 1, 2, tmp_path)
    assert again is not None and again[0][0] == "0"
    for got in [*held, again]:
        for _, handle in got or []:
            handle.close()
    pairs = [distributed.take_slots(["0", "1"], 2, 2, tmp_path) for _ in range(3)]  # two GPUs per cell
    assert [[device for device, _ in got] for got in pairs[:2] if got] == [["0", "1"], ["0", "1"]]
    assert pairs[2] is None and not (tmp_path / "gpu-0.slot2.lock").exists()  # nothing kept while refused
    assert not distributed.take_slots(["0", "1"], 1, 1, tmp_path)  # one cell per GPU: slot 0 is the GPU's lock


@pytest.fixture
def unpinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A process that pinned nothing yet, with its GPU locks in a folder of its own."""
    monkeypatch.setattr(distributed, "_pinned", [])
    monkeypatch.setattr(distributed, "_held", [])
    monkeypatch.setattr(distributed, "gpu_lock_dir", lambda: tmp_path)
    monkeypatch.setattr(distributed, "gpu_memory_mb", lambda: 81_559.0)  # an H100 80GB
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    return tmp_path


def test_cells_per_gpu_pins_a_slot_and_refuses_what_does_not_fit(unpinned: Path, monkeypatch: pytest.MonkeyPatch):
    large = lambda: (11_300.0, "the target stage of results/x")  # noqa: E731  (XLM-R Large, batch 32 x 128)
    with pytest.raises(
        XorderError,
        match=r"^5 cells at once \(hydra.launcher.n_jobs\) x gpus_per_job=1 at cells_per_gpu=2 need 3 GPUs, but 2 "
        r"are visible \(0,1\): lower hydra.launcher.n_jobs or gpus_per_job, or raise cells_per_gpu",
    ):
        distributed.pin_gpus(None, 5, 2, large)
    with pytest.raises(
        XorderError,
        match=r"^cells_per_gpu=8 does not fit: a cell peaked at 11,300 MB \(the target stage of results/x\), about "
        r"13,030 MB with the allocator's cache and its CUDA context, and 8 of them need 104,240 MB of a 81,559 MB "
        r"GPU: use cells_per_gpu=6$",
    ):
        distributed.pin_gpus(None, 8, 8, large)
    with pytest.raises(XorderError, match="cells_per_gpu=0: must be at least 1"):
        distributed.pin_gpus(None, 2, 0)
    assert distributed.pin_gpus(None, 8, 6, large) == ["0"]  # six cells of 13 GB share each 80 GB GPU
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert not distributed.take_slots(["0"], 1, 1, unpinned)  # this process holds the GPU's first slot
    monkeypatch.setattr(distributed, "_pinned", [])  # another process, beside the first
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert distributed.pin_gpus(None, None, 2, lambda: None) == ["1"]  # any launcher: k > 1 spreads the cells


def test_a_multi_process_cell_sharing_gpus_holds_a_slot_on_each_of_its_gpus(
    unpinned: Path, monkeypatch: pytest.MonkeyPatch
):
    for name, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    assert distributed.pin_gpus(None, None, 2) == []  # its processes use cuda:LOCAL_RANK: nothing to pin
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    other = distributed.take_slots(["0", "1"], 2, 2, unpinned)  # a second such cell gets the other slots
    assert other is not None and distributed.take_slots(["0", "1"], 1, 2, unpinned) is None
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.pin_gpus(None, None, 2) == []  # only the first process of the node takes slots


def test_the_peak_memory_to_share_a_gpu_comes_from_gpu_records_of_the_model(tmp_path: Path):
    def record(path: str, model: str, peaks: list[tuple[float, float | None]]) -> None:
        stages = [
            {"name": f"s{i}", "throughput": {"peak_memory_mb": peak, "gpu_hours": hours}}
            for i, (peak, hours) in enumerate(peaks)
        ]
        (tmp_path / path).mkdir(parents=True)
        (tmp_path / path / records.METRICS).write_text(json.dumps({"model": model, "stages": stages}))

    assert records.peak_gpu_memory(tmp_path, "xlmr_large") is None  # nothing measured yet: nothing to check
    record("a", "xlmr_large", [(9000.0, 0.1), (11_300.0, 0.5)])
    record("b", "xlmr_large", [(50_000.0, None)])  # a CPU run: resident memory, not GPU memory
    record("c", "xlmr_base", [(20_000.0, 0.2)])
    assert records.peak_gpu_memory(tmp_path, "xlmr_large") == (11_300.0, f"s1 stage of {tmp_path / 'a'}")


def test_only_the_joblib_launcher_runs_cells_side_by_side(monkeypatch: pytest.MonkeyPatch):
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert distributed.parallel_jobs({"_target_": joblib, "n_jobs": 3}) == 3
    assert distributed.parallel_jobs({"_target_": joblib, "n_jobs": -1}) == 8  # joblib: every CPU
    assert distributed.parallel_jobs({"_target_": joblib, "n_jobs": -2}) == 7
    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    assert distributed.parallel_jobs({"_target_": local, "tasks_per_node": 2}) is None
    assert distributed.parallel_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}) is None


@pytest.mark.slow
def test_parallel_cells_each_see_their_own_gpus(cache_dir: Path, tmp_path: Path):
    """The README's parallel single-GPU cells, with two GPUs per cell and four (pretended) GPUs: each worker sees
    its own through CUDA_VISIBLE_DEVICES (the CPU build of torch ignores them, so the cells still train)."""
    results = tmp_path / "results"
    out = xorder_cli(
        "run",
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "gpus_per_job=2",
        *demo_overrides(
            cache_dir,
            results,
            "trainer.target.max_steps=5",
            "trainer.eval_every=5",
            "data.synthetic_examples=200",
            "order=none",
        ),
        "target=pawsx,sts",
        cwd=tmp_path,
        env={"CUDA_VISIBLE_DEVICES": "0,1,2,3", "TMPDIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = sorted(
        json.loads(path.read_text())["provenance"]["visible_devices"] for path in results.glob(f"**/{records.METRICS}")
    )
    assert seen == ["0,1", "2,3"]


# ------------------------------------------------------------------------------------------ precision


@pytest.mark.slow
def test_a_precision_chosen_through_accelerate_is_told_from_its_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    def under(args: list[str] | None, value: str | None) -> tuple[str | None, str]:
        monkeypatch.setattr(precision, "_accelerate_launch_args", lambda: args)
        if value is None:
            monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
        else:
            monkeypatch.setenv(precision.PRECISION_ENV, value)
        return precision.configured_precision()

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert under(None, None) == (None, "unset")  # python or torchrun: Accelerator() would read nothing either
    assert under(None, "bf16")[0] == "bf16"  # exported by the user
    script = ["-m", "xorder", "run", "trainer.lr=1e-5"]
    assert under(["--num_processes", "2", *script], "no") == (None, "accelerate launch (nothing chosen)")
    assert under(["--mixed_precision", "bf16", *script], "bf16") == ("bf16", "accelerate launch --mixed_precision")
    assert under(["--mixed-precision=no", *script], "no") == ("no", "accelerate launch --mixed_precision")

    config = tmp_path / "hf" / "accelerate" / "default_config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("compute_environment: LOCAL_MACHINE\nmixed_precision: 'no'\n")
    assert under(script, "no") == ("no", "accelerate config")  # `accelerate config` chose fp32
    assert under(["--cpu", *script], "no") == (None, "accelerate launch (nothing chosen)")  # --cpu skips that file
    other = tmp_path / "fp16.yaml"
    other.write_text("mixed_precision: fp16\n")
    assert under(["--cpu", "--config_file", str(other), *script], "fp16") == ("fp16", "accelerate config")

    # an explicit trainer.precision wins; auto takes Accelerate's choice, else this machine's (a CPU: fp32)
    under(["--mixed_precision", "bf16", *script], "bf16")
    assert precision.resolve_precision("no") == ("no", "trainer.precision")
    assert precision.resolve_precision("auto") == ("bf16", "accelerate launch --mixed_precision")
    under(None, None)
    assert precision.resolve_precision("auto") == ("no", "trainer.precision=auto on this machine")


def test_stage_hashes_cover_the_precision_chosen_through_accelerate(monkeypatch: pytest.MonkeyPatch):
    """Stages trained in bf16 and in fp32 must not share a cache entry; `auto` left to the hardware keeps its hash
    (tests/test_hashes.py pins those)."""
    monkeypatch.setattr(precision, "_accelerate_launch_args", lambda: None)
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)

    def hashes(precision: str) -> list[str]:
        return [stage.hash for stage in plan(compose("experiment=demo", f"trainer.precision={precision}"), 1)]

    auto, bf16, fp32 = hashes("auto"), hashes("bf16"), hashes("no")
    assert len({auto[0], bf16[0], fp32[0]}) == 3
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")
    assert hashes("auto") == bf16
    assert hashes("no") == fp32  # an explicit setting wins over Accelerate's


_PRECISION_SCRIPT = textwrap.dedent("""
    import json, sys
    from xorder.runtime import precision
    from xorder.config_tree import compose
    from xorder.plan import to_typed
    from xorder.pipeline.run import build_accelerator
    accelerator = build_accelerator(to_typed(compose(["experiment=demo", "trainer.precision=auto"])), sys.argv[1])
    print("RESULT " + json.dumps([accelerator.mixed_precision, *precision.resolve_precision("auto"),
                                  precision.hashed_precision("auto")]), flush=True)
""")


@pytest.mark.slow
def test_accelerate_launch_sets_the_precision_of_an_auto_cell(tmp_path: Path):
    """The README's `accelerate launch --mixed_precision bf16 -m xorder run ...`, and `accelerate config`."""
    script = tmp_path / "precision.py"
    script.write_text(_PRECISION_SCRIPT)

    def launch(*options: str, home: Path) -> list[str]:
        accelerate = shutil.which("accelerate", path=str(BIN)) or shutil.which("accelerate")
        assert accelerate
        env = {**os.environ, "HF_HOME": str(home)}
        env.pop(precision.PRECISION_ENV, None)
        out = subprocess.run(
            [accelerate, "launch", "--num_processes", "1", *options, str(script), str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return next(json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT "))

    assert launch("--mixed_precision", "bf16", home=tmp_path / "none") == [
        "bf16",
        "bf16",
        "accelerate launch --mixed_precision",
        "bf16",
    ]
    assert launch(home=tmp_path / "none") == ["no", "no", "trainer.precision=auto on this machine", "auto"]
    configured = tmp_path / "configured"
    (configured / "accelerate").mkdir(parents=True)
    (configured / "accelerate" / "default_config.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: bf16\nnum_processes: 1\n"
    )
    assert launch(home=configured) == ["bf16", "bf16", "accelerate config", "bf16"]
