"""The latency-accuracy figure of the README: students, peers and the teacher on the real 7-Scenes test frames.

python benchmarks/plot_tradeoff.py --out docs/img/tradeoff_7scenes.png

Reads only committed results, so the figure is reproducible from the repository:
* accuracy: abs_rel on 7-Scenes redkitchen test frames 525-699 (the ablation's fixed split), mean ± std over seeds,
  from ``benchmarks/results/distill_ablation/<ablation>/`` (baseline student, full DisDepth student, their teacher)
  and, where present, ``benchmarks/results/student_accuracy/<ablation>/`` (default, lite, FastDepth, Monodepth2
  trained alike on the same frames);
* latency: eager PyTorch, 480x640, batch 1, 1 thread, interleaved medians of one run,
  ``benchmarks/results/teacher_latency.json`` (students and teachers timed together; a model that run did not time
  is left out rather than mixed with a run made under another load).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ABLATION_STUDENT = "ablation student (mobilenetv2_100 + LG-Conv, light U-Net)"
ABLATION_TEACHER = "teacher: hybrid Lite0 192x4 (the ablation's)"
PEERS = {  # student_accuracy arch -> its row name in teacher_latency.json
    "unet256": "U-Net 256/128/64/32 student (mobilenetv2_100; the earlier default)",
    "default": "default student (mobilenetv2_100, U-Net 96/48/24/12, nearest upsampling)",
    "lite": "lite student (mobilenetv2_100, lite decoder)",
    "narrow": "narrow student (mobilenetv2_100, U-Net 128/64/32/16)",
    "fastdepth": "FastDepth (MobileNet + NNConv5)",
    "monodepth2": "Monodepth2-R18",
}

# Short names on the figure (the full ones are in the tables), and where each label sits relative to its point
# (points points apart would otherwise print their labels on top of each other).
SHORT = {
    "U-Net 256/128/64/32 student (mobilenetv2_100; the earlier default)": "U-Net 256/128/64/32 (old default)",
    "default student (mobilenetv2_100, U-Net 96/48/24/12, nearest upsampling)": (
        "MobileNetV2 U-Net 96/48/24/12 (default until 0.5)"
    ),
    "lite student (mobilenetv2_100, lite decoder)": "lite decoder",
    "narrow student (mobilenetv2_100, U-Net 128/64/32/16)": "narrow U-Net 128/64/32/16",
    "FastDepth (MobileNet + NNConv5)": "FastDepth (sigmoid output head)",
}
OFFSETS = {
    "narrow U-Net 128/64/32/16": (-30, -20),
    "MobileNetV2 U-Net 96/48/24/12 (default until 0.5)": (-110, 12),
    "LG-Conv student, no KD": (8, 8),
    "DisDepth student": (8, -12),
    "Monodepth2-R18 (1 of 3 seeds diverged, left out)": (-262, 6),
}


# A run whose mean abs_rel exceeds this did not train (e.g. a sigmoid saturated at the depth cap); its point would
# say nothing about the architecture, so it is left out and the label says how many were.
DIVERGED_ABS_REL = 1.0


def _abs_rel(records: list[dict]) -> tuple[float, float]:
    values = [r["metrics"]["abs_rel"] for r in records if r["metrics"]["abs_rel"] <= DIVERGED_ABS_REL]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _diverged(records: list[dict]) -> str:
    n = sum(r["metrics"]["abs_rel"] > DIVERGED_ABS_REL for r in records)
    return f" ({n} of {len(records)} seeds diverged, left out)" if n else ""


def points(ablation: str) -> list[tuple[str, float, float, float, str]]:
    """(label, latency ms, abs_rel mean, abs_rel std, kind) of every model with both figures committed."""
    teacher_ms = {
        r["model"]: r["median_ms"] for r in json.loads((RESULTS / "teacher_latency.json").read_text())["rows"]
    }
    out = []
    folder = RESULTS / "distill_ablation" / ablation
    rows = {}
    for path in folder.glob("*_seed*.json"):
        record = json.loads(path.read_text())
        rows.setdefault(record["row"], []).append(record)
    if "lgconv" in rows:
        out.append(("LG-Conv student, no KD", teacher_ms[ABLATION_STUDENT], *_abs_rel(rows["lgconv"]), "student"))
    if "disdepth" in rows:
        out.append(("DisDepth student", teacher_ms[ABLATION_STUDENT], *_abs_rel(rows["disdepth"]), "distilled"))
    if "acclimate" in rows:
        teacher = [{"metrics": r["metrics"]["teacher_before"]} for r in rows["acclimate"]][:1]  # one teacher
        out.append(("its teacher (hybrid Lite0)", teacher_ms[ABLATION_TEACHER], *_abs_rel(teacher), "teacher"))
    peers = RESULTS / "student_accuracy" / ablation
    for arch, name in PEERS.items():
        runs = [json.loads(p.read_text()) for p in peers.glob(f"{arch}_seed*.json")] if peers.is_dir() else []
        if runs and name in teacher_ms:
            kind = "peer" if arch in ("fastdepth", "monodepth2") else "student"
            out.append((SHORT.get(name, name) + _diverged(runs), teacher_ms[name], *_abs_rel(runs), kind))
    return out


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the PNG
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ablation", default="sevenscenes_120x160", help="results folder name of the ablation")
    p.add_argument("--out", type=Path, default=Path("docs/img/tradeoff_7scenes.png"))
    args = p.parse_args()
    colours = {"student": "tab:blue", "distilled": "tab:green", "teacher": "tab:red", "peer": "tab:gray"}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for label, ms, mean, std, kind in points(args.ablation):
        ax.errorbar(ms, mean, yerr=std, fmt="o", color=colours[kind], capsize=3)
        offset = OFFSETS.get(label, (6, 4))
        ax.annotate(label, (ms, mean), textcoords="offset points", xytext=offset, fontsize=8)
        print(f"{label:52s} {ms:8.1f} ms  abs_rel {mean:.4f} ± {std:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (eager PyTorch, 480x640, batch 1, 1 CPU thread; log scale)")
    ax.set_ylabel("abs_rel on 7-Scenes test frames (lower is better)")
    ax.set_title("Latency vs accuracy (mean ± std over seeds)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
