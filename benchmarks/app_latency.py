"""How fast the browser app (``disdepth app``) starts and answers, against the model's own latency.

python benchmarks/app_latency.py                  # default student (mobilenetv2_100, random weights), 480x640
python benchmarks/app_latency.py --repeats 15 --threads 1

Prints, with the torch threads and the machine load (``os.getloadavg()``) before and after:

* imports: torch + disdepth + gradio (not part of the start time);
* start: a saved model folder found, loaded, the page built and served until its first HTTP 200 (target < 10 s);
* per repeat, interleaved: the model alone (``DepthPredictor.predict_tensor`` on the image) and the app's answer over
  HTTP as the page gets it (upload the file, run ``predict`` through the queue, read the server-sent answer, fetch the
  depth picture: the depth on screen); then the page's second step, the downloads (16-bit PNG, ``.npy``, ``.ply``),
  timed in-process; median and spread (min-max) of each; target: answer <= model + 20 %.
  (``gradio_client`` is not used: it adds ~90 ms of its own per call on this machine, which no browser pays.)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.checkpoint import CheckpointKind, save_model_folder  # noqa: E402
from disdepth.config import load_config, to_dict  # noqa: E402
from disdepth.deploy import app as A  # noqa: E402
from disdepth.models.student import build_student  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio  # noqa: E402, F401
import httpx  # noqa: E402  (a gradio dependency)

IMPORT_S = time.perf_counter() - T0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _stats(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms  (min {min(values):.1f}, max {max(values):.1f})"


def _ask(http: httpx.Client, image: Path) -> None:
    """What the page does for an upload, over HTTP: upload the file, run ``predict``, wait for the answer (server-sent
    events), fetch the depth picture it names."""
    with open(image, "rb") as f:
        path = http.post("/upload", files={"files": (image.name, f, "image/png")}).json()[0]
    file = {"path": path, "orig_name": image.name, "meta": {"_type": "gradio.FileData"}}
    event = http.post("/call/predict", json={"data": [file, "", 60.0]}).json()["event_id"]
    reply = http.get(f"/call/predict/{event}").text
    if "event: complete" not in reply:
        raise RuntimeError(f"the app did not answer: {reply[:500]}")
    data = json.loads(reply.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])
    depth_picture = data[2]["url"]  # [status, input, depth, colour bar, ...]
    assert http.get(depth_picture).status_code == 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mobilenetv2_100")
    parser.add_argument("--size", default="480x640", help="image HxW")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    print(f"threads {torch.get_num_threads()}, load before {_load()} (1/5/15 min), imports {IMPORT_S:.2f} s")

    work = Path(tempfile.mkdtemp(prefix="app-latency-"))
    cfg = load_config(overrides=[*STUDENT_UNTIL_0_5, f"model.encoder={args.encoder}"])
    torch.manual_seed(0)
    student = build_student(cfg.model, load_weights=False).eval()  # random weights: the latency is the same
    folder = save_model_folder(
        work / "model", CheckpointKind.STUDENT, student.state_dict(), student.input_spec.to_dict(), to_dict(cfg)
    )
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 / width, y * 255 / height, 128 + 0 * x], -1) + rng.normal(0, 8, (height, width, 3))
    image = work / "photo.png"
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(image)

    start = time.perf_counter()
    models = A.load_models(A.find_models(folder))
    demo = A.build_app(models)
    port = _free_port()
    url = A.launch_app(demo, port=port, block=False)
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.status == 200
    start_s = time.perf_counter() - start
    print(f"app start after imports: {start_s:.2f} s (find + load the model, build the page, serve; target < 10 s)")

    http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=120)
    predictor = models[0].predictor
    tensor = torch.from_numpy(np.array(Image.open(image).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    for _ in range(2):  # warm-up: allocator, the page's first answer
        predictor.predict_tensor(tensor)
        _ask(http, image)
    model_ms, app_ms, files_ms = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predictor.predict_tensor(tensor)
        model_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        _ask(http, image)
        app_ms.append((time.perf_counter() - t) * 1e3)
        view = A.predict_view(models, str(image), downloads=False)
        t = time.perf_counter()
        files = A.write_downloads(view, models, "", 60.0, work / "downloads")
        files_ms.append((time.perf_counter() - t) * 1e3)
        assert len(files) == 3, files  # PNG, NPY, PLY
    m, a = statistics.median(model_ms), statistics.median(app_ms)
    print(f"{args.encoder} at {height}x{width}, {args.repeats} interleaved repeats, {args.threads} thread(s):")
    print(f"  model alone        : {_stats(model_ms)}")
    print(f"  app answer (depth) : {_stats(app_ms)}  = model {100 * (a / m - 1):+.0f} % (target <= +20 %)")
    print(f"  then the downloads : {_stats(files_ms)}  (the page's second step: 16-bit PNG, .npy, .ply written)")
    print(f"load after {_load()}")
    http.close()
    demo.close()


if __name__ == "__main__":
    main()
