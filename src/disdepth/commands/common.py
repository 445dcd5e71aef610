"""Argument helpers shared by the commands: config flags and one parser for ``HxW`` sizes."""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

from disdepth.config import ConfigError, changed_keys, dump_yaml, flat_dict, load_config, stage_config, to_dict
from disdepth.engine import dist
from disdepth.engine.logging import setup_console_logging
from disdepth.engine.loop import TrainingAborted
from disdepth.pipeline import stages
from disdepth.runs import Run


def add_override_argument(parser: argparse.ArgumentParser, help_text: str = "override, e.g. model.head=bins") -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``, applied after every config file."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The config flags every config-driven command shares."""
    parser.add_argument("--config", "-c", action="append", default=[], help="YAML config (repeatable; later wins)")
    add_override_argument(parser)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``: allow files that only the full (code-running) unpickler can load."""
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load a checkpoint that needs Python's full unpickler (an older disdepth file); unpickling can run "
        "code, so only for files you made yourself",
    )


def add_threads_argument(parser: argparse.ArgumentParser, what: str = "torch CPU threads") -> None:
    """``--threads N`` (0 = torch's default); ``cli`` applies it before the command runs. On a small machine with
    anything else running, torch's default (one thread per core) can slow a step many times over."""
    parser.add_argument(
        "--threads",
        type=at_least(0),
        default=0,
        help=f"{what} (default 0 = torch's default, one per core; use 1 when anything else runs)",
    )


def at_least(minimum: int):
    """An argparse ``type=`` for an int >= ``minimum`` (argparse prints one line naming the flag and exits 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    """An argparse ``type=`` for a finite float (NaN and inf refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse ``type=`` for a finite float >= 0 (0 often meaning "no limit")."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type=`` for a finite float > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse ``type=`` for a float in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def parse_hw(text: str, flag: str = "--size", minimum: int = 1) -> tuple[int, int]:
    """``"480x640"`` -> (480, 640).

    Raises:
        ValueError: naming ``flag`` when the text is not ``HxW`` or a side is below ``minimum`` pixels.
    """
    try:
        h, w = (int(v) for v in text.lower().strip().split("x"))
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected HEIGHTxWIDTH, e.g. 480x640") from None
    if h < minimum or w < minimum:
        raise ValueError(f"{flag} {text!r}: height and width must be at least {minimum} pixels")
    return h, w


def hw_type(flag: str, minimum: int = 1):
    """An argparse ``type=`` for ``HxW`` values: argparse prints the one-line error and exits 2."""

    def parse(text: str) -> tuple[int, int]:
        try:
            return parse_hw(text, flag, minimum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def parse_hw_list(text: str, flag: str, minimum: int = 1) -> list[tuple[int, int]]:
    """``"480x640,352x1216"`` -> [(480, 640), (352, 1216)] (see :func:`parse_hw`)."""
    return [parse_hw(item, flag, minimum) for item in text.split(",")]


# --------------------------------------------------------------------------------------------
# The training commands (train, acclimate, distill, pipeline).
# --------------------------------------------------------------------------------------------

# Sections that define what a run trains: a --resume must not change them (the checkpoint would not fit, or the
# resumed run would silently become another experiment).
# Keys whose change makes a resumed run another run (its checkpoint cannot continue it): everything that decides the
# model, the teacher, the losses and the data, the files and their sizes included. Training length, evaluation,
# logging and the loader's worker count may change on --resume.
RUN_DEFINING = ("seed", "model.", "teacher.", "acclimate.", "distill.", "data.")
RESUMABLE_DATA_KEYS = ("data.num_workers",)


def add_run_arguments(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """Config flags plus ``--run-dir``, ``--overwrite`` and (``resume``) ``--resume``."""
    add_config_arguments(parser)
    parser.add_argument("--run-dir", help="where checkpoints, logs and the resolved config go (default runs/<name>)")
    if resume:
        parser.add_argument(
            "--resume", action="store_true", help="continue the run in --run-dir from checkpoints/last.pt (its config)"
        )
    parser.set_defaults(resume=False)
    add_trust_argument(parser)
    add_threads_argument(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a run directory that holds a run (the old run is kept until the new one checkpoints)",
    )


def resolve_run_config(args: argparse.Namespace, default_run_dir: str):
    """(config, run_dir) of a training command.

    With ``--resume`` the run directory's saved ``config.yaml`` is the base and ``-c``/``--set`` apply on top; a
    change to a key that defines the run (:data:`RUN_DEFINING`) is refused naming the keys.
    """
    if not args.resume:
        cfg = load_config(args.config, args.overrides)
        if not args.run_dir:
            check_run_name(cfg.name)
        if args.run_dir and cfg.name in generic_run_names() and not any(o.startswith("name=") for o in args.overrides):
            # `-c recipe:demo --run-dir runs/mine` is the user's run "mine", not "disdepth_demo" (reports, cards).
            cfg.name = Path(args.run_dir).name or cfg.name
        return cfg, Path(args.run_dir or Path("runs") / default_run_dir.format(name=cfg.name))
    if not args.run_dir:
        raise ValueError("--resume needs --run-dir (the run to continue)")
    saved_path = Run(args.run_dir).config_path
    if not saved_path.is_file():
        raise FileNotFoundError(f"--resume: {saved_path} not found (is {args.run_dir} a run directory?)")
    saved = load_config(saved_path)
    cfg = load_config(args.config, args.overrides, base=copy.deepcopy(saved))
    defining = [
        k for k in changed_keys(saved, cfg) if k.startswith(RUN_DEFINING) and not k.startswith(RESUMABLE_DATA_KEYS)
    ]
    if defining:
        before, after = flat_dict(to_dict(saved)), flat_dict(to_dict(cfg))
        detail = ", ".join(f"{k}: {before.get(k)!r} -> {after[k]!r}" for k in defining[:6])
        raise ConfigError(
            f"--resume: these keys change what {args.run_dir} trains, so its checkpoint cannot continue: {detail}; "
            "drop them, or start a new run (another --run-dir, or --overwrite)"
        )
    return cfg, Path(args.run_dir)


def check_run_name(name: str) -> None:
    """A config's ``name`` becomes ``runs/<name>``: one plain folder name, so a shared config file cannot direct
    writes elsewhere (an absolute path or ``..``); a run folder anywhere else is chosen with ``--run-dir``."""
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
        raise ConfigError(
            f"name: {name!r} is not a plain folder name (no '/', '..' or absolute path; runs go to runs/<name>); "
            "to write elsewhere, give --run-dir on the command line"
        )


def generic_run_names() -> set[str]:
    """The default ``name`` and those the packaged recipes set: names that say nothing about a user's run."""
    from importlib import resources

    from disdepth.config import RECIPE_PREFIX, Config

    folder = resources.files("disdepth.recipes")
    recipes = [p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")]
    return {Config().name, *(load_config(RECIPE_PREFIX + r).name for r in recipes)}


def start_run(args: argparse.Namespace, default_run_dir: str):
    """Resolve the config; with ``--print-config`` print it and return None. Otherwise join the process group
    (``torchrun`` environment, or a single process), set up console logging on the main rank and return
    (config, run_dir, dist info). The caller must call ``dist.cleanup()`` when done."""

    cfg, run_dir = resolve_run_config(args, default_run_dir)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return None
    info = dist.setup(cfg.train.device)
    setup_console_logging(info.is_main)
    return cfg, run_dir, info


def run_stage_command(args: argparse.Namespace, stage: str) -> int:
    """``train`` (stage = student | teacher), ``acclimate`` and ``distill``: one stage, its result printed.

    Exit codes: 0 done, 1 aborted (non-finite losses), 130 stopped by a signal after writing a checkpoint.
    """
    default_dir = "{name}" if stage in ("student", "teacher") else "{name}_" + stage
    started = start_run(args, default_dir)
    if started is None:
        return 0
    cfg, run_dir, info = started

    # The stage's budget (pipeline.<stage>) applies here as in the pipeline, so one config file serves both.
    cfg = stage_config(cfg, {"student": "baseline"}.get(stage, stage))
    try:
        spec = stages.model_spec(cfg, "teacher" if stage == "teacher" else "student")
        train_set = stages.config_datasets(cfg, "train", spec)
        val_set = stages.config_datasets(cfg, "val", spec)
        kw = dict(resume=args.resume, overwrite=args.overwrite)
        if stage in ("student", "teacher"):
            out = stages.supervised_stage(cfg, run_dir, train_set, val_set, info, **kw, which=stage)
        elif stage == "acclimate":
            out = stages.acclimate_stage(cfg, run_dir, train_set, val_set, info, **kw)
        else:
            out = stages.distill_stage(cfg, run_dir, train_set, val_set, info, **kw)
    except TrainingAborted as exc:
        print(f"disdepth {args.command}: aborted: {exc}")
        return 1
    finally:
        dist.cleanup()
    if info.is_main:
        print(json.dumps(out, indent=2, default=float))
        print(f"run: {run_dir}  step {out.get('step')}/{cfg.train.steps}  checkpoint {out.get('checkpoint', '-')}")
    return 130 if out.get("interrupted") else 0


def check_port_free(host: str, port: int) -> None:
    """Refuse, naming ``--port``, a port that another program already listens on (before any model loads)."""
    import socket

    if not 0 < port < 65536:
        raise ValueError(f"--port {port}: expected 1..65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or exc
            raise ValueError(f"--port {port}: cannot listen on {host}:{port} ({reason}); pick another port") from None
