"""All or nothing on disk: a job cancelled in the middle of any stage (not while loading), or failing while it
writes, leaves no result, preview, state or temporary file behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_golden import SMALL

from dreamsmith.core.jobs import JOBS
from dreamsmith.core.jobs.io import merge_models
from dreamsmith.core.meshio import TexturedMesh, write_files, write_glb
from dreamsmith.core.runtime import events
from dreamsmith.core.runtime.errors import Cancelled
from dreamsmith.core.runtime.events import CancelToken

TOY = Path(__file__).resolve().parents[2] / "assets" / "demo_prior"


class CancelIn(CancelToken):
    """Cancels when the job reaches ``step`` of ``stage`` (as its stage reporter says)."""

    def __init__(self, stage: str, step: int) -> None:
        super().__init__()
        self.target, self.where, self.seen = (stage, step), None, []

    def check(self) -> None:
        if self.where == self.target:
            self.cancel()
        super().check()


@pytest.fixture
def spy(monkeypatch):
    """Tell the running job's CancelIn where each reporter is."""
    original = events.StageReporter.step

    def step(self, step, *args, **kwargs):
        if isinstance(self.cancel, CancelIn):
            self.cancel.where = (self.stage, step)
            self.cancel.seen.append(self.cancel.where)
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(events.StageReporter, "step", step)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from dreamsmith.core.finish.bake import unwrap
    from dreamsmith.eval.synth_objects import ground_truth_mesh, write_dataset

    root = tmp_path_factory.mktemp("inputs")
    v, f = ground_truth_mesh("box_ball", resolution=20)[:2]
    v2, f2, uv, _ = unwrap(v.astype(np.float32), f)
    mesh = write_glb(TexturedMesh(v2, f2, uv, None, np.full((8, 8, 3), 90, np.uint8)), root / "in.glb")
    return {"mesh": mesh, "images": write_dataset("box_ball", root / "views", n_train=6, n_test=1, size=24, seed=1)}


CASES = [("generate", "coarse", 3), ("generate", "mesh", 2), ("retexture", "texture", 4),
         ("edit", "coarse", 2), ("edit", "mesh", 2), ("reconstruct", "coarse", 10), ("reconstruct", "mesh", 3),
         ("reconstruct", "bake", 1)]


@pytest.mark.parametrize("command,stage,step", CASES, ids=[f"{c}-{s}" for c, s, _ in CASES])
def test_cancel_mid_stage_leaves_nothing(tmp_path, inputs, spy, command, stage, step):
    kind = JOBS[command]
    over = json.loads(json.dumps(SMALL[command]))
    if kind.priors:
        over = merge_models(over, kind.priors, str(TOY))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run_inputs = {"mesh": str(inputs["mesh"]), "images": str(inputs["images"]), "prompt": "a blue cone"}
    if command == "generate":
        run_inputs["state_out"] = str(out_dir / "state.safetensors")
    token = CancelIn(stage, step)
    out = out_dir / ("result.obj" if command == "retexture" else "result.glb")
    with pytest.raises(Cancelled, match="nothing was written"):
        kind.run(run_inputs, out, kind.config("draft", over), device="cpu", cancel=token,
                 preview=out_dir / "preview.png")
    assert token.where == (stage, step), token.seen[-3:]  # it really stopped there, in the middle of the stage
    assert sorted(p.name for p in out_dir.iterdir()) == []


def test_a_failing_write_leaves_none_of_the_files(tmp_path):
    (tmp_path / "kept.glb").write_bytes(b"the user's older file")

    def fail(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    files = [(tmp_path / "a.png", lambda p: p.write_bytes(b"png")), (tmp_path / "kept.glb", fail),
             (tmp_path / "c.safetensors", lambda p: p.write_bytes(b"state"))]
    with pytest.raises(OSError):
        write_files(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.glb"]
    assert (tmp_path / "kept.glb").read_bytes() == b"the user's older file"


def test_a_generate_that_fails_at_its_preview_writes_no_state(tmp_path, monkeypatch):
    from dreamsmith.core.jobs import io

    def broken_preview(mesh, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(io, "preview_files", broken_preview)
    kind = JOBS["generate"]
    over = merge_models(json.loads(json.dumps(SMALL["generate"])), kind.priors, str(TOY))
    with pytest.raises(OSError):
        kind.run({"prompt": "a red cube", "state_out": str(tmp_path / "s.safetensors")}, tmp_path / "r.glb",
                 kind.config("draft", over), device="cpu", preview=tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = r"""
import sys
from pathlib import Path
from dreamsmith.core.meshio import write_files

def slow(path):
    with open(path, "wb") as fh:
        fh.write(b"half of a file")
        fh.flush()
        print("WRITING", flush=True)
        sys.stdin.read()  # until the test kills this process (or dies itself)

write_files([(Path(sys.argv[1]), slow)])
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_write_never_leaves_a_partial_file_under_the_name(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / "result.glb"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "WRITING"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not target.exists()  # only the hidden temporary, which the add-on's job folder clean-up removes
    assert all(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGINT"), reason="needs SIGINT")
def test_ctrl_c_during_training_exits_130_and_leaves_nothing(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"coarse": {"steps": 400}}))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cmd = [sys.executable, "-m", "dreamsmith", "generate", "--prompt", "a red cube", "--model", str(TOY),
           "--device", "cpu", "--config", str(cfg), "--out", str(out_dir / "r.glb"), "--preview",
           str(out_dir / "p.png"), "--save-state", str(out_dir / "s.safetensors")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    seen = b""
    while b"coarse" not in seen:  # the progress bar of the coarse stage: training has started
        chunk = proc.stderr.read1(4096)
        assert chunk, seen.decode(errors="replace")[-2000:]
        seen += chunk
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, (seen + rest).decode(errors="replace")[-2000:]
    assert b"nothing was written" in rest
    assert list(out_dir.iterdir()) == []
