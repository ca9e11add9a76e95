"""Multi-process training for real: several `launch.py` processes on localhost, joined by `jax.distributed` with
Gloo collectives on CPU, each with 2 simulated devices. Every process is bounded in time and only talks to
127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import portpicker
import pytest

from aejax import runs
from configs import mnist_ae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300  # seconds any one process may take


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    from aejax import build

    config = mnist_ae.get_config("runlocal")
    config.data_dir = path
    build.load_data(config)  # prepare mnist5k once, before several processes read it
    return path


def _command(workdir, data_dir, *flags):
    return [
        sys.executable,
        "launch.py",
        "--config=configs/mnist_ae.py:runlocal",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        "--config.analysis.pca_baseline=false",
        "--config.analysis.embedding=pca",
        *flags,
    ]


def _start(workdir, data_dir, num_processes, *flags, heartbeat=10):
    """Starts `num_processes` processes of one run; returns the Popen objects (stdout+stderr to files)."""
    port = portpicker.pick_unused_port()
    procs = []
    for i in range(num_processes):
        log = open(os.path.join(workdir, f"process_{i}.log"), "w")
        dist = [
            "--distributed",
            f"--coordinator_address=127.0.0.1:{port}",
            f"--num_processes={num_processes}",
            f"--process_id={i}",
            f"--heartbeat_timeout={heartbeat}",
            "--initialization_timeout=120",
            "--num_cpu_devices=2",
        ]
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        procs.append(subprocess.Popen(_command(workdir, data_dir, *dist, *flags), cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, env=env))  # fmt: skip
    return procs


def _wait(procs, workdir):
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
    logs = [open(os.path.join(workdir, f"process_{i}.log")).read() for i in range(len(procs))]
    return codes, logs


def _params(workdir):
    return runs.load_run(str(workdir)).variables["params"]


def _assert_params_close(a, b):
    # The same global batch and the same update; only the all-reduce order of the gradient sums may differ.
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# One schedule for every launch, so the uninterrupted two-process run is the reference of both tests.
# 100 steps: the kill lands at the first checkpoint (step 20), well before the end.
NUM_STEPS = 100
STEPS = [f"--config.num_train_steps={NUM_STEPS}", "--config.checkpoint_every=20",
         f"--config.eval_every={NUM_STEPS}", "--config.log_every=20"]  # fmt: skip
HEARTBEAT = 10  # seconds


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """The workdir of an uninterrupted two-process run (2 x 2 devices) of the STEPS schedule."""
    ref = tmp_path_factory.mktemp("two")
    codes, logs = _wait(_start(ref, data_dir, 2, *STEPS), ref)
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    return ref


def test_two_processes_train_like_one_with_the_same_devices(tmp_path, data_dir, reference):
    one = tmp_path / "one"
    one.mkdir()
    proc = subprocess.run(_command(one, data_dir, "--num_cpu_devices=4", *STEPS), cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r1, r2 = (json.loads((d / "results.json").read_text()) for d in (one, reference))
    assert r1["num_devices"] == r2["num_devices"] == 4
    np.testing.assert_allclose(r2["test_sq_err"], r1["test_sq_err"], rtol=1e-5)
    _assert_params_close(_params(one), _params(reference))
    # Only process 0 writes metrics: each logged step appears once in metrics.jsonl, not once per process.
    lines = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in lines if "loss" in r]
    assert train_steps == list(range(20, NUM_STEPS + 1, 20))


def test_a_lost_process_stops_the_other_and_a_relaunch_resumes_like_an_uninterrupted_run(
    tmp_path, data_dir, reference
):
    run = tmp_path / "lost"
    run.mkdir()
    procs = _start(run, data_dir, 2, *STEPS, heartbeat=HEARTBEAT)
    ckpts = run / "checkpoints"
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not (ckpts.is_dir() and any(d.isdigit() for d in os.listdir(ckpts))):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    code = procs[0].wait(timeout=TIMEOUT)
    waited = time.time() - killed_at
    procs[1].wait(timeout=60)
    log = (run / "process_0.log").read_text()
    assert code != 0
    # Two ways the survivor learns of the loss, depending on where the kill lands: the coordination service's
    # missed heartbeats, or gloo's transport failing mid-collective (a truncated message aborts the process).
    missed = "stopped sending heartbeats"
    heartbeat_stop = missed in log and "1" in log.split(missed)[-1][:200]
    transport_stop = "gloo" in log and ("Received data size doesn't match" in log or "Connection closed" in log)
    assert heartbeat_stop or transport_stop, log[-3000:]
    assert waited < HEARTBEAT + 60, f"process 0 took {waited:.0f} s to notice"
    saved = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit())
    assert saved and saved[-1] < NUM_STEPS, f"the run was not interrupted before its end: {saved}"
    # The last complete checkpoint still restores.
    assert runs.load_run(str(run)).step >= 20

    # Relaunched, both processes resume from it and end where the uninterrupted run did.
    codes, logs = _wait(_start(run, data_dir, 2, *STEPS), run)
    assert codes == [0, 0], logs[0][-3000:]
    assert "Resuming" in logs[0]
    _assert_params_close(_params(reference), _params(run))
