"""Train the offline toy prior: a tiny text-conditioned pixel-space diffusion model in a standard diffusers folder.

The model draws ``"a {colour} {shape}"`` (four colours x cube / sphere / cone / torus, optionally with a view suffix
such as ``", side view"``) at 32x32 on a white background. It exists so that tests and CPU demos exercise exactly the
code path of real pixel priors: ``UNet2DConditionModel`` called as ``unet(x, t, encoder_hidden_states=emb).sample``
(plus ``class_labels`` = the camera) with ``x`` in [-1, 1], a ``CLIPTextModel`` text encoder, a
``PreTrainedTokenizerFast`` tokenizer and a ``DDPMScheduler``, all saved as safetensors.

The prompt reaches every resnet block through ``addition_embed_type="text"`` (an attention-pooled text embedding
added to the timestep embedding) and the 8x8 / mid blocks through cross-attention. The text encoder is trained
jointly from scratch on a word-level vocabulary.

Usage::

    python scripts/train_toy_prior.py --minutes 60 --out assets/demo_prior
    python scripts/train_toy_prior.py --init assets/demo_prior --minutes 30 --lr 4e-4 --out /tmp/tuned

The defaults are the committed toy prior's recipe: the UNet also takes the camera's angles
(``--camera-features``, :mod:`dreamsmith.core.guidance.camera`; ``--camera-features ""`` trains one without),
cube images are drawn 1.5x as often and 30 % of timesteps come from 500 up (where the view decides the shape).
With ``--init`` it fine-tunes an existing toy prior (its UNet and text encoder); a prior without a camera input gets
a new, zeroed camera embedding, so it starts out drawing what it drew before.

The run is deterministic for a fixed ``--iters`` (fixed seeds, deterministic data); with ``--minutes`` it stops when
the time budget is spent (the learning-rate schedule follows the elapsed fraction of the budget). The folder is
written atomically at the end (a temp folder beside ``--out``, then a rename).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from dreamsmith.core.guidance.camera import CAMERA_FEATURES, camera_features, mirrored_azimuth
from dreamsmith.eval.toy_prior_data import COLOURS, SHAPES, VIEWS, VOCAB, build_dataset, prompt

MAX_LENGTH = 8
HIDDEN = 64


def build_tokenizer():
    """A word-level, lower-casing, whitespace-split fast tokenizer padding to :data:`MAX_LENGTH`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   model_max_length=MAX_LENGTH, padding_side="right", truncation_side="right")


def build_text_encoder():
    """A 2-layer, 64-wide ``CLIPTextModel`` over :data:`VOCAB` (causal attention, as in CLIP)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=len(VOCAB), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                         projection_dim=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=MAX_LENGTH, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    return CLIPTextModel(cfg)


def camera_embedding(camera_dim: int) -> dict:
    """The UNet config of a camera input: a ``"projection"`` class embedding of ``camera_dim`` features."""
    return {"class_embed_type": "projection", "projection_class_embeddings_input_dim": camera_dim}


def build_unet(size: int, camera_dim: int = 0):
    """The ~1M-parameter ``UNet2DConditionModel``: channels (16, 32, 64), cross-attention at the lowest level only.

    ``camera_dim > 0`` adds a ``"projection"`` class embedding of that many camera features (added to the timestep
    embedding, so the view reaches every resnet block).
    """
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**(camera_embedding(camera_dim) if camera_dim else {}),
        sample_size=size, in_channels=3, out_channels=3,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=HIDDEN, attention_head_dim=4, time_embedding_dim=128,
        addition_embed_type="text", addition_embed_type_num_heads=4,
    )


def with_camera_input(unet, camera_dim: int):
    """``unet`` rebuilt with a camera class embedding: every old weight kept, the new embedding's output layer zero,
    so the model starts out drawing exactly what it drew before."""
    from diffusers import UNet2DConditionModel

    cfg = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    new = UNet2DConditionModel(**{**cfg, **camera_embedding(camera_dim)})
    missing, unexpected = new.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("class_embedding.") for k in missing), (missing, unexpected)
    torch.nn.init.zeros_(new.class_embedding.linear_2.weight)
    torch.nn.init.zeros_(new.class_embedding.linear_2.bias)
    return new


def build_scheduler():
    """DDPM, 1000 steps, squared-cosine schedule, epsilon prediction, samples clipped to [-1, 1].

    ``timestep_spacing="trailing"`` makes samplers start at t = 999 (pure noise) rather than t = 960, which starts
    with a little signal the initial noise does not have; it gave slightly fewer wrong-colour samples.
    """
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=True, clip_sample_range=1.0, timestep_spacing="trailing")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` over all parameters."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)


CAMERA_NOTE = """

## Camera input

The UNet also takes the camera: it has a `"projection"` class embedding, so call it as
`unet(x, t, encoder_hidden_states=emb, class_labels=cam).sample` with `cam [B, 10]` from
`dreamsmith.core.guidance.camera.camera_features(azimuth, elevation)` (cos and sin of k x azimuth for k = 1..4, then
of the elevation; degrees, azimuth 0 = camera on the -Y side, counter-clockwise seen from above). The unconditional
(empty-prompt) pass gets the same camera. `model_index.json` says so in `dreamsmith_camera_features`. Without it the
four view words cover 90 degrees each, as much as a cube's own symmetry, and score distillation cannot tell which way
a cube's corners point."""

README = """# Dreamsmith toy prior

A tiny text-conditioned **pixel-space** diffusion model for offline tests and CPU demos of score distillation.
It is not a general model: it draws only the 16 objects below, at {size}x{size}, on a white background.

- Trained by `scripts/train_toy_prior.py` (Dreamsmith) on the CPU, batch {batch}, Adam, EMA weights (decay {ema}):
  {history}. Training data (`dreamsmith/eval/toy_prior_data.py`): {n_images} ray-marched
  renders of each object from the engine's SDS camera model (distance 2.0, 40-degree field of view, elevation -10..60
  degrees plus a few overhead views, random azimuth), ambient 0.35 + Lambertian 0.65 shading
  with the light at the camera, white background.
- Components (safetensors only, load each with `from_pretrained`): `unet` (diffusers `UNet2DConditionModel`,
  {unet_params} parameters, `addition_embed_type="text"`: call it as `unet(x, t, encoder_hidden_states=emb).sample`
  with `x` in [-1, 1], shape `[B, 3, {size}, {size}]`), `text_encoder` (transformers `CLIPTextModel`, hidden 64,
  {te_params} parameters; use `last_hidden_state`), `tokenizer` (`PreTrainedTokenizerFast`, word level,
  lower-cased, pad to max_length {max_len}), `scheduler` (`DDPMScheduler`, 1000 steps, `squaredcos_cap_v2`,
  epsilon prediction).

## Prompt grammar

    a {{colour}} {{shape}}[, {{view}} view]

colour: red, green, blue, yellow; shape: cube, sphere, cone, torus; view: front, side, back, overhead (azimuth within
45 degrees of 0 = front with the camera on the -Y side, 45-135 / 225-315 = side, 135-225 = back, elevation above 60 =
overhead). Prompts in training (last stage): {mix}. Other words map to `[UNK]`.{camera}

## Sampling

Use a stochastic sampler: DDIM with `eta=1` (25 steps) or DDPM ancestral sampling, guidance scale 2-4. Deterministic
DDIM (`eta=0`) leaves visible noise and colour casts with this small model; guidance 7 and above breaks samples.
Score distillation queries single noise levels and is not affected by the sampler.
"""


def earlier_stages(folder: Path) -> list[str]:
    """The training stages of an existing toy prior (``training.json``; for a folder without one, its README)."""
    record = folder / "training.json"
    if record.is_file():
        return json.loads(record.read_text())["stages"]
    old = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
    m = re.search(r"(\d+) iterations in\s+([\d.]+)\s+minutes", old)
    return [f"{m.group(1)} iterations in {m.group(2)} minutes (from scratch)" if m else "an earlier run"]


def save_folder(out: Path, unet, text_encoder, tokenizer, scheduler, meta: dict) -> None:
    """Write the diffusers folder to a temp folder beside ``out``, then move it into place."""
    import diffusers

    out = out.resolve()
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    unet.save_pretrained(tmp / "unet", safe_serialization=True)
    text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "tokenizer")
    cfg_path = tmp / "tokenizer" / "tokenizer_config.json"  # the class name transformers 4 and 5 both know
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "tokenizer_class": "PreTrainedTokenizerFast"},
                                   indent=2) + "\n")
    stm = tmp / "tokenizer" / "special_tokens_map.json"
    if not stm.exists():
        stm.write_text(json.dumps({"pad_token": "[PAD]", "unk_token": "[UNK]"}, indent=2) + "\n")
    scheduler.save_pretrained(tmp / "scheduler")
    index = {
        "_class_name": "DreamsmithToyPrior",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    if meta.get("camera_features"):  # the engine feeds these as class_labels (core/guidance/camera.py)
        index["dreamsmith_camera_features"] = meta["camera_features"]
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (tmp / "README.md").write_text(README.format(**meta))
    (tmp / "training.json").write_text(json.dumps({"stages": meta["stages"]}, indent=2) + "\n")
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget (rendering excluded)")
    ap.add_argument("--iters", type=int, default=0, help="stop after this many iterations (0: by --minutes only)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets/demo_prior")
    ap.add_argument("--size", type=int, default=32, help="image size")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--views", type=int, default=800, help="views per object at elevation -10..60")
    ap.add_argument("--overhead", type=int, default=96, help="extra views per object at elevation 60..85")
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--p-empty", type=float, default=0.1, help="fraction of empty prompts (for CFG)")
    ap.add_argument("--p-view", type=float, default=0.3, help="fraction of prompts with a view suffix")
    ap.add_argument("--camera-features", default="azimuth_elevation_fourier", choices=["", *CAMERA_FEATURES],
                    help="give the UNet the camera angles as an input (dreamsmith.core.guidance.camera)")
    ap.add_argument("--high-t-share", type=float, default=0.3,
                    help="share of samples with timesteps from --high-t-min up (where the view decides the shape)")
    ap.add_argument("--high-t-min", type=int, default=500)
    ap.add_argument("--cube-weight", type=float, default=1.5,
                    help="draw cube images this many times as often (the only shape whose look depends on azimuth)")
    ap.add_argument("--init", type=Path, default=None, help="fine-tune this toy prior folder instead of a new model")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core CPU)")
    ap.add_argument("--snapshot-every", type=float, default=0.0, help="minutes between EMA snapshots (0: none)")
    ap.add_argument("--snapshot-dir", type=Path, default=None, help="where snapshots go (default: --out + '.snap')")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    print(f"rendering {16 * (args.views + args.overhead)} training images at {args.size}x{args.size} ...", flush=True)
    data = build_dataset(args.views, args.overhead, args.size, seed=args.seed)
    images = data["images"] * 2.0 - 1.0  # [N, 3, S, S] in [-1, 1]
    n = images.shape[0]
    texts_plain = [prompt(list(COLOURS)[c], SHAPES[s]) for c, s in zip(data["colour"], data["shape"], strict=True)]
    texts_view = [prompt(list(COLOURS)[c], SHAPES[s], VIEWS[v])
                  for c, s, v in zip(data["colour"], data["shape"], data["view"], strict=True)]
    print(f"rendered {n} images in {time.time() - t0:.1f} s", flush=True)

    tokenizer = build_tokenizer()
    scheduler = build_scheduler()
    if args.init is not None:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        unet = UNet2DConditionModel.from_pretrained(args.init / "unet", use_safetensors=True)
        text_encoder = CLIPTextModel.from_pretrained(args.init / "text_encoder", use_safetensors=True)
        if text_encoder.config.vocab_size != len(VOCAB):
            raise SystemExit(f"{args.init} has another vocabulary ({text_encoder.config.vocab_size} words, not "
                             f"{len(VOCAB)}); train from scratch instead.")
        print(f"fine-tuning {args.init}", flush=True)
        if args.camera_features and unet.config.class_embed_type is None:
            unet = with_camera_input(unet, CAMERA_FEATURES[args.camera_features])
    else:
        text_encoder = build_text_encoder()
        unet = build_unet(args.size, CAMERA_FEATURES[args.camera_features] if args.camera_features else 0)
    cam = None
    # Every shape is mirror-symmetric about the X = 0 plane: a mirrored view from azimuth a is the view from -a.
    if args.camera_features:  # [N, F] and, for mirrored images, [N, F] of the mirrored azimuth
        cam = (camera_features(data["azimuth"], data["elevation"], args.camera_features),
               camera_features(mirrored_azimuth(data["azimuth"]), data["elevation"], args.camera_features))
    ids_plain = tokenizer(texts_plain, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt").input_ids
    ids_view = tokenizer(texts_view, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt").input_ids
    ids_empty = tokenizer([""], padding="max_length", max_length=MAX_LENGTH, return_tensors="pt").input_ids[0]
    assert (ids_view != 1).all(), "a training word is missing from the vocabulary"
    n_unet = sum(p.numel() for p in unet.parameters())
    n_te = sum(p.numel() for p in text_encoder.parameters())
    print(f"unet {n_unet / 1e6:.2f}M parameters, text encoder {n_te / 1e3:.0f}k", flush=True)

    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    for p in [*ema_unet.parameters(), *ema_te.parameters()]:
        p.requires_grad_(False)
    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)
    alphas_cumprod = scheduler.alphas_cumprod  # [1000]
    draw_weights = torch.where(data["shape"] == SHAPES.index("cube"), args.cube_weight, 1.0)
    gen = torch.Generator().manual_seed(args.seed + 1)
    budget = args.minutes * 60.0
    warmup, lr_end = 200, args.lr * 0.2
    unet.train()
    text_encoder.train()
    t_start = time.time()
    next_snap = args.snapshot_every * 60.0 if args.snapshot_every > 0 else math.inf
    snap_dir = args.snapshot_dir or args.out.with_name(args.out.name + ".snap")
    it, loss_avg = 0, None
    p_plain = max(0.0, 1.0 - args.p_view - args.p_empty)
    mix = (f"{args.p_view:.0%} with a view word, {p_plain:.0%} plain, "
           f"{args.p_empty:.0%} empty (classifier-free guidance: use `\"\"` as the unconditional prompt)")
    stages = earlier_stages(args.init) if args.init is not None else []
    how = ", ".join(x for x in (
        "fine-tuning" if args.init is not None else "from scratch",
        f"lr {args.lr:g}",
        "with the camera input" if args.camera_features else "",
        f"cube images drawn {args.cube_weight:g}x as often" if args.cube_weight != 1 else "",
        f"{args.high_t_share:.0%} of timesteps from {args.high_t_min} up" if args.high_t_share else "") if x)

    def progress() -> float:
        frac_t = (time.time() - t_start) / budget if args.minutes > 0 else 0.0
        frac_i = it / args.iters if args.iters > 0 else 0.0
        return max(frac_t, frac_i)

    def meta() -> dict:
        stage = f"{it} iterations in {(time.time() - t_start) / 60.0:.1f} minutes ({how})"
        return dict(size=args.size, history="; then ".join([*stages, stage]), stages=[*stages, stage], batch=args.batch,
                    ema=args.ema, n_images=args.views + args.overhead, unet_params=f"{n_unet / 1e6:.2f}M",
                    te_params=f"{n_te / 1e3:.0f}k", max_len=MAX_LENGTH,
                    mix=mix, camera_features=args.camera_features, camera=CAMERA_NOTE if args.camera_features else "")

    while progress() < 1.0:
        frac = progress()
        lr = args.lr * min(1.0, (it + 1) / warmup) if it < warmup else args.lr + (lr_end - args.lr) * frac
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.multinomial(draw_weights, args.batch, replacement=True, generator=gen)
        x0 = images[idx]
        flip = torch.rand(args.batch, generator=gen) < 0.5  # mirror images: all shapes are mirror-symmetric
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        r = torch.rand(args.batch, generator=gen)
        ids = torch.where((r < args.p_view)[:, None], ids_view[idx], ids_plain[idx])
        ids = torch.where((r > 1.0 - args.p_empty)[:, None], ids_empty[None], ids)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        if args.high_t_share > 0:
            high = torch.randint(args.high_t_min, 1000, (args.batch,), generator=gen)
            t = torch.where(torch.rand(args.batch, generator=gen) < args.high_t_share, high, t)
        noise = torch.randn(x0.shape, generator=gen)
        ab = alphas_cumprod[t][:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        emb = text_encoder(ids).last_hidden_state  # [B, L, 64]
        labels = torch.where(flip[:, None], cam[1][idx], cam[0][idx]) if cam is not None else None
        pred = unet(xt, t, encoder_hidden_states=emb, class_labels=labels).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        it += 1
        decay = min(args.ema, (1 + it) / (10 + it))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_te, text_encoder, decay)
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        el = time.time() - t_start
        if it % 50 == 0:
            print(f"it {it:6d}  {el / 60:6.1f} min  {it / el:5.2f} it/s  lr {lr:.2e}  loss {loss_avg:.4f}", flush=True)
        if el >= next_snap:
            save_folder(snap_dir, ema_unet, ema_te, tokenizer, scheduler, meta())
            print(f"snapshot at it {it} -> {snap_dir}", flush=True)
            next_snap += args.snapshot_every * 60.0
    save_folder(args.out, ema_unet, ema_te, tokenizer, scheduler, meta())
    print(f"done: {it} iterations in {(time.time() - t_start) / 60:.1f} min, loss {loss_avg:.4f} -> {args.out}",
          flush=True)


if __name__ == "__main__":
    main()
