"""The Ray backend on a real two-node Ray cluster (one CPU each): a collection and a two-generation real-game
CMA-ES run give exactly what the process pool gives with the same seeds, though a node is removed mid-collection
and a worker is killed mid-generation; an unreachable --ray_address is one error line and exit 2.

Ray listens on the machine's network interfaces whatever it is told, so the cluster runs in namespaces of its own
(`unshare`; as root, else in a user namespace): a network namespace with loopback only, where no address but
127.0.0.1 exists; a PID namespace, so that every process Ray starts ends with it; a private /tmp for Ray's session
files. The one test run outside re-runs this file inside them; there the cluster's tests run, a watcher checks
that every socket of the namespace stays on loopback, and the teardown that no process is left behind.
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from common.backend import Backend
from common.errors import UserError
from run.collect import CollectConfig

REPO = Path(__file__).resolve().parents[1]
INSIDE = os.environ.get("WORLDMODELS_RAY_NAMESPACE") == "1"  # set for the run inside the namespaces
LOOPBACK = "127.0.0.1"
INNER_TESTS = 4  # the tests that run inside the namespaces


# New network (loopback only), PID (every process in it ends with its first) and mount (a private /tmp) namespaces;
# `--kill-child` ends them if the test is stopped; not root: inside a user namespace of its own.
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
           *([] if os.geteuid() == 0 else ["--map-root-user"])]
SETUP = "ip link set lo up && mount -t tmpfs tmpfs /tmp"


def _namespace_problem() -> str | None:
    """Why the namespaces cannot be made here, or None."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install -e .[ray])"
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "the Ray tests need `unshare` (util-linux) and `ip` (iproute2) to isolate the cluster"
    probe = subprocess.run([*UNSHARE, "sh", "-c", SETUP], capture_output=True, text=True, timeout=60)
    if probe.returncode:
        return f"cannot make a loopback-only network namespace here: {probe.stderr.strip()}"
    return None


def test_ray_cluster_tests_inside_a_loopback_only_namespace():
    """Runs this file's cluster tests in fresh network, PID and mount namespaces; they must all pass."""
    if INSIDE:
        pytest.skip("the test that starts the namespaces")
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)
    environ = {**os.environ, "WORLDMODELS_RAY_NAMESPACE": "1",
               "WORLDMODELS_HOST_NETNS": os.readlink("/proc/self/ns/net")}
    inner = (f"{SETUP} && {sys.executable} -m pytest {__file__} -x -q -p no:cacheprovider "
             "-k 'not inside_a_loopback_only_namespace and not backend_settings'")
    result = subprocess.run([*UNSHARE, "sh", "-c", inner], cwd=REPO, env=environ, capture_output=True, text=True,
                            timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert f"{INNER_TESTS} passed" in result.stdout, output[-6000:]


def test_backend_settings_are_checked():
    with pytest.raises(UserError, match="--backend=threads: choose from processes, ray"):
        CollectConfig(env="carracing", backend="threads").resolved()
    with pytest.raises(UserError, match="--ray_address=auto: needs --backend=ray"):
        CollectConfig(env="carracing", ray_address="auto").resolved()
    if importlib.util.find_spec("ray") is not None:
        assert Backend("ray", "auto").validated() == Backend("ray", "auto")


# ---- inside the namespaces ----

def _foreign_addresses() -> set[str]:
    """Addresses of this network namespace's sockets (TCP and UDP, IPv4 and IPv6) that are neither loopback nor
    unspecified (a listening socket's 0.0.0.0)."""
    foreign = set()
    for table in ("tcp", "udp", "tcp6", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            for endpoint in line.split()[1:3]:  # local and remote address:port, hex
                address = endpoint.split(":")[0]
                if table.endswith("6"):
                    raw = bytes.fromhex(address)
                    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # four host-order words
                    text = socket.inet_ntop(socket.AF_INET6, packed)
                    loopback = text in ("::1", "::") or text.startswith("::ffff:127.")
                else:
                    text = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                    loopback = text.startswith("127.") or text == "0.0.0.0"
                if not loopback:
                    foreign.add(text)
    return foreign


class _SocketWatcher(threading.Thread):
    """Samples the namespace's sockets every 50 ms while the cluster runs; keeps any non-loopback address."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[str] = set()
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            self.seen |= _foreign_addresses()
            self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _other_processes() -> list[str]:
    """The live processes of this PID namespace other than its shell (PID 1), this test process and its own
    children (multiprocessing's resource tracker, which the process pool started and which ends with us)."""
    others = []
    ours = {1, os.getpid(), *_children(os.getpid())}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if state != "Z":
            others.append(f"{entry.name} {command[:100]}")
    return others


def _raylet_pid(node) -> int:
    return node.all_processes["raylet"][0].process.pid


def _children(pid: int) -> list[int]:
    from common.pool import child_pids

    return child_pids(pid)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each on 127.0.0.1 (`cluster.worker_node`: the second), inside the namespace."""
    if not INSIDE:
        pytest.skip("runs inside test_ray_cluster_tests_inside_a_loopback_only_namespace's namespaces")
    import ray
    from ray.cluster_utils import Cluster

    assert os.readlink("/proc/self/ns/net") != os.environ.get("WORLDMODELS_HOST_NETNS"), "not in a new namespace"
    assert [name for _, name in socket.if_nameindex()] == ["lo"], "the namespace must have loopback only"
    watcher = _SocketWatcher()
    watcher.start()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "node_ip_address": LOOPBACK})
    cluster.worker_node = cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)
    cluster.wait_for_nodes()
    try:
        assert cluster.address.startswith(f"{LOOPBACK}:")
        assert {node.node_ip_address for node in cluster.list_all_nodes()} == {LOOPBACK}
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        watcher.stop()
    assert watcher.samples > 10 and not watcher.seen, f"non-loopback addresses in use: {watcher.seen}"
    deadline = time.monotonic() + 30
    while _other_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _other_processes(), f"processes left behind: {_other_processes()}"


def test_collection_on_ray_writes_the_process_pools_files_though_a_node_dies(cluster, tmp_path):
    """The Ray collection runs as a user runs it (`python -m run.collect ... --backend=ray`), its own driver."""
    from run.collect import collect_rollouts

    expected = collect_rollouts(tmp_path / "processes", env="carracing", episodes=6, workers=2, seed=7, max_steps=60,
                                verbose=False)
    folder = tmp_path / "ray" / "rollouts"
    removed = {}

    def remove_worker_node_once_an_episode_is_written() -> None:
        deadline = time.monotonic() + 300
        while not list(folder.glob("ep*.npz")) and time.monotonic() < deadline:
            time.sleep(0.05)
        removed["written before"] = len(list(folder.glob("ep*.npz")))
        cluster.remove_node(cluster.worker_node)

    remover = threading.Thread(target=remove_worker_node_once_an_episode_is_written)
    remover.start()
    try:
        result = subprocess.run([sys.executable, "-m", "run.collect", f"--exp_dir={tmp_path / 'ray'}",
                                 "--env=carracing", "--episodes=6", "--workers=2", "--seed=7", "--max_steps=60",
                                 "--backend=ray", f"--ray_address={cluster.address}"],
                                cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        remover.join()
        cluster.worker_node = cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)  # for the next test
        cluster.wait_for_nodes()
    assert result.returncode == 0, result.stderr[-3000:]
    assert 1 <= removed["written before"] < 6, removed
    assert "warning: a Ray worker died" in result.stderr, result.stderr[-3000:]
    found = sorted(folder.glob("ep*.npz"))
    assert [path.name for path in found] == [path.name for path in expected]
    for ours, theirs in zip(found, expected):
        assert ours.read_bytes() == theirs.read_bytes(), ours.name


def _kill_a_busy_worker_on(node, killed: dict) -> None:
    """SIGKILLs the first `_PoolActor` of `node` seen running a task (Ray names a busy actor's process
    `ray::_PoolActor.run`); records its pid in `killed`."""
    raylet = _raylet_pid(node)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "pid" not in killed:
        for pid in _children(raylet):
            if _command(pid).startswith("ray::_PoolActor.run"):
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                break
        time.sleep(0.02)


def _trajectory(out: Path) -> tuple[list, list, np.ndarray]:
    from controller import Controller

    history = json.loads((out / "history.json").read_text())
    generations = [(g["generation"], g["fitness"], g["sigma"]) for g in history["generations"]]
    evaluations = [(e["generation"], e["mean"], e["std"]) for e in history["evaluations"]]
    return generations, evaluations, Controller.load(out / "controller.json")[1]


def test_real_game_cma_es_on_ray_follows_the_process_pool_though_a_worker_is_killed(cluster, tmp_path, capsys):
    from controller.es import ESConfig
    from controller.train import ControllerTrainConfig, train_controller
    from tests.conftest import make_carracing_world

    world = make_carracing_world(tmp_path / "world", seed=1)
    config = ControllerTrainConfig(env="carracing", workers=2, max_steps=20,
                                   es=ESConfig(popsize=4, rollouts=2, generations=2, eval_every=2, eval_rollouts=2,
                                               seed=1))
    runs = {}
    for name in ("processes", "ray"):
        (tmp_path / name).mkdir()
        for folder in ("vae", "rnn", "series"):
            os.symlink(world / folder, tmp_path / name / folder)
    runs["processes"] = train_controller(tmp_path / "processes", config, verbose=False)
    killed = {}
    killer = threading.Thread(target=_kill_a_busy_worker_on, args=(cluster.worker_node, killed))
    killer.start()
    try:
        runs["ray"] = train_controller(tmp_path / "ray", dataclasses.replace(
            config, backend="ray", ray_address=cluster.address), verbose=False)
    finally:
        killed.setdefault("pid", None)  # stops the killer if it has not struck
        killer.join()
    assert killed["pid"] is not None, "no busy Ray worker was seen to kill"
    assert "warning: a Ray worker died" in capsys.readouterr().err
    expected, found = _trajectory(runs["processes"]), _trajectory(runs["ray"])
    assert found[0] == expected[0] and found[1] == expected[1]  # every fitness, step size and evaluation
    np.testing.assert_array_equal(found[2], expected[2])  # the CMA mean


def test_a_hung_task_times_out_and_a_failing_task_is_one_line_with_its_traceback_logged(cluster, tmp_path):
    """As with processes: the hung worker is killed with its child process (ViZDoom's game is a worker's child)
    and its task re-run; a raising task stops the run with one line, its traceback in the error log."""
    from common.pool import WorkerError
    from tests.test_pool import _alive, _hang_once, _raise

    backend = Backend("ray", cluster.address)
    marker, messages = tmp_path / "hung", []
    with backend.pool(2, _hang_once, task_timeout=3.0, log=messages.append) as pool:
        assert pool.map([{"value": v, "marker": str(marker)} for v in range(4)]) == [0, 1, 2, 3]
        assert pool.restarts == 1
    assert len(messages) == 1 and "exceeded the 3s task timeout" in messages[0], messages
    assert not _alive(int(marker.read_text())), "the hung worker's child process outlived it"
    error_log = tmp_path / "worker_errors.log"
    with pytest.raises(WorkerError) as failure:
        with backend.pool(2, _raise, describe=lambda task: f"episode {task}", error_log=error_log) as pool:
            pool.map(range(3))
    assert str(failure.value) == ("episode 1 failed in a worker: ValueError: the environment broke "
                                  f"(worker traceback in {error_log})")
    assert "Traceback (most recent call last)" in error_log.read_text()


def test_unreachable_ray_address_is_one_line_and_exit_2(cluster, tmp_path):
    result = subprocess.run([sys.executable, "-m", "run.collect", f"--exp_dir={tmp_path}", "--env=carracing",
                             "--episodes=1", "--backend=ray", f"--ray_address={LOOPBACK}:9"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --ray_address={LOOPBACK}:9: cannot reach"), lines
    assert not list(tmp_path.glob("rollouts/ep*.npz"))
