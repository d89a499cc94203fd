"""The spawn worker pool: results, a crashed worker replaced, a hung worker killed, a raising task reported in
one line with its traceback kept; workers see no GPU unless asked."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from common.pool import WorkerError, WorkerPool
from common.startup import is_startup_noise


def _init(offset):
    return {"offset": offset, "pid": os.getpid()}


def _square(state, task):
    return task * task + state["offset"], state["pid"]


def _crash_once(state, task):
    marker = Path(task["marker"])
    if task["value"] == 3 and not marker.exists():
        marker.write_text("crashed")
        os._exit(17)  # a hard crash: no exception, no cleanup, like a segfault
    return task["value"]


def _hang_once(state, task):
    """Task 2 hangs once, with a child process of its own (as ViZDoom's game process is a worker's child)."""
    marker = Path(task["marker"])
    if task["value"] == 2 and not marker.exists():
        child = subprocess.Popen(["sleep", "600"])
        marker.write_text(str(child.pid))
        time.sleep(600)
    return task["value"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has died
    except FileNotFoundError:
        return False


def _always_crash(state, task):
    os._exit(3)


def _raise(state, task):
    if task == 1:
        raise ValueError("the environment broke")
    return task


def test_results_in_order_and_workers_initialised_once():
    with WorkerPool(2, _square, _init, (10,)) as pool:
        results = pool.map(range(8))
        again = pool.map(range(3))
        assert pool.restarts == 0
    assert [value for value, _ in results] == [i * i + 10 for i in range(8)]
    assert [value for value, _ in again] == [10, 11, 14]
    assert len({pid for _, pid in results + again}) <= 2, "no worker beyond the 2 is ever started"


def test_crashed_worker_is_replaced_and_its_task_rerun(tmp_path):
    messages = []
    tasks = [{"value": i, "marker": str(tmp_path / "crash")} for i in range(6)]
    with WorkerPool(2, _crash_once, log=messages.append, describe=lambda t: f"episode {t['value']}") as pool:
        assert pool.map(tasks) == list(range(6))
        assert pool.restarts == 1
    assert any("episode 3" in m and "exit code 17" in m for m in messages), messages


def test_hung_worker_is_killed_and_its_task_rerun(tmp_path):
    messages = []
    tasks = [{"value": i, "marker": str(tmp_path / "hang")} for i in range(4)]
    start = time.monotonic()
    with WorkerPool(2, _hang_once, task_timeout=3.0, log=messages.append,
                    describe=lambda t: f"episode {t['value']}") as pool:
        assert pool.map(tasks) == list(range(4))
    assert time.monotonic() - start < 60
    assert any("episode 2" in m and "timeout" in m for m in messages), messages
    assert not _alive(int((tmp_path / "hang").read_text())), "the hung worker's child process is killed with it"


def test_task_that_keeps_killing_workers_stops_the_run():
    with WorkerPool(1, _always_crash, max_attempts=2, log=lambda m: None,
                    describe=lambda t: f"episode {t}") as pool:
        with pytest.raises(WorkerError, match="episode 0.*gave up after 2 attempts"):
            pool.map([0])


def test_exception_in_task_names_the_task():
    with WorkerPool(2, _raise, log=lambda m: None, describe=lambda t: f"episode {t}") as pool:
        with pytest.raises(WorkerError, match="episode 1 failed in a worker: ValueError: the environment broke"):
            pool.map(range(4))
        assert pool.map([5, 6]) == [5, 6], "the pool stays usable after a failed task"


def _devices(state, task):
    """What TensorFlow and CUDA see in a worker."""
    import tensorflow as tf

    return (os.environ.get("CUDA_VISIBLE_DEVICES"), [d.name for d in tf.config.list_physical_devices("GPU")],
            len(tf.config.list_physical_devices("CPU")))


def test_workers_see_no_gpu_unless_asked(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the parent's GPU, which training V and M keeps
    with WorkerPool(1, _devices) as pool:
        assert pool.map([0]) == [("-1", [], 1)], "CUDA hides every device; TensorFlow finds no GPU"
    with WorkerPool(1, _devices, gpu=True) as pool:
        assert pool.map([0])[0][0] == "0", "asked for, the parent's devices stay visible"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0", "the parent's environment is left as it was"


def test_failed_task_keeps_its_traceback_out_of_the_log_and_in_the_error_file(tmp_path):
    messages = []
    error_log = tmp_path / "exp" / "worker_errors.log"
    with WorkerPool(1, _raise, log=messages.append, error_log=error_log,
                    describe=lambda t: f"episode {t}") as pool:
        with pytest.raises(WorkerError) as caught:
            pool.map([1])
    assert "\n" not in str(caught.value) and str(error_log) in str(caught.value)
    assert "Traceback" in caught.value.trace and "in _raise" in caught.value.trace
    assert "in _raise" in error_log.read_text() and "ValueError: the environment broke" in error_log.read_text()
    assert messages == [], "nothing is printed: the one-line error is the caller's to show"


@pytest.mark.parametrize("line, noise", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("I0000 00:00:1795975806.419568    6453 port.cc:153] oneDNN custom operations are on.", True),
    ("I0000 00:00:1795975806.420247    6453 cudart_stub.cc:31] Could not find cuda drivers on your machine.", True),
    ("E0000 00:00:1795976831.390363   23066 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error", True),
    ("To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
     "compiler flags.", True),
    ("F0000 00:00:1795976831.390363   23066 cuda_platform.cc:52] Check failed", False),
    ("E0000 00:00:1795976831.390363   23066 op_kernel.cc:1857] OP_REQUIRES failed", False),
    ("Traceback (most recent call last):", False),
    ("error: a worker failed to start", False),
])
def test_only_tensorflow_startup_lines_are_filtered(line, noise):
    assert is_startup_noise(line) == noise
