"""Acceptance check: a small CNN student learns depth from the synthetic indoor world within minutes on CPU.

Trains ``build_student`` (MobileNetV2 encoder, small U-Net decoder, random init) with a plain loop
(AdamW, SILog on valid pixels) on pre-rendered synthetic scenes, then compares held-out abs_rel and
rmse with two constant baselines: the training set's mean depth and its median depth. Self-contained
on purpose (no dependency on the training engine).

Usage:
    python benchmarks/synthetic_learnability.py --minutes 5 --size 96x128 --n-train 1200 --n-val 120
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from disdepth.config import ModelConfig
from disdepth.data.synthetic import SyntheticDepthDataset
from disdepth.models.student import build_student


def silog(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, lam: float = 0.85) -> torch.Tensor:
    """SILog loss ``sqrt(mean(g^2) - lam * mean(g)^2) * 10``, g = log pred - log gt over valid pixels."""
    g = torch.log(pred[valid]) - torch.log(gt[valid])
    return torch.sqrt((g**2).mean() - lam * g.mean() ** 2 + 1e-8) * 10.0


def metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, max_depth: float) -> dict[str, float]:
    """abs_rel and rmse per image (valid = 1e-3 < gt < max, prediction clamped), averaged over images."""
    out = {"abs_rel": 0.0, "rmse": 0.0, "delta1": 0.0}
    for p, g, v in zip(pred, gt, valid, strict=True):
        v = v & (g > 1e-3) & (g < max_depth)
        p, g = p[v].clamp(1e-3, max_depth), g[v]
        out["abs_rel"] += ((p - g).abs() / g).mean().item()
        out["rmse"] += ((p - g) ** 2).mean().sqrt().item()
        out["delta1"] += (torch.maximum(p / g, g / p) < 1.25).float().mean().item()
    return {k: v / len(pred) for k, v in out.items()}


def render_set(preset: str, n: int, h: int, w: int, seed: int, offset: int) -> dict[str, torch.Tensor]:
    ds = SyntheticDepthDataset(preset, n, h, w, seed=seed, index_offset=offset)
    items = [ds[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "depth", "valid")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="indoor", choices=["indoor", "outdoor"])
    ap.add_argument("--size", default="96x128", help="HxW")
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--n-val", type=int, default=120)
    ap.add_argument("--minutes", type=float, default=5.0, help="training time budget (wall clock)")
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    h, w = (int(x) for x in args.size.lower().split("x"))
    max_depth = 10.0 if args.preset == "indoor" else 80.0

    t0 = time.perf_counter()
    train = render_set(args.preset, args.n_train, h, w, args.seed, 0)
    val = render_set(args.preset, args.n_val, h, w, args.seed, args.n_train)  # held-out scenes
    render_s = time.perf_counter() - t0
    print(f"rendered {args.n_train}+{args.n_val} scenes at {h}x{w} in {render_s:.1f} s")

    cfg = ModelConfig(encoder="mobilenetv2_100", pretrained="none", decoder="unet",
                      decoder_channels=[64, 32, 24, 16, 16], max_depth=max_depth)
    model = build_student(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = args.minutes * 60
    gen = torch.Generator().manual_seed(args.seed)
    step, t_train, losses = 0, time.perf_counter(), []
    model.train()
    while step < args.max_steps:
        elapsed = time.perf_counter() - t_train
        if elapsed > budget:
            break
        # Cosine decay on the fraction of the time budget used (the step count is not known up front).
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * min(elapsed / budget, 1.0)))
        idx = torch.randint(0, args.n_train, (args.batch,), generator=gen)
        img, gt, valid = train["image"][idx], train["depth"][idx], train["valid"][idx]
        if torch.rand((), generator=gen) < 0.5:  # horizontal flip keeps depth consistent
            img, gt, valid = img.flip(-1), gt.flip(-1), valid.flip(-1)
        loss = silog(model(img)["depth"], gt, valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            print(f"step {step:5d}  {elapsed / 60:5.2f} min  silog {sum(losses[-100:]) / 100:.3f}", flush=True)
    train_min = (time.perf_counter() - t_train) / 60

    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(val["image"][i:i + 32])["depth"] for i in range(0, args.n_val, 32)])
    gvals = train["depth"][train["valid"]]
    def score(p: torch.Tensor) -> dict[str, float]:
        return metrics(p, val["depth"], val["valid"], max_depth)

    results = {
        "student": score(pred),
        "mean_depth_baseline": score(torch.full_like(pred, gvals.mean().item())),
        "median_depth_baseline": score(torch.full_like(pred, gvals.median().item())),
        "budget": {"preset": args.preset, "size": f"{h}x{w}", "n_train": args.n_train, "n_val": args.n_val,
                   "steps": step, "batch": args.batch, "train_minutes": round(train_min, 2),
                   "render_seconds": round(render_s, 1), "threads": args.threads},
    }
    print(f"\n{'':24s} {'abs_rel':>8s} {'rmse (m)':>9s} {'delta1':>7s}")
    for name in ("student", "mean_depth_baseline", "median_depth_baseline"):
        m = results[name]
        print(f"{name:24s} {m['abs_rel']:8.3f} {m['rmse']:9.3f} {m['delta1']:7.3f}")
    print("budget:", json.dumps(results["budget"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
