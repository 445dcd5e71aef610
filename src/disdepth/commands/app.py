"""``disdepth app RUN_DIR_OR_CHECKPOINT [--teacher CKPT] [--port N]``: the browser app on this machine.

Finds the models (:func:`disdepth.deploy.app.find_models`: a pipeline run directory gives the distilled student, the
baseline and the teacher), loads them on the CPU and serves the page of :func:`disdepth.deploy.app.build_app` on
127.0.0.1 until Ctrl-C. Needs the ``app`` extra (Gradio).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from disdepth.commands.common import add_threads_argument, add_trust_argument, check_port_free
from disdepth.deploy.limits import MAX_RUN_MEGAPIXELS
from disdepth.deploy.predict_folder import check_device
from disdepth.pipeline.report import change_lines

MISSING_GRADIO = "disdepth app needs Gradio, which is not installed: pip install 'disdepth[app]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trust_argument(parser)
    parser.add_argument(
        "path",
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="a pipeline run directory (distill/, baseline/, teacher/), a run directory, a .pt checkpoint or a "
        "model folder",
    )
    parser.add_argument("--teacher", help="also show this teacher: a checkpoint, model folder or Hugging Face folder")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 = all)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    add_threads_argument(parser)
    parser.add_argument("--fov", type=float, default=60.0, help="default horizontal field of view for the .ply")
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=MAX_RUN_MEGAPIXELS,
        help=f"refuse images larger than this (default {MAX_RUN_MEGAPIXELS:.1f} MP; 0 = no limit)",
    )
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="refuse bigger files (default 50 MB)")


def run_report_note(path: Path) -> str:
    """For a pipeline run folder with a report: what distillation changed on its test images, with the interval and
    the words the report uses ("" when there is no report or no distilled/baseline pair)."""
    report = path / "report" / "report.json"
    if not report.is_file():
        return ""
    try:  # the report's own figures: nothing is recomputed when the page starts
        return " ".join(change_lines(json.loads(report.read_text()).get("distilled_vs_baseline") or {}))
    except (ValueError, KeyError, TypeError, AttributeError):  # an older or hand-edited report: no line
        return ""


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        print(MISSING_GRADIO, file=sys.stderr)
        return 2
    check_device(args.device)
    check_port_free(args.host, args.port)
    from disdepth.deploy.app import build_app, find_models, launch_app, load_models

    found = find_models(args.path, args.teacher)
    models = load_models(found, args.device)
    for m in models:
        print(f"{m.label}: {m.source} ({m.description})")
    note = run_report_note(Path(args.path))
    if note:
        print(note)
    demo = build_app(
        models, fov=args.fov or None, max_megapixels=args.max_megapixels, max_mb=args.max_upload_mb, run_note=note
    )
    url = launch_app(demo, args.host, args.port, block=False, max_mb=args.max_upload_mb)
    print(f"disdepth app: open {url} (Ctrl-C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0
