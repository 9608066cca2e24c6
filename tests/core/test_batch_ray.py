"""Batches on a local Ray cluster started here (two CPUs, the toy prior, a few steps): mixed job kinds, a bad job
that fails alone, a worker killed in the middle of a job that is retried, and a rerun that does no work."""

from __future__ import annotations

import json
import os
import signal

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'dreamsmith[cluster]'); make test has it")

from batch_inputs import job, write_inputs, write_jobs  # noqa: E402 (after the importorskip)

from dreamsmith.core.app.batch.command import run_batch  # noqa: E402
from dreamsmith.core.meshio import read_mesh  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_mixed_batch_on_ray_survives_a_bad_job_and_a_killed_worker_and_resumes(cluster, tmp_path):
    write_inputs(tmp_path / "inputs")
    slow = job("generate", prompt="a red cube")
    slow["config"] = dict(slow["config"], coarse={**slow["config"]["coarse"], "steps": 12})
    jobs_file = write_jobs(tmp_path / "inputs" / "jobs.jsonl", [
        slow,
        job("generate", image="disc.png", elevation=10.0),
        job("retexture", mesh="prop.glb", prompt="a green cube"),
        job("edit", mesh="prop.glb", prompt="a blue sphere", seed=3),
        job("generate", image="nothing.png"),  # no object in the picture: fails, alone
    ])
    starts: list[tuple[int, int]] = []
    killed: list[int] = []

    def on_start(batch_job, pid):
        starts.append((batch_job.index, pid))
        if batch_job.index == 0 and not killed:  # kill the first worker as its job starts (SIGKILL: no goodbye)
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    out = tmp_path / "out"
    counts = run_batch(jobs_file, out, cluster="local", cpus_per_job=1, retries=2, show=False, on_start=on_start)
    assert counts["done"] == 4 and counts["failed"] == 1 and not counts["interrupted"], counts
    records = {r["index"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    assert sorted(records) == [0, 1, 2, 3, 4]
    assert records[4]["status"] == "failed" and "object" in records[4]["error"].lower(), records[4]
    assert records[0]["status"] == "done" and records[0]["attempts"] == 2, records[0]
    assert [pid for i, pid in starts if i == 0][0] == killed[0] and len([i for i, _ in starts if i == 0]) == 2
    for i in range(4):
        rec = records[i]
        assert rec["status"] == "done", rec
        assert rec["progress"] and all(s["step"] == s["total"] for s in rec["progress"].values()), rec["progress"]
        glb = out / rec["outputs"][0]
        assert glb.suffix == ".glb" and len(read_mesh(glb)[1]) > 100
        assert (out / rec["outputs"][1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert records[1]["inputs"]["image"] == "disc.png" and "reference" in records[1]["summary"]
    assert {records[i]["inputs"]["command"] for i in range(4)} == {"generate", "retexture", "edit"}
    assert len({r["worker"] for r in records.values() if r["worker"]}) >= 2  # the work was shared out

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".glb", ".png")}
    starts.clear()
    again = run_batch(jobs_file, out, cluster="local", show=False, on_start=on_start)
    assert again["skipped"] == 4 and again["done"] == 0 and again["failed"] == 1, again
    assert [i for i, _ in starts] == [4]  # only the failed job ran again
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".glb", ".png")}
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 5
