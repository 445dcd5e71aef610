"""The ``disdepth`` command line: one console script, one sub-command per stage.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so ``disdepth --help`` stays fast and a missing
optional extra (onnx, transformers) only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from disdepth.config import ConfigError

# command path -> (module, one-line help). Nested groups use a space: "data check".
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("disdepth.commands.bench", "parameters, GFLOPs and CPU latency of a model"),
    "train": ("disdepth.commands.train", "train a baseline student or a teacher (supervised)"),
    "acclimate": ("disdepth.commands.acclimate", "acclimate a teacher to the student decoder (ghost decoder, FAMs)"),
    "distill": ("disdepth.commands.distill", "distil a student: depth loss + attentive KD to acclimated features"),
    "teach": ("disdepth.commands.teach", "run the teacher once over a dataset: a target store on disk for distill"),
    "pipeline": ("disdepth.commands.pipeline", "teacher -> baseline -> acclimate -> distill -> report, resumable"),
    "demo": ("disdepth.commands.demo", "the whole method on synthetic scenes: teacher, baseline, distilled, report"),
    "eval": ("disdepth.commands.eval", "score saved predictions or a checkpoint under a named protocol"),
    "data check": ("disdepth.commands.data_check", "validate a dataset config: counts, bad files, depth statistics"),
    "data synth": ("disdepth.commands.data_synth", "render the synthetic world to disk (BTS layout + CSV)"),
    "data bench": ("disdepth.commands.data_bench", "data-loading throughput with augmentation"),
    "predict": ("disdepth.commands.predict", "depth maps (PNG/NPY/colour/PLY) for images, folders and videos"),
    "export": ("disdepth.commands.export", "export a student to ONNX, check it with ONNX Runtime and time it"),
    "app": ("disdepth.commands.app", "browser app: upload an image, compare student/baseline/teacher depth, download"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="disdepth", description="Distil transformer depth models into fast CNNs.")
    parser.add_argument("--version", action="version", version=f"disdepth {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (module, help_text) in COMMANDS.items():
        *group, name = path.split()
        target = subparsers
        if group:
            if group[0] not in groups:
                group_parser = subparsers.add_parser(group[0], help=f"{group[0]} tools")
                groups[group[0]] = group_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            target = groups[group[0]]
        sub = target.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module, _sub=sub)
    return parser


def package_version() -> str:
    """``disdepth.__version__``: the installed package's metadata, the one version string everywhere."""
    import disdepth

    return disdepth.__version__


def main(argv: list[str] | None = None) -> int:
    """Run one command; a closed output pipe (``disdepth ... | head``) ends quietly with status 0."""
    try:
        code = _main(argv)
        if code == 130:
            _quiet_exit_after_interrupt()
        return code
    except KeyboardInterrupt:  # Ctrl-C while the command's modules (torch ...) are still being imported
        print("disdepth: interrupted", file=sys.stderr)
        _quiet_exit_after_interrupt()
        return 130
    except BrokenPipeError:
        # Python's recipe: point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Two passes: find the command first, then let its module add its own arguments.
    # (help flags are held back so `disdepth train --help` lists the options the module adds)
    wants_help = any(a in ("-h", "--help") for a in argv)
    try:
        known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    except SystemExit:
        if not wants_help:
            raise
        parser.parse_args(argv)  # e.g. `disdepth data --help`: argparse prints the group's help and exits
        raise
    if not getattr(known, "_module", None):
        parser.print_help()
        return 0 if wants_help or not argv else 2
    module = importlib.import_module(known._module)
    module.add_arguments(known._sub)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "threads", None):  # every compute command takes --threads (commands.common)
            import torch

            torch.set_num_threads(args.threads)
        if getattr(args, "trust_checkpoint", False):
            from disdepth.checkpoint import trust_pickled_checkpoints  # here: torch stays out of `--help`

            trust_pickled_checkpoints()
        return int(module.run(args) or 0)
    except ConfigError as exc:
        print(f"disdepth: config error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        # Our own checks raise these with a message that names the file or key; no deep traceback.
        print(f"disdepth: error: {exc}", file=sys.stderr)
        return 2
    except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # The OS names the path (e.g. --out given a folder, a run directory under a file).
        print(f"disdepth: error: {exc.filename or ''}: {exc.strerror or exc}".replace(": : ", ": "), file=sys.stderr)
        return 2
    except OSError as exc:
        # Full disk, file-size limit, read-only folder, port in use ...: one line naming the path when the OS gives
        # one (our own I/O errors, e.g. a checkpoint that could not be written, carry the path in their message).
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"disdepth: error: {where}{exc.strerror or exc}" if where else f"disdepth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C outside the training loop (which checkpoints and exits 130 itself), or a second Ctrl-C.
        print("disdepth: interrupted", file=sys.stderr)
        _quiet_exit_after_interrupt()
        return 130
    except Exception as exc:
        if getattr(exc, "quiet", False):  # another process of a distributed run printed the error (engine.dist)
            return 2
        raise


def _quiet_exit_after_interrupt() -> None:
    """After a run stopped on Ctrl-C, ignore further Ctrl-Cs: an impatient second one would otherwise land in the
    interpreter's shutdown (torch's atexit hooks) and print a traceback after the clean one-line stop."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
