"""Judge the toy prior: sample all 16 prompts and measure colour, shape and background; write a contact sheet.

For each prompt ``"a {colour} {shape}"`` the script draws ``--samples`` images (DDIM, classifier-free guidance with
the empty prompt) and prints per prompt:

- colour: the palette colour nearest (in chromaticity) to the mean of the foreground pixels, per sample;
- shape: the shape of the nearest training-style silhouette (IoU against fresh renders of all four shapes from the
  training camera distribution), per sample, with three silhouette statistics: fill ratio of the bounding box
  (cube high, sphere ~0.78, cone low), top-to-bottom width ratio (cone: pointed top), and hole pixels (background
  enclosed by the silhouette: a torus from above);
- background: the mean distance from white of the 2-pixel image border, ``mean |1 - x|`` over pixels and channels.

It then reports the denoising classifier: which of the 16 prompts best explains (lowest epsilon error) a noised
training-style render, at a few noise levels, as colour and shape accuracy. That is what score distillation uses.

Usage::

    python scripts/check_toy_prior.py [--model assets/demo_prior] [--samples 6] [--steps 25] [--guidance 4]
        [--eta 1] [--sheet /tmp/toy_prior_sheet.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from dreamsmith.core.guidance.camera import unet_camera_inputs
from dreamsmith.eval.toy_prior_data import COLOURS, SHAPES, prompt, render_shape

FG_THRESHOLD = 0.35  # a pixel is foreground when some channel is this far below white
MIN_IOU = 0.7  # a silhouette counts as a shape only when it overlaps some clean render this well


def load(folder: Path):
    """``(unet, text_encoder, tokenizer, scheduler)`` from a diffusers folder, safetensors only."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, PreTrainedTokenizerFast

    unet = UNet2DConditionModel.from_pretrained(folder / "unet", use_safetensors=True).eval()
    te = CLIPTextModel.from_pretrained(folder / "text_encoder", use_safetensors=True).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(folder / "tokenizer")
    return unet, te, tok, DDPMScheduler.from_pretrained(folder / "scheduler")


@torch.no_grad()
def sample(unet, te, tok, sched, prompts: list[str], steps: int = 25, guidance: float = 4.0, seed: int = 0,
           negative: str = "", eta: float = 1.0) -> torch.Tensor:
    """DDIM samples ``[len(prompts), 3, S, S]`` in [0, 1] with classifier-free guidance against ``negative``.

    ``eta = 1`` (stochastic, DDPM-like) is the default: this small model's deterministic (``eta = 0``) samples keep
    visible noise and colour casts that the stochastic sampler removes.
    """
    from diffusers import DDIMScheduler

    n = len(prompts)
    ids = tok([*prompts, negative], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    emb = te(ids).last_hidden_state  # [n + 1, L, D]
    cond, unc = emb[:n], emb[n:].expand(n, -1, -1)
    ddim = DDIMScheduler.from_config(sched.config)
    ddim.set_timesteps(steps)
    s = unet.config.sample_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, s, s, generator=gen)
    for t in ddim.timesteps:
        eps = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([cond, unc]),
                   **unet_camera_inputs(unet, torch.full((2 * n,), 30.0), torch.full((2 * n,), 20.0))).sample
        e_c, e_u = eps.chunk(2)
        x = ddim.step(e_u + guidance * (e_c - e_u), t, x, eta=eta, generator=gen).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


def foreground(img: np.ndarray) -> np.ndarray:
    """``[S, S]`` bool mask of the largest connected non-white region of ``img [3, S, S]`` in [0, 1]."""
    fg = (1.0 - img).max(axis=0) > FG_THRESHOLD
    lab, k = ndimage.label(fg)
    if k == 0:
        return fg
    sizes = ndimage.sum(fg, lab, index=range(1, k + 1))
    return lab == (1 + int(np.argmax(sizes)))


def colour_of(img: np.ndarray, mask: np.ndarray) -> str:
    """Palette colour nearest in chromaticity to the mean foreground colour of ``img [3, S, S]``."""
    if mask.sum() == 0:
        return "none"
    m = img[:, mask].mean(axis=1)
    chroma = m / max(m.sum(), 1e-6)
    names = list(COLOURS)
    pal = np.array([COLOURS[c] for c in names])
    pal = pal / pal.sum(axis=1, keepdims=True)
    return names[int(np.argmin(((pal - chroma) ** 2).sum(axis=1)))]


def silhouette_stats(mask: np.ndarray) -> dict:
    """Fill ratio of the bounding box, top/bottom width ratio, hole pixels and height/width of a mask."""
    if mask.sum() < 4:
        return {"fill": 0.0, "top_bottom": 0.0, "hole": 0, "aspect": 0.0}
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    box = mask[r0:r1, c0:c1]
    h = box.shape[0]
    q = max(1, h // 4)
    widths = box.sum(axis=1)
    hole = int((ndimage.binary_fill_holes(mask) & ~mask).sum())
    return {"fill": float(box.mean()), "top_bottom": float(widths[:q].mean() / max(widths[-q:].mean(), 1)),
            "hole": hole, "aspect": float(h / box.shape[1])}


def reference_masks(n_per_shape: int = 200, size: int = 32, seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes ``[4 n, S, S]`` of fresh renders of every shape (training camera distribution) and their labels."""
    rng = np.random.default_rng(seed)
    masks, labels = [], []
    for si, shape in enumerate(SHAPES):
        az = torch.tensor(rng.uniform(0, 360, n_per_shape), dtype=torch.float32)
        el = torch.tensor(rng.uniform(-10, 70, n_per_shape), dtype=torch.float32)
        imgs = render_shape(shape, (0.5, 0.5, 0.5), az, el, size).numpy()
        masks += [(1.0 - im).max(axis=0) > FG_THRESHOLD for im in imgs]
        labels += [si] * n_per_shape
    return np.stack(masks), np.array(labels)


def shape_of(mask: np.ndarray, refs: np.ndarray, ref_labels: np.ndarray, min_iou: float = MIN_IOU) -> str:
    """Shape of the reference silhouette with the highest IoU with ``mask``; ``"none"`` below ``min_iou``.

    The threshold keeps noise and formless blobs (which overlap the largest silhouette, a cube, best) from counting
    as shapes.
    """
    inter = (refs & mask[None]).sum(axis=(1, 2))
    iou = inter / np.maximum((refs | mask[None]).sum(axis=(1, 2)), 1)
    best = int(np.argmax(iou))
    return SHAPES[int(ref_labels[best])] if iou[best] >= min_iou else "none"


@torch.no_grad()
def denoising_confusion(unet, te, tok, sched, timesteps=(300, 600, 850), views: int = 4, seed: int = 5) -> dict:
    """Which prompt explains a noised render best (lowest epsilon error): colour and shape confusion matrices.

    This is the property score distillation relies on (the conditional score at one noise level), free of any
    sampler. Each of the 16 objects is rendered from ``views`` random training-style cameras, noised at each of
    ``timesteps`` with one noise draw, and scored under all 16 prompts.

    Returns:
        ``{t: (colour_conf [4, 4], shape_conf [4, 4])}`` counts, rows = true, columns = chosen.
    """
    names = list(COLOURS)
    pairs = [(c, s) for c in names for s in SHAPES]
    ids = tok([prompt(c, s) for c, s in pairs], padding="max_length", max_length=tok.model_max_length,
              return_tensors="pt").input_ids
    emb = te(ids).last_hidden_state  # [16, L, D]
    g = torch.Generator().manual_seed(seed)
    x0, cams = [], []
    for c, s in pairs:
        az, el = torch.rand(views, generator=g) * 360, torch.rand(views, generator=g) * 70 - 10
        x0.append(render_shape(s, COLOURS[c], az, el, unet.config.sample_size) * 2 - 1)
        cams.append((az, el))
    x0 = torch.cat(x0)  # [16 V, 3, S, S]
    cam = unet_camera_inputs(unet, torch.cat([a for a, _ in cams]), torch.cat([e for _, e in cams]))
    out = {}
    for t in timesteps:
        ab = sched.alphas_cumprod[t]
        noise = torch.randn(x0.shape, generator=g)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        tt = torch.full((xt.shape[0],), t)
        err = torch.stack([((unet(xt, tt, encoder_hidden_states=emb[k].expand(xt.shape[0], -1, -1), **cam).sample
                             - noise)
                            ** 2).mean(dim=(1, 2, 3)) for k in range(16)], dim=1)  # [16 V, 16]
        chosen = err.argmin(dim=1)
        cc, sc = np.zeros((4, 4), int), np.zeros((4, 4), int)
        for i, k in enumerate(chosen.tolist()):
            true = i // views
            cc[true // 4, k // 4] += 1
            sc[true % 4, k % 4] += 1
        out[t] = (cc, sc)
    return out


def contact_sheet(images: torch.Tensor, labels: list[str], path: Path, scale: int = 3) -> None:
    """Save ``images [P, N, 3, S, S]`` as a grid: one row per prompt with its label on the left."""
    p, n, _, s, _ = images.shape
    cell, label_w = s * scale + 2, 110
    sheet = Image.new("RGB", (label_w + n * cell, p * cell), (128, 128, 128))
    draw = ImageDraw.Draw(sheet)
    for i in range(p):
        draw.text((4, i * cell + cell // 2 - 6), labels[i], fill=(0, 0, 0))
        for j in range(n):
            arr = (images[i, j].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            tile = Image.fromarray(arr).resize((s * scale, s * scale), Image.NEAREST)
            sheet.paste(tile, (label_w + j * cell + 1, i * cell + 1))
    sheet.save(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "assets/demo_prior")
    ap.add_argument("--samples", type=int, default=6, help="samples per prompt")
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps")
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--eta", type=float, default=1.0, help="DDIM eta (1: stochastic, 0: deterministic)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suffix", default="", help="appended to every prompt, e.g. ', side view'")
    ap.add_argument("--sheet", type=Path, default=Path("/tmp/toy_prior_sheet.png"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    unet, te, tok, sched = load(args.model)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    prompts = [prompt(c, s) + args.suffix for c, s in pairs]
    batch = [p for p in prompts for _ in range(args.samples)]
    imgs = sample(unet, te, tok, sched, batch, args.steps, args.guidance, args.seed, eta=args.eta)
    imgs = imgs.reshape(len(prompts), args.samples, *imgs.shape[1:])
    t_sample = time.time() - t0
    refs, ref_labels = reference_masks(size=imgs.shape[-1])

    colour_ok = {c: 0 for c in COLOURS}
    shape_ok = {s: 0 for s in SHAPES}
    borders = []
    print(f"{'prompt':<22} colour(right/N) shape(right/N)  fill  top/bot  hole  aspect  border  shapes")
    for (c, s), p, row in zip(pairs, prompts, imgs, strict=True):
        cols, shps, stats = [], [], []
        for im in row.numpy():
            m = foreground(im)
            cols.append(colour_of(im, m))
            shps.append(shape_of(m, refs, ref_labels))
            stats.append(silhouette_stats(m))
            ring = np.ones(im.shape[1:], bool)
            ring[2:-2, 2:-2] = False
            borders.append(float(np.abs(1.0 - im[:, ring]).mean()))
        nc, ns = sum(x == c for x in cols), sum(x == s for x in shps)
        colour_ok[c] += nc
        shape_ok[s] += ns
        mean = {k: float(np.mean([st[k] for st in stats])) for k in stats[0]}
        print(f"{p:<22} {nc}/{len(cols)}            {ns}/{len(shps)}           {mean['fill']:.2f}  "
              f"{mean['top_bottom']:.2f}    {mean['hole']:4.1f}  {mean['aspect']:.2f}    "
              f"{np.mean(borders[-len(cols):]):.3f}   {','.join(x[:3] for x in shps)}")
    n_per = 4 * args.samples
    print("colour right: " + ", ".join(f"{c} {v}/{n_per}" for c, v in colour_ok.items())
          + f"  (total {sum(colour_ok.values())}/{4 * n_per})")
    print("shape right (nearest silhouette): " + ", ".join(f"{s} {v}/{n_per}" for s, v in shape_ok.items())
          + f"  (total {sum(shape_ok.values())}/{4 * n_per})")
    print(f"background: border mean |1 - x| = {np.mean(borders):.3f} (max {np.max(borders):.3f})")
    print(f"sampling {len(batch)} images x {args.steps} steps: {t_sample:.1f} s")
    n_obj = 4 * 4
    for t, (cc, sc) in denoising_confusion(unet, te, tok, sched).items():
        per = cc.sum() // 4
        print(f"denoising classifier t={t}: colour right {np.trace(cc)}/{cc.sum()} "
              f"({', '.join(f'{c} {cc[i, i]}/{per}' for i, c in enumerate(COLOURS))}); shape right "
              f"{np.trace(sc)}/{sc.sum()} ({', '.join(f'{s} {sc[i, i]}/{per}' for i, s in enumerate(SHAPES))}) "
              f"over {n_obj} objects")
    contact_sheet(imgs, prompts, args.sheet)
    print(f"contact sheet -> {args.sheet}")


if __name__ == "__main__":
    main()
