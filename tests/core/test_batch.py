"""``python -m dreamsmith batch`` without Ray: reading jobs files, the manifest that makes reruns resume, jobs one
after another in this process with the priors kept loaded, and clear errors for bad commands."""

from __future__ import annotations

import json
import sys

import pytest
from batch_inputs import GENERATE, TOY, job, write_inputs, write_jobs
from processes import deadline

from dreamsmith.core.app.batch.jobs_file import read_jobs
from dreamsmith.core.app.batch.manifest import Manifest
from dreamsmith.core.app.cli import main
from dreamsmith.core.runtime.errors import InputError


def test_a_text_file_is_one_generate_job_a_prompt(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("a red cube\n# a comment\n\n  a blue torus  \na red cube\n")
    jobs = read_jobs(f, {"preset": "standard", "seed": 7, "model": str(TOY)})
    assert [j.spec["prompt"] for j in jobs] == ["a red cube", "a blue torus", "a red cube"]
    assert all(j.spec["command"] == "generate" and j.spec["preset"] == "standard" and j.spec["seed"] == 7
               and not j.error for j in jobs)
    assert len({j.key for j in jobs}) == 3  # the same prompt twice is two jobs
    assert [j.line for j in jobs] == [1, 4, 5] and jobs[1].stem == "0001_generate_a_blue_torus"
    assert read_jobs(f, {"seed": 8})[0].key != jobs[0].key  # a changed job is a new job


def test_json_lines_carry_every_kind_and_their_inputs_as_bytes(tmp_path):
    inputs = write_inputs(tmp_path / "in")
    f = write_jobs(tmp_path / "in" / "jobs.jsonl", [
        job("retexture", mesh="prop.glb", prompt="a green cube", preset="high"),
        job("generate", image="disc.png", elevation=20.0),
        {"command": "generate", "prompt": "a cone", "model": "assets/demo_prior"},
        {"command": "transfer", "mesh": "prop.glb", "target": "prop.glb"},
    ])
    jobs = read_jobs(f, {"preset": "draft", "seed": 1})
    assert [j.error for j in jobs] == ["", "", "", ""]
    assert set(jobs[3].files) == {"mesh", "target"} and jobs[3].inputs()["target"] == "prop.glb"  # both travel
    assert jobs[0].spec["preset"] == "high" and jobs[0].files["mesh"]["data"] == inputs["mesh"].read_bytes()
    assert jobs[1].files["image"]["name"] == "disc.png" and jobs[1].spec["elevation"] == 20.0
    assert jobs[2].spec["model"] == str(TOY)  # a relative local folder becomes absolute; it travels as a path
    assert jobs[0].inputs()["mesh"] == "prop.glb" and "data" not in json.dumps(jobs[0].inputs())


@pytest.mark.parametrize("line, words", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "not a JSON object"),
    ('{"command": "retexture", "prompt": "x"}', "needs a 'mesh'"),
    ('{"command": "edit", "mesh": "missing.glb", "prompt": "x"}', "does not exist"),
    ('{"command": "generate", "prompt": "x", "colour": "red"}', "colour"),
    ('{"command": "generate", "prompt": "x", "out": "/tmp/x.glb"}', "names its results itself"),
    ('{"command": "generate"}', "no prompt"),
    ('{"command": "paint", "prompt": "x"}', "paint"),
])
def test_a_bad_line_is_a_job_that_fails_alone(tmp_path, line, words):
    f = tmp_path / "jobs.jsonl"
    f.write_text('{"command": "generate", "prompt": "a red cube"}\n' + line + "\n")
    good, bad = read_jobs(f)
    assert not good.error and words in bad.error and bad.error.startswith("line 2"), bad.error


def test_a_jobs_file_that_cannot_be_read_is_an_error(tmp_path):
    with pytest.raises(InputError, match="Cannot read"):
        read_jobs(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(InputError, match="no jobs"):
        read_jobs(tmp_path / "empty.txt")


def test_the_manifest_keeps_the_last_record_and_trusts_only_files_that_are_there(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "a.glb").write_bytes(b"glb")
    m.add({"key": "a", "index": 0, "status": "failed", "outputs": []})
    m.add({"key": "a", "index": 0, "status": "done", "outputs": ["a.glb"]})
    m.add({"key": "b", "index": 1, "status": "done", "outputs": ["b.glb"]})  # its file was deleted since
    with open(m.path, "a") as fh:
        fh.write('{"key": "c", "status": "do')  # a line cut short by a crash
    again = Manifest(tmp_path)
    assert again.is_done("a") and not again.is_done("b") and not again.is_done("c")
    again.compact(["b", "a"])
    assert [json.loads(ln)["key"] for ln in again.path.read_text().splitlines()] == ["b", "a"]
    assert [r["key"] for r in again.finished()] == ["a"]


def test_batch_runs_here_one_job_after_another_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    from dreamsmith.core.priors import models

    loads = []
    real_load = models._load_prior
    monkeypatch.setattr(models, "_load_prior", lambda cfg, path, *a: loads.append(path) or real_load(cfg, path, *a))
    write_inputs(tmp_path / "in")
    jobs = write_jobs(tmp_path / "in" / "jobs.jsonl", [
        job("generate", prompt="a red cube"),
        job("retexture", mesh="missing.glb", prompt="a blue cube"),  # fails alone, before anything runs
        job("retexture", mesh="prop.glb", prompt="a blue cube"),
    ])
    out = tmp_path / "out"
    assert main(["batch", "--jobs", str(jobs), "--out", str(out), "--quiet"]) == 1
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts == {**counts, "jobs": 3, "skipped": 0, "done": 2, "failed": 1, "interrupted": False}
    recs = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in recs] == ["done", "failed", "done"]
    assert "missing.glb" in recs[1]["error"] and recs[1]["outputs"] == []
    assert len(loads) == 1, loads  # one prior for all three jobs' stages: it stayed loaded
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.jsonl", *recs[0]["outputs"], *recs[2]["outputs"]])
    (out / recs[2]["outputs"][0]).unlink()  # a result deleted by hand is made again
    assert main(["batch", "--jobs", str(jobs), "--out", str(out), "--quiet"]) == 1
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["skipped"] == 1 and again["done"] == 1 and again["failed"] == 1, again


def test_prompt_file_with_command_line_defaults(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a blue sphere\n")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(GENERATE))
    out = tmp_path / "out"
    assert main(["batch", "--jobs", str(prompts), "--out", str(out), "--model", str(TOY), "--config", str(config),
                 "--seed", "4", "--quiet"]) == 0
    rec = json.loads((out / "manifest.jsonl").read_text())
    assert rec["inputs"]["seed"] == 4 and rec["inputs"]["prompt"] == "a blue sphere" and rec["status"] == "done"
    assert rec["progress"]["coarse"]["step"] == GENERATE["coarse"]["steps"]


def test_bad_batch_commands_exit_2_with_a_message(tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\n")
    (tmp_path / "file").write_text("")
    assert main(["batch", "--jobs", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "Cannot read the jobs file" in capsys.readouterr().err
    assert main(["batch", "--jobs", str(prompts), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["batch", "--jobs", str(prompts), "--out", str(tmp_path / "o"), "--retries", "-1"]) == 2
    assert "negative" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the cluster extra
    assert main(["batch", "--jobs", str(prompts), "--out", str(tmp_path / "o"), "--cluster", "local"]) == 2
    assert 'pip install "dreamsmith[cluster]"' in capsys.readouterr().err
    assert not (tmp_path / "o" / "manifest.jsonl").exists()


def test_kept_priors_are_loaded_once_and_keep_their_text_encoder(tmp_path):
    from dreamsmith.core.priors.models import PriorConfig, keep_priors, load_prior

    cfg = PriorConfig(model=str(TOY))
    with keep_priors():
        a = load_prior(cfg, "cpu")
        a.release_text_encoder()
        b = load_prior(cfg, "cpu")
        assert b.unet is a.unet and b.text_encoder is not None and a.text_encoder is None
    assert load_prior(cfg, "cpu").unet is not a.unet  # outside, every load is fresh


def test_ctrl_c_stops_the_batch_and_keeps_what_finished(tmp_path):
    import os
    import signal
    import subprocess

    write_inputs(tmp_path / "in")
    jobs = write_jobs(tmp_path / "in" / "jobs.jsonl", [job("generate", prompt=p, seed=i) for i, p in
                                                       enumerate(("a red cube", "a blue sphere", "a green cone"))])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dreamsmith", "batch", "--jobs", str(jobs), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    said = ""
    with deadline(300, proc.kill):
        while "[done]" not in said and (line := proc.stderr.readline()):  # the terminal's line for a recorded job
            said += line
    proc.send_signal(signal.SIGINT)  # the first job is in the manifest: the second is starting or running
    stdout, stderr = proc.communicate(timeout=120)
    stderr = said + stderr
    manifest = out / "manifest.jsonl"
    assert proc.returncode == 130, stdout + stderr[-2000:]
    counts = json.loads(stdout.strip().splitlines()[-1])
    assert counts["interrupted"] and 1 <= counts["done"] < 3, counts
    assert "run the same command again" in stderr
    done = [json.loads(ln) for ln in manifest.read_text().splitlines()]
    assert all(r["status"] == "done" for r in done) and len(done) == counts["done"]
    names = {p.name for p in out.iterdir()}
    assert names == {"manifest.jsonl", *(n for r in done for n in r["outputs"])}, names  # nothing half-written
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = json.loads(again.stdout.strip().splitlines()[-1])
    assert rerun["skipped"] == counts["done"] and rerun["done"] == 3 - counts["done"], rerun
