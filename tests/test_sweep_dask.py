"""kit.backtest.sweep on a Dask cluster (issue 17): the same table as a local sweep, to the last digit.

Clusters are real: a LocalCluster of two worker processes, and ``dask scheduler`` plus two
``dask worker`` processes started as subprocesses over TCP on loopback (one of them SIGKILLed
mid-sweep). Workers inherit PYTHONPATH (kit) and NUMBA_CACHE_DIR (compiled kernels) from the tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

import kit.backtest as bt
from kit.market.files import read_candles
from kit.strategies import EmaCross

pytestmark = pytest.mark.timeout(600)  # worker processes start and load numba kernels

# 30 valid sets (fast=20, slow=20 is rejected), stops on half of them.
GRID = {"fast": [5, 8, 12, 20], "slow": [20, 30, 50, 80], "stop_loss": [0.0, 0.03]}
CHUNK = 4


@pytest.fixture(scope="module")
def data(sample_dir: Path) -> pd.DataFrame:
    return read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz")


@pytest.fixture(scope="module")
def local_table(data: pd.DataFrame) -> pd.DataFrame:
    return bt.sweep(EmaCross, data, GRID, progress=False, chunk_size=CHUNK)


def assert_same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture
def tcp_cluster(tmp_path: Path) -> Iterator[Callable[[], tuple[str, dict[str, subprocess.Popen]]]]:
    """Starts ``dask scheduler`` and two ``dask worker`` (no nanny: a killed worker stays dead)."""
    procs: list[subprocess.Popen] = []

    def start() -> tuple[str, dict[str, subprocess.Popen]]:
        file = tmp_path / "scheduler.json"
        env = _worker_env()
        common = ["--no-dashboard", "--scheduler-file", str(file)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", *common],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().strip():
            assert procs[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler wrote no scheduler file"
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        workers = {}
        options = ["--nthreads", "1", "--no-nanny"]
        for name in ("w1", "w2"):
            workers[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dask",
                    "worker",
                    *common,
                    "--host",
                    "127.0.0.1",
                    "--name",
                    name,
                    *options,
                    "--local-directory",
                    str(tmp_path / name),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(workers[name])
        from distributed import Client

        with Client(address, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=120)
        return address, workers

    yield start
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.slow  # worker processes start and load numba kernels
def test_a_sweep_on_a_local_cluster_of_two_worker_processes_equals_the_local_sweep(data, local_table):
    from distributed import Client, LocalCluster, get_task_stream

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        with get_task_stream(client) as stream:
            table = bt.sweep(EmaCross, data, GRID, progress=False, chunk_size=CHUNK, client=client)
        chunks = [t for t in stream.data if str(t["key"]).startswith("sweep-EmaCross-")]
        assert len(chunks) == 8  # 30 sets in chunks of 4, each run once
        assert len({t["worker"] for t in chunks}) == 2
        assert client.status == "running"  # the caller's client stays the caller's to close
    assert len(table) == 30
    assert_same_table(table, local_table)


@pytest.mark.slow  # worker processes start and load numba kernels
def test_a_walk_forward_on_a_local_cluster_of_two_worker_processes_equals_the_local_one(data):
    from distributed import Client, LocalCluster, get_task_stream

    kwargs = {"train": 3000, "test": 2000, "chunk_size": CHUNK, "progress": False}
    local = bt.walk_forward(EmaCross, data, GRID, **kwargs)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        with get_task_stream(client) as stream:
            remote = bt.walk_forward(EmaCross, data, GRID, client=client, **kwargs)
        chunks = [t for t in stream.data if str(t["key"]).startswith("sweep-EmaCross-")]
        assert len(chunks) == 3 * 8  # three folds, each 30 sets in chunks of 4, each run once
        assert len({t["worker"] for t in chunks}) == 2
    assert len(remote.folds) == 3
    pd.testing.assert_frame_equal(remote.folds, local.folds, check_exact=True)
    for got, want in zip(remote.sweeps, local.sweeps, strict=True):
        assert_same_table(got, want)
    pd.testing.assert_series_equal(remote.equity, local.equity, check_exact=True)
    pd.testing.assert_frame_equal(remote.trades, local.trades, check_exact=True)


# A strategy class defined in the script itself (``__main__``), as in a notebook: the workers
# cannot import it, so it must travel with the tasks.
MAIN_SCRIPT = """
import os, sys
import pandas as pd
import kit.backtest as bt
from kit.market.files import read_candles
from kit.strategies import EmaCross
from kit.strategy import Signals

class Mine(EmaCross):
    def signals(self, d):  # exits only above the slow average
        sig = super().signals(d)
        return Signals(sig.entries, sig.exits & (d.close > d.slow_ema))

data = read_candles(sys.argv[1])
grid = {"fast": [5, 12], "slow": [30, 50]}
remote = bt.sweep(Mine, data, grid, progress=False, chunk_size=1)
os.environ.pop("KIT_DASK_SCHEDULER")
local = bt.sweep(Mine, data, grid, progress=False, chunk_size=1)
pd.testing.assert_frame_equal(remote, local, check_exact=True)
print("same", len(remote))
"""


@pytest.mark.slow  # worker processes start and load numba kernels
def test_a_sweep_on_dask_scheduler_and_worker_processes_over_tcp_named_by_kit_dask_scheduler(
    data, local_table, tcp_cluster, monkeypatch, capsys, sample_dir
):
    address, _ = tcp_cluster()
    assert address.startswith("tcp://127.0.0.1:")
    monkeypatch.setenv("KIT_DASK_SCHEDULER", address)
    table = bt.sweep(EmaCross, data, GRID, progress=False, chunk_size=CHUNK)
    assert_same_table(table, local_table)
    # A strategy defined in the user's own __main__ (a notebook) runs on the workers too.
    env = {**_worker_env(), "KIT_DASK_SCHEDULER": address}
    csv = str(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz")
    out = subprocess.run([sys.executable, "-c", MAIN_SCRIPT, csv], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "same 4"
    # An explicit address works the same, and the progress bar counts every set.
    monkeypatch.delenv("KIT_DASK_SCHEDULER")
    capsys.readouterr()
    assert_same_table(bt.sweep(EmaCross, data, GRID, chunk_size=CHUNK, client=address), local_table)
    assert "30/30" in capsys.readouterr().err


def _sweep_dependencies(dask_scheduler) -> dict[str, list[str]]:
    """Chunk task key -> its dependencies' keys, for the sweep's tasks (runs on the scheduler)."""
    return {
        str(k): sorted(str(d.key) for d in ts.dependencies)
        for k, ts in dask_scheduler.tasks.items()
        if str(k).startswith("sweep-")
    }


@pytest.mark.slow  # worker processes start and load numba kernels
def test_the_chunks_of_a_worker_killed_mid_sweep_are_recomputed_and_the_table_is_unchanged(
    data, local_table, tcp_cluster
):
    from distributed import Client

    address, workers = tcp_cluster()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["table"] = bt.sweep(EmaCross, data, GRID, progress=False, chunk_size=1, client=address)
        except BaseException as exc:  # re-raised by the test thread below
            result["error"] = exc

    with Client(address, set_as_default=False) as monitor:
        w1 = next(a for a, w in monitor.scheduler_info()["workers"].items() if w["name"] == "w1")
        sweeping = threading.Thread(target=run)
        sweeping.start()
        deadline = time.monotonic() + 120
        busy: list = []
        deps: dict[str, list[str]] = {}
        # Until every chunk (one set each) reached the scheduler, which gets them in batches, and
        # w1 is running one of them.
        while not (busy and len(deps) == len(local_table)):
            assert sweeping.is_alive(), f"the sweep ended before w1 took a chunk: {result}"
            assert time.monotonic() < deadline, f"w1 never took a chunk ({len(deps)} chunks submitted)"
            deps = monitor.run_on_scheduler(_sweep_dependencies)
            busy = [k for k in monitor.processing(workers=[w1]).get(w1, ()) if str(k).startswith("sweep-")]
            time.sleep(0.02)
        # The candles went to the cluster once: every chunk task depends on the same scattered
        # frame rather than carrying a copy of it.
        assert {tuple(d) for d in deps.values()} == {(next(iter(deps.values()))[0],)}
        assert next(iter(deps.values()))[0].startswith("DataFrame-")
        workers["w1"].send_signal(signal.SIGKILL)
        workers["w1"].wait(timeout=10)
        sweeping.join(timeout=240)
        assert not sweeping.is_alive()
        assert "error" not in result, result.get("error")
        assert list(monitor.scheduler_info()["workers"]) != [w1]
        assert len(monitor.scheduler_info()["workers"]) == 1
    assert_same_table(result["table"], local_table)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "why"),
    [("tcp://127.0.0.1:9", "refused"), ("nonsense", "missing port"), ("tcp://no-such-host.invalid:8786", "")],
)
def test_an_unreachable_or_malformed_scheduler_is_one_config_error_line_and_a_clean_exit(sample_dir, address, why):
    # In a process of its own: what the user sees includes what the interpreter prints at exit.
    code = (
        "import sys, kit.backtest as bt\n"
        "from kit.errors import ConfigError\n"
        "from kit.market.files import read_candles\n"
        "from kit.strategies import EmaCross\n"
        f"df = read_candles({str(sample_dir / 'ETHUSDT_1h_20230101_20240110.csv.gz')!r}).iloc[:500]\n"
        "try:\n"
        f"    bt.sweep(EmaCross, df, {{'fast': [5], 'slow': [20]}}, progress=False, client={address!r})\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=_worker_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"cannot reach the Dask scheduler at {address}: ")
    assert why in out.stdout
    assert out.stdout.count("\n") == 1
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
    assert time.monotonic() - started < 60


def test_import_kit_and_a_local_sweep_never_import_dask(sample_dir):
    code = (
        "import sys, kit, kit.backtest\n"
        "from kit.market.files import read_candles\n"
        "from kit.strategies import EmaCross\n"
        f"df = read_candles({str(sample_dir / 'ETHUSDT_1h_20230101_20240110.csv.gz')!r})\n"
        "t = kit.backtest.sweep(EmaCross, df, {'fast': [5, 8], 'slow': [20]}, progress=False)\n"
        "assert len(t) == 2\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_worker_env(), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
