"""The model manager in the preferences: which models are on this computer and how big, download (with progress and
cancel, only with online access), delete, and sign in to the Hugging Face Hub for gated models.

Everything runs in the engine's interpreter (``python -m dreamsmith models ...``,
:mod:`dreamsmith.core.priors.model_store`) from an argument list: the add-on never imports huggingface_hub. A
download is followed by a persistent ``bpy.app.timers`` callback and a reader thread
(:class:`.child_process.LineProcess`), so Blender never waits; in background mode the operator waits to the end.
The sign-in token goes to the engine on stdin and is cleared from the operator at once: it is never in the
preferences, a .blend, the operator log or a report.
"""

import json
import sys
import time
from dataclasses import dataclass, field

import bpy
from bpy.props import StringProperty

from ..protocol import DEMO_MODEL, MODELS, model_on_disk
from .child_process import LineProcess
from .job import PACKAGE_ROOT, bootstrap
from .redraw import redraw
from .settings import engine_env, get_preferences, interpreter, online_access, online_hint

#: Runs ``python -m dreamsmith <args>`` with the add-on's own copy of the package (see :mod:`.job`).
ENGINE_BOOTSTRAP = bootstrap("dreamsmith")
TIMER_INTERVAL = 0.25
QUICK_TIMEOUT_S = 120.0


def engine_command(python: str, *args: str) -> list[str]:
    """The argument list that runs ``python -m dreamsmith <args>`` with the add-on's copy of the package."""
    return [python, "-c", ENGINE_BOOTSTRAP, str(PACKAGE_ROOT), *args]


@dataclass
class ModelStore:
    """What the preferences show: the last model list, and the one running download.

    Attributes:
        rows: The last ``models list`` rows (dicts); empty before the first refresh.
        signed_in: A Hub token is stored (from the last list).
        error: Why the last list failed ("" if it did not).
        download: The running download, or None.
        model_id: The model being (or last) downloaded.
        done_bytes: Bytes downloaded so far.
        total_bytes: Bytes the download fetches.
        status: One line for the preferences: what the download is doing or how it ended.
        failed: The last download failed.
    """

    rows: list = field(default_factory=list)
    signed_in: bool = False
    error: str = ""
    download: LineProcess | None = None
    model_id: str = ""
    done_bytes: int = 0
    total_bytes: int = 0
    status: str = ""
    failed: bool = False


store = ModelStore()


def downloading() -> bool:
    """Whether a download runs."""
    return store.download is not None


def _cache_dir(prefs) -> str:
    return bpy.path.abspath(prefs.cache_dir) if getattr(prefs, "cache_dir", "") else ""


def _cache_args(prefs) -> list[str]:
    cache = _cache_dir(prefs)
    return ["--cache-dir", cache] if cache else []


def run_engine(prefs, *args: str, stdin_text: str = "") -> tuple[int, dict]:
    """Run a quick ``models`` command to its end: ``(exit code, its last JSON line)``; never shows stdin."""
    proc = LineProcess(engine_command(interpreter(prefs), "models", *args), engine_env(prefs), stdin_text)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < QUICK_TIMEOUT_S:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.stop()
        return 1, {"message": f"`models {args[0]}` took longer than {QUICK_TIMEOUT_S:.0f} s and was stopped."}
    code, lines = proc.finish()
    parsed = [json.loads(ln) for ln in lines if ln.startswith("{")]
    if not parsed:
        tail = next((ln for ln in reversed(lines) if ln.strip()), f"exit code {code}")
        return code or 1, {"message": f"The engine's Python failed ({tail[:200]}); check it with Check setup."}
    return code, parsed[-1]


def refresh(prefs) -> bool:
    """Read the model list again (a second or so); False (and ``store.error``) when the engine cannot."""
    code, out = run_engine(prefs, "list", "--json", *_cache_args(prefs))
    if code == 0 and "models" in out:
        store.rows, store.signed_in, store.error = out["models"], bool(out.get("signed_in")), ""
        return True
    store.error = out.get("message", "Listing the models failed.")
    return False


def _gb(n: float) -> str:
    """``n`` bytes for people: ``5.2 GB``, ``310.0 MB``, ``4.3 KB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _handle(line: str) -> None:
    try:
        msg = json.loads(line)
    except ValueError:
        return  # warnings of libraries
    if msg.get("type") == "progress":
        store.done_bytes, store.total_bytes = int(msg["done_bytes"]), int(msg["total_bytes"])
        pct = 100.0 * store.done_bytes / store.total_bytes if store.total_bytes else 0.0
        store.status = (f"Downloading {store.model_id}: {_gb(store.done_bytes)} of {_gb(store.total_bytes)} "
                        f"({pct:.0f}%) {msg.get('file', '')}").rstrip()
    elif msg.get("type") == "done":
        store.status = f"Downloaded {store.model_id} ({_gb(int(msg.get('size_bytes', 0)))})."
    elif msg.get("type") == "error":
        store.status, store.failed = f"Download failed: {msg.get('message', '')}", True


def start_download(prefs, model_id: str) -> None:
    """Start downloading ``model_id`` in the engine's interpreter (the caller follows it)."""
    store.model_id, store.done_bytes, store.total_bytes, store.failed = model_id, 0, 0, False
    store.status = f"Starting the download of {model_id}..."
    store.download = LineProcess(engine_command(interpreter(prefs), "models", "download", model_id,
                                                *_cache_args(prefs)), engine_env(prefs))


def _follow() -> bool:
    """Take in the download's new output lines; whether it still runs."""
    for line in store.download.drain():
        _handle(line)
    return store.download.poll() is None


def _finish(prefs) -> tuple[bool, str]:
    code, lines = store.download.finish()
    for line in lines:
        _handle(line)
    store.download = None
    if code != 0 and not store.failed:
        store.failed = True
        tail = next((ln for ln in reversed(lines) if ln.strip()), f"exit code {code}")
        store.status = f"Download failed: {tail[:200]}"
    refresh(prefs)
    return not store.failed, store.status


def download_timer() -> float | None:
    """``bpy.app.timers`` callback: follow the download until it ends (it never raises)."""
    if store.download is None:
        return None
    try:
        if _follow():
            redraw()
            return TIMER_INTERVAL
        ok, message = _finish(get_preferences())
        print(f"Dreamsmith: {message}", file=sys.stdout if ok else sys.stderr)
    except Exception as exc:  # a timer that raises is dropped silently by Blender: stop and say why
        stop_download(f"Download stopped: {type(exc).__name__}: {exc}")
    redraw()
    return None


def stop_download(message: str = "") -> None:
    """Stop a running download and its timer (Cancel, unregister). Partial files stay as ``.incomplete`` blobs in
    the Hub cache (not a model on disk); downloading again resumes them."""
    if bpy.app.timers.is_registered(download_timer):
        bpy.app.timers.unregister(download_timer)
    if store.download is not None:
        store.download.stop()
        store.download.drain()
        store.download = None
        store.failed = True
        store.status = message or f"The download of {store.model_id} was cancelled; downloading again resumes it."


class DREAMSMITH_OT_refresh_models(bpy.types.Operator):
    """Look again which models are on this computer and how big they are"""

    bl_idname = "dreamsmith.refresh_models"
    bl_label = "Refresh"

    def execute(self, context):
        """List the models (a second or so)."""
        if refresh(get_preferences(context)):
            return {"FINISHED"}
        self.report({"ERROR"}, store.error)
        return {"CANCELLED"}


class _OnModel:
    """What Download and Delete share: the model they act on, and not while a download runs."""

    model_id: StringProperty(name="Model", default="", description="Hugging Face id of the model")

    @classmethod
    def poll(cls, context):
        """Not while a download runs."""
        if downloading():
            cls.poll_message_set("A model is being downloaded.")
            return False
        return True


class DREAMSMITH_OT_download_model(_OnModel, bpy.types.Operator):
    """Download this model into the Hugging Face cache (only the safetensors weights the engine loads)"""

    bl_idname = "dreamsmith.download_model"
    bl_label = "Download"

    @classmethod
    def poll(cls, context):
        """Only with Blender's online access and the preference on; one download at a time."""
        if not super().poll(context):
            return False
        if not online_access(get_preferences(context)):
            cls.poll_message_set(online_hint("download models") + " The Dreamsmith preference Download "
                                 "Models must be on too.")
            return False
        return True

    def execute(self, context):
        """Start the download (interactive) or run it to the end (background)."""
        prefs = get_preferences(context)
        try:
            start_download(prefs, self.model_id)
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot run the engine's Python {interpreter(prefs)!r} ({exc}).")
            return {"CANCELLED"}
        if not bpy.app.background:
            bpy.app.timers.register(download_timer, first_interval=TIMER_INTERVAL, persistent=True)
            self.report({"INFO"}, f"Dreamsmith: downloading {self.model_id}; progress in the preferences.")
            return {"FINISHED"}
        while _follow():
            time.sleep(0.1)
        ok, message = _finish(prefs)
        self.report({"INFO"} if ok else {"ERROR"}, message)
        return {"FINISHED"} if ok else {"CANCELLED"}


class DREAMSMITH_OT_cancel_download(bpy.types.Operator):
    """Stop the running download (what was fetched stays in the cache; downloading again resumes)"""

    bl_idname = "dreamsmith.cancel_download"
    bl_label = "Cancel download"

    @classmethod
    def poll(cls, context):
        """Only while a download runs."""
        return downloading()

    def execute(self, context):
        """Terminate the download process."""
        stop_download()
        refresh(get_preferences(context))
        self.report({"INFO"}, store.status)
        return {"FINISHED"}


class DREAMSMITH_OT_delete_model(_OnModel, bpy.types.Operator):
    """Delete this model from the Hugging Face cache (a folder of your own is never deleted)"""

    bl_idname = "dreamsmith.delete_model"
    bl_label = "Delete"

    def invoke(self, context, event):
        """Ask first."""
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        """Delete it and list the models again."""
        prefs = get_preferences(context)
        code, out = run_engine(prefs, "delete", self.model_id, *_cache_args(prefs))
        refresh(prefs)
        if code != 0:
            self.report({"ERROR"}, out.get("message", "Deleting failed."))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Deleted {self.model_id} ({_gb(int(out.get('freed_bytes', 0)))} freed).")
        return {"FINISHED"}


class DREAMSMITH_OT_sign_in(bpy.types.Operator):
    """Sign in to the Hugging Face Hub for gated models (the token goes to the Hub's own token store)"""

    bl_idname = "dreamsmith.sign_in"
    bl_label = "Sign in to Hugging Face"
    bl_options = {"INTERNAL"}  # not REGISTER: never in the operator log

    token: StringProperty(name="Access token", subtype="PASSWORD", default="", options={"SKIP_SAVE", "HIDDEN"},
                          description="An access token from https://huggingface.co/settings/tokens (read access)")

    def invoke(self, context, event):
        """A popup asking for the token."""
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        """The token field."""
        self.layout.prop(self, "token")
        self.layout.label(text="Stored by huggingface_hub, never in Blender's files.", icon="LOCKED")

    def execute(self, context):
        """Hand the token to the engine on stdin and forget it."""
        token, self.token = self.token, ""
        prefs = get_preferences(context)
        code, out = run_engine(prefs, "login", stdin_text=token.strip() + "\n")
        del token
        refresh(prefs)
        if code != 0:
            self.report({"ERROR"}, out.get("message", "Signing in failed."))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Signed in to Hugging Face as {out.get('user', '?')}.")
        return {"FINISHED"}


class DREAMSMITH_OT_sign_out(bpy.types.Operator):
    """Sign out of the Hugging Face Hub (removes the stored tokens)"""

    bl_idname = "dreamsmith.sign_out"
    bl_label = "Sign out"

    def execute(self, context):
        """Remove the stored tokens."""
        prefs = get_preferences(context)
        code, out = run_engine(prefs, "logout")
        refresh(prefs)
        if code != 0:
            self.report({"ERROR"}, out.get("message", "Signing out failed."))
            return {"CANCELLED"}
        self.report({"INFO"}, "Signed out of Hugging Face.")
        return {"FINISHED"}


def _rows(prefs) -> list[dict]:
    """The last list, or (before the first refresh) the known models with what the add-on sees on disk."""
    if store.rows:
        return store.rows
    cache = _cache_dir(prefs)
    return [{"id": m.id, "label": m.label, "on_disk": model_on_disk(m.id, cache), "size_bytes": None,
             "gated": m.gated, "licence": m.licence, "download_gb": m.download_gb, "vram_gb": m.vram_gb}
            for m in MODELS]


def draw_models(layout, context) -> None:
    """The model manager on the preferences page: sign-in, download progress, one row per model."""
    prefs = get_preferences(context)
    box = layout.box()
    row = box.row()
    row.label(text="Models", icon="FILE_3D")
    row.operator(DREAMSMITH_OT_refresh_models.bl_idname, icon="FILE_REFRESH")
    if store.signed_in:
        row.operator(DREAMSMITH_OT_sign_out.bl_idname, icon="UNLOCKED")
    else:
        row.operator(DREAMSMITH_OT_sign_in.bl_idname, icon="LOCKED")
    if store.error:
        box.label(text=store.error, icon="ERROR")
    if downloading():
        row = box.row()
        if store.total_bytes and hasattr(row, "progress"):
            row.progress(factor=store.done_bytes / store.total_bytes, type="BAR", text=store.status)
        else:
            row.label(text=store.status, icon="TIME")
        row.operator(DREAMSMITH_OT_cancel_download.bl_idname, icon="CANCEL")
    elif store.status:
        box.label(text=store.status, icon="ERROR" if store.failed else "INFO")
    if not online_access(prefs):
        box.label(text=online_hint("download models"), icon="INFO")
    for model in _rows(prefs):
        row = box.row()
        row.label(text=model["label"], icon="CHECKMARK" if model["on_disk"] else "BLANK1")
        size = model.get("size_bytes")
        row.label(text=_gb(size) if model["on_disk"] and size else
                  ("on disk" if model["on_disk"] else f"{model.get('download_gb') or 0:g} GB to download"))
        vram = model.get("vram_gb")
        row.label(text="CPU" if vram == 0 else (f"{vram:g} GB VRAM" if vram else "VRAM ?"))
        row.label(text=("Gated, sign in: " if model.get("gated") else "") + (model.get("licence") or ""))
        if model["id"] == DEMO_MODEL:
            row.label(text="Ships with Dreamsmith")
        elif model["on_disk"]:
            row.operator(DREAMSMITH_OT_delete_model.bl_idname, icon="TRASH").model_id = model["id"]
        else:
            row.operator(DREAMSMITH_OT_download_model.bl_idname, icon="IMPORT").model_id = model["id"]


CLASSES = (DREAMSMITH_OT_refresh_models, DREAMSMITH_OT_download_model, DREAMSMITH_OT_cancel_download,
           DREAMSMITH_OT_delete_model, DREAMSMITH_OT_sign_in, DREAMSMITH_OT_sign_out)
