"""Hostile-input cases at the edges (used by ``hostile_inputs.py``, category "edges"): writes that must not escape
their folder, inputs and results that must not be overwritten, values that are wrong but finite-looking, files from
elsewhere (ONNX graphs, phone photos, extreme aspect ratios) and I/O failures that must read as one line.

Each case is a :class:`hostile_inputs.Case`; the ones that could destroy a file run through :func:`guarded`, which
fingerprints the file before and after and reports ``data loss`` when it changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import hostile_inputs as H
import numpy as np
from PIL import Image


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def guarded(*protected: Path):
    """A runner: the plain case, then ``data loss`` if any ``protected`` file changed or vanished."""

    def run(case: H.Case, ws: Path) -> tuple[str, str, H.Result]:
        before = {p: _digest(p) for p in protected}
        res = H.run_process(H.disdepth(*case.argv), ws, case.timeout, case.env)
        changed = [p.name for p in protected if _digest(p) != before[p]]
        if changed:
            return "data loss", f"{', '.join(changed)} changed", res
        verdict, note = H.classify(case, res)
        return verdict, note, res

    return run


def _wrote_predictions(folder: Path):
    """A check for an accepted predict run: its predictions.json lists one finite prediction."""

    def check(res: H.Result) -> str | None:
        summary = folder / "predictions.json"
        if not summary.is_file():
            return "no predictions.json"
        entries = json.loads(summary.read_text())["predictions"]
        return None if len(entries) == 1 else f"{len(entries)} predictions"

    return check


def _nan_model(ws: Path, model_dir: Path, label: str, scale: float) -> Path:
    from safetensors.torch import load_file, save_file

    folder = ws / f"model_{label}"
    if not folder.exists():
        shutil.copytree(model_dir, folder)
        weights = load_file(str(folder / "model.safetensors"))
        key = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
        weights[key] = weights[key] * scale
        save_file(weights, str(folder / "model.safetensors"))
    return folder


def _foreign_onnx(ws: Path) -> Path:
    """An ONNX graph from elsewhere: a valid model with no disdepth metadata."""
    import torch

    path = ws / "foreign.onnx"
    if not path.exists():
        torch.onnx.export(torch.nn.Conv2d(3, 1, 3, padding=1), torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    return path


def _outside_data_onnx(ws: Path, graph: Path) -> Path:
    """A disdepth graph whose external-data location points outside its folder (``../secret.bin``)."""
    import onnx
    from onnx.external_data_helper import set_external_data

    path = ws / "outside" / "m.onnx"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        model = onnx.load(str(graph))
        tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data) or 0)
        set_external_data(tensor, location="../secret.bin")
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        onnx.save(model, str(path))
    return path


def _exif_csv(ws: Path) -> Path:
    """A phone photo stored sideways (EXIF orientation 6) with its depth map on the stored pixel grid."""
    folder = ws / "phone"
    folder.mkdir(exist_ok=True)
    rows = []
    for i in range(2):
        rgb = (np.random.default_rng(i).random((48, 64, 3)) * 255).astype(np.uint8)
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rgb).save(folder / f"p{i}.jpg", exif=exif)
        H.write_depth(folder / f"d{i}.png", 48, 64, seed=i)
        rows.append([f"p{i}", f"p{i}.jpg", f"d{i}.png", "1000"])
    return H.write_csv(folder, rows)


def edge_cases(ws: Path, paths: dict[str, Path]) -> list[H.Case]:
    ck, model_dir, photo = str(paths["student"]), paths["model_dir"], ws / "photo.png"
    tiny = H.sets([*H.TINY_MODEL, *H.FAST, *H.SYN])
    photos = ws / "photos"
    photos.mkdir(exist_ok=True)
    shutil.copy(photo, photos / "kitchen.png")
    (ws / "odd").mkdir(exist_ok=True)
    for name, (h, w) in {"thin": (4, 1500), "tall": (1500, 4), "dot": (1, 1)}.items():
        H.write_rgb(ws / "odd" / f"{name}.png", h, w)
    synth = ws / "synth_ds"
    if not (synth / "index.csv").exists():
        H.run_process(H.disdepth("data", "synth", "--n", "2", "--size", "16x24", "--out", str(synth)), ws, 120)
    graph = ws / "student.onnx"
    if not graph.exists():
        H.run_process(H.disdepth("export", ck, "--out", str(graph), "--size", "64x64", "--no-check"), ws, 300)
    (ws / "upper").mkdir(exist_ok=True)
    H.write_rgb(ws / "upper" / "a.png")
    H.write_depth(ws / "upper" / "a_d.png")
    upper = H.write_csv(ws / "upper", [["a.png", "a_d.png", "1000"]], "RGB,Depth,Depth_Scale")
    twice = ws / "upper" / "twice.csv"
    twice.write_text("rgb,depth,rgb,depth_scale\na.png,a_d.png,a.png,1000\n")
    npz_dir = ws / "npz"
    npz_dir.mkdir(exist_ok=True)
    H.write_rgb(npz_dir / "a.png")
    np.savez(npz_dir / "a.npz", np.full((64, 64), 2.0, np.float32))
    npz = H.write_csv(npz_dir, [["a", "a.png", "a.npz", ""], ["b", "a.png", "a.npz", ""]])
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]  # held for the runner's lifetime: the app case must find it in use
    paths["_busy_socket"] = busy  # type: ignore[assignment]
    pred = ["predict", ck, str(photo), "--out"]
    cases: list[H.Case] = []

    def case(name: str, argv: list[str], expect: str, names: tuple[str, ...] = (), **kw) -> None:
        cases.append(H.Case("edges", name, argv, expect, names, **kw))

    # security: a config's name becomes runs/<name>
    for label, name in (("dot-dot", "../escape"), ("absolute", "/tmp/disdepth_abs"), ("nested", "a/b"), ("empty", "")):
        cfg = ws / f"name_{label}.yaml"
        cfg.write_text(f"name: {json.dumps(name)}\n")
        case(f"config name {label}", ["train", "-c", str(cfg), *tiny], "error", ("name",))
    # data loss: inputs and results that must not be replaced
    case("predict --out = the photos' folder", ["predict", ck, str(photos), "--out", str(photos)], "error",
         ("kitchen.png",), runner=guarded(photos / "kitchen.png"))  # fmt: skip
    case("export --out = the checkpoint", ["export", ck, "--out", ck, "--no-check"], "error", ("--out",),
         runner=guarded(Path(ck)))  # fmt: skip
    case("data synth --out = an existing dataset", ["data", "synth", "--n", "1", "--out", str(synth)], "error",
         ("already holds a dataset",), runner=guarded(synth / "index.csv"))  # fmt: skip
    # silent wrong: finite-looking values that mean nothing
    for label, scale in (("NaN", float("nan")), ("1e30-scaled", 1e30)):
        folder = _nan_model(ws, model_dir, label.replace("-", "_"), scale)
        case(f"model folder with {label} weights", ["predict", str(folder), str(photo), "--out", f"out/e_{label}"],
             "error", (folder.name,))  # fmt: skip
    for flags, named in (
        (["--vmin", "5", "--vmax", "1"], "--vmin"), (["--vmin", "nan"], "--vmin"), (["--fov", "nan"], "--fov"),
        (["--intrinsics", "nan,1,1,1"], "intrinsics"), (["--formats", ""], "--formats"),
        (["--max-megapixels", "nan"], "--max-megapixels"), (["--fov", "-5"], "--fov"),
    ):  # fmt: skip
        case(f"predict {' '.join(flags) or repr('')}", [*pred, "out/e_flags", *flags], "error", (named,))
    for flags in (["--holes", "1.5"], ["--holes", "-0.1"], ["--size", "100000x100000"], ["--depth-noise", "nan"]):
        case(f"data synth {' '.join(flags)}", ["data", "synth", "--n", "1", "--out", "out/e_synth", *flags], "error",
             (flags[0],))  # fmt: skip
    case("seed=1e20", ["train", "--set", "seed=100000000000000000000", *tiny], "error", ("seed",))
    case("export --threads -2", ["export", ck, "--out", "out/t.onnx", "--threads", "-2"], "error", ("--threads",))
    # files from elsewhere
    case("foreign ONNX graph", ["predict", str(_foreign_onnx(ws)), str(photo), "--out", "out/e_onnx"], "error",
         ("foreign.onnx",))  # fmt: skip
    if graph.exists():
        outside = _outside_data_onnx(ws, graph)
        case("ONNX external data outside its folder", ["predict", str(outside), str(photo), "--out", "out/e_ext"],
             "error", ("m.onnx",))  # fmt: skip
        case("fixed-size graph, --size other", ["predict", str(graph), str(photo), "--out", "out/e_fix", "--size",
             "32x32"], "error", ("--dynamic", "fixed"))  # fmt: skip
    for name in ("thin", "tall", "dot"):
        out = ws / "out" / f"e_{name}"
        case(f"extreme aspect ratio: {name}", ["predict", ck, str(ws / "odd" / f"{name}.png"), "--out", str(out)],
             "either", (f"{name}.png",), check=_wrote_predictions(out))  # fmt: skip
    data = ["--set", "data.dataset=csv", "--set", "data.num_workers=0"]
    phone = ["--set", f"data.train_list={_exif_csv(ws)}", "--set", "data.augment.enabled=false"]
    case("phone photos (EXIF) in training", ["train", *H.sets([*H.TINY_MODEL, *H.FAST]), *data, *phone], "ok",
         check=H.finished_run)  # fmt: skip
    case("upper-case CSV header", ["data", "check", *data, "--set", f"data.train_list={upper}"], "ok",
         check=H.check_report_ok)  # fmt: skip
    case("a column given twice", ["data", "check", *data, "--set", f"data.train_list={twice}"], "error",
         ("rgb",), in_report=True)  # fmt: skip
    case(".npz depth", ["train", *H.sets([*H.TINY_MODEL, *H.FAST]), *data, "--set", f"data.train_list={npz}",
         "--set", "data.augment.enabled=false"], "ok", check=H.finished_run)  # fmt: skip
    # I/O and environment failures
    case("app on a port in use", ["app", ck, "--port", str(port)], "error", (f"--port {port}",), timeout=120)
    case("app --device cuda without CUDA", ["app", ck, "--device", "cuda"], "error", ("--device",), timeout=120)
    case("predict --device cuda:7", [*pred, "out/e_dev", "--device", "cuda:7"], "error", ("--device",))
    return cases
