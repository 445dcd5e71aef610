"""The README's real-data distillation tables are generated from the committed per-run JSONs, not typed in.

``benchmarks/distill_ablation.py --from-results FOLDER`` renders a results folder's table; these tests check that
each committed ``table.md`` is exactly what its JSONs give today (so a hand edit or a changed summary is caught)
and that the README carries the table rows unchanged.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distill_ablation"
FOLDERS = sorted(p for p in RESULTS.glob("*") if (p / "table.md").is_file()) if RESULTS.is_dir() else []


def _runner():
    spec = importlib.util.spec_from_file_location("distill_ablation", ROOT / "benchmarks" / "distill_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_committed_table_is_what_the_json_gives(folder: Path) -> None:
    assert _runner().render_table(folder) == (folder / "table.md").read_text()


@pytest.mark.parametrize("folder", [p for p in FOLDERS if p.name.startswith("sevenscenes")], ids=lambda p: p.name)
def test_results_page_carries_the_table(folder: Path) -> None:
    results = (ROOT / "docs" / "results.md").read_text()
    rows = [line for line in (folder / "table.md").read_text().splitlines() if line.startswith("| ")]
    assert rows, f"{folder}/table.md has no table"
    missing = [line for line in rows if line not in results]
    assert not missing, f"docs/results.md lacks {len(missing)} row(s) of {folder.name}, e.g. {missing[0]}"


def test_readme_headline_rows_are_generated_rows() -> None:
    """The README's one results table copies rows of a generated table.md, unchanged."""
    readme = (ROOT / "README.md").read_text().split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in readme.splitlines() if line.startswith("| ") and not line.startswith("| row ")]
    generated = {line for folder in FOLDERS for line in (folder / "table.md").read_text().splitlines()}
    assert rows and all(line in generated for line in rows), [line for line in rows if line not in generated]


def test_summary_pairs_rows_with_the_same_seed(tmp_path: Path) -> None:
    """A row 10 % worse than the baseline on every image of every seed reads +10.0 % with a tight interval;
    the teacher row comes from the acclimation stage's teacher_before scores."""
    runner = _runner()
    images = {f"f{i}": 0.1 + 0.01 * i for i in range(8)}

    def metrics(scale: float) -> dict:
        per_image = {k: {"abs_rel": v * scale, "rmse": 1.0, "d1": 0.5} for k, v in images.items()}
        mean = sum(v * scale for v in images.values()) / len(images)
        return {"abs_rel": mean, "rmse": 1.0, "d1": 0.5, "per_image": per_image}

    for seed in (0, 1):
        rows = {
            "baseline": {"metrics": metrics(1.0)},
            "lgconv": {"metrics": metrics(1.1)},
            "acclimate": {"metrics": {"teacher_before": metrics(0.7), "ghost": metrics(0.8)}},
        }
        for row, record in rows.items():
            record = {"row": row, "seed": seed, "wall_s": 1.0, **record}
            (tmp_path / f"{row}_seed{seed}.json").write_text(json.dumps(record))
    text = runner.render_table(tmp_path)
    lgconv = next(line for line in text.splitlines() if line.startswith("| + LG-Conv"))
    assert "+10.0 % [+10.0, +10.0]" in lgconv
    teacher = next(line for line in text.splitlines() if line.startswith("| teacher"))
    assert "-30.0 %" in teacher and "no measurable effect" not in teacher


def _benchmark(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _student_accuracy():
    return _benchmark("student_accuracy")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--dataset", "sevenscenes", "--size", "120", "160"],
        ["--dataset", "sevenscenes", "--size", "240", "320", "--archs", "unet256", "default", "bilinear"]
        + ["conv_first_s8"],
        ["--lr", "0.01"],
        ["--dataset", "sevenscenes", "--size", "120", "160", "--lr", "0.01", "--seeds", "0", "1", "2", "3", "4"],
    ],
    ids=["synthetic", "sevenscenes_120x160", "sevenscenes_240x320", "synthetic_lr0.01", "sevenscenes_lr0.01"],
)
def test_committed_student_accuracy_table_is_what_the_json_gives(argv: list[str]) -> None:
    """``student_accuracy.py --table-only`` regenerates each committed table.md exactly (students and peers)."""
    module = _student_accuracy()
    args = module.parser().parse_args(argv)
    table = module.results_folder(args) / "table.md"
    if not table.is_file():
        pytest.skip(f"{table} not committed")
    assert module.render_table(args) == table.read_text()


@pytest.mark.parametrize("argv", [[], ["--dataset", "sevenscenes", "--size", "120", "160"]], ids=["synthetic", "7s"])
def test_the_learning_rate_is_chosen_from_validation_runs_kept_apart_from_the_test_tables(argv: list[str]) -> None:
    """``--split val`` runs live under ``val/`` (never in a test table's folder), and the committed validation table
    is what their JSONs give, with the lowest abs_rel of each row in bold."""
    module = _student_accuracy()
    args = module.parser().parse_args([*argv, "--split", "val", "--lr", "0.01"])
    assert module.results_folder(args).relative_to(module.RESULTS).parts[0] == "val"
    table = module.RESULTS / "val" / f"{args.dataset}_{args.size[0]}x{args.size[1]}.md"
    if not table.is_file():
        pytest.skip(f"{table} not committed")
    text = module.render_val_table(args)
    assert text == table.read_text()
    for row in [line for line in text.splitlines() if line.startswith("| default")]:
        values = [float(cell.split()[0].strip("*")) for cell in row.split("|")[2:-1] if cell.strip()]
        assert f"**{min(values):.4f}**" in row


def test_each_student_is_reported_at_the_rate_its_validation_runs_chose() -> None:
    """``--table-only --validated``: every row's rate is the lowest mean validation abs_rel among those tried (in
    the validation table), and the committed table is what the JSONs give."""
    module = _student_accuracy()
    args = module.parser().parse_args(["--dataset", "sevenscenes", "--size", "120", "160", "--validated"])
    rates = module.validated_rates(args)
    val_table = (module.RESULTS / "val" / "sevenscenes_120x160.md").read_text()
    for arch, lr in rates.items():
        row = next(line for line in val_table.splitlines() if line.startswith(f"| {module.ARCHS[arch][0]} |"))
        header = next(line for line in val_table.splitlines() if line.startswith("| model |"))
        bold = [h.strip() for h, c in zip(header.split("|"), row.split("|"), strict=True) if "**" in c]
        assert bold == [f"lr {lr:g}"]
    assert rates["default"] == 0.01  # the default student's rate, as the test tables at lr 0.01 assume
    table = module.RESULTS / "validated" / "sevenscenes_120x160.md"
    if not table.is_file():
        pytest.skip(f"{table} not committed")
    text = module.render_validated_table(args)
    assert text == table.read_text()
    assert all(f"| {rates[a]:g} |" in line for a in rates for line in text.splitlines()
               if line.startswith(f"| {module.ARCHS[a][0]} |"))  # fmt: skip


def test_the_default_student_and_its_recipe_are_the_student_the_tables_measured() -> None:
    """The default student, the datasets' student.yaml and ``recipe:fast_cpu_student`` after a dataset config all have
    exactly the model keys of the benchmarked ``lite0_lite_near`` row; the recipe leaves the dataset's own model keys
    (depth range) alone."""
    from disdepth.config import load_config

    module = _student_accuracy()
    measured = load_config(overrides=module.ARCHS["lite0_lite_near"][1]).model
    nyu = load_config(ROOT / "configs" / "nyu" / "student.yaml").model
    recipe = load_config([ROOT / "configs" / "nyu" / "student.yaml", "recipe:fast_cpu_student"]).model
    keys = ["encoder", "pretrained", "weights", "decoder", "lite_channels", "lite_upsample"]
    assert [getattr(recipe, k) for k in keys] == [getattr(measured, k) for k in keys]
    for student in (load_config().model, nyu, load_config(ROOT / "configs" / "kitti" / "student.yaml").model):
        assert [getattr(student, k) for k in keys] == [getattr(measured, k) for k in keys]
    assert (recipe.max_depth, recipe.min_depth) == (nyu.max_depth, nyu.min_depth) != (measured.max_depth, None)


CACHE = ROOT / "benchmarks" / "results" / "teacher_cache_accuracy"


@pytest.mark.parametrize("crop", [None, [64, 80]], ids=["no_crop", "crop_64x80"])
def test_committed_teacher_cache_table_is_what_the_json_gives(crop: list[int] | None) -> None:
    """``teacher_cache_accuracy.py --table-only`` regenerates each committed table.md exactly."""
    folder = CACHE / (f"crop_{crop[0]}x{crop[1]}" if crop else "")
    if not (folder / "table.md").is_file():
        pytest.skip(f"{folder}/table.md not committed")
    assert (
        _benchmark("teacher_cache_accuracy").render_table(folder, [0, 1, 2, 3, 4], crop)
        == (folder / "table.md").read_text()
    )


def test_student_latency_only_keeps_fastdepth_first() -> None:
    """``student_latency.py --only`` times the rows asked for after FastDepth, the reference of every ratio."""
    module = _benchmark("student_latency")
    names = list(module.MODELS)
    assert list(module.selected_models(None)) == names
    assert list(module.selected_models([3, 2, 0, 2])) == [module.REFERENCE, names[2], names[3]]


def test_results_page_carries_the_teacher_runs_table() -> None:
    """docs/results.md's teacher-runs table is what benchmarks/teacher_runs.py renders from its committed JSON."""
    path = ROOT / "benchmarks" / "results" / "teacher_runs.json"
    if not path.is_file():
        pytest.skip(f"{path} not committed")
    spec = importlib.util.spec_from_file_location("teacher_runs", ROOT / "benchmarks" / "teacher_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.table(json.loads(path.read_text()))
    assert table in (ROOT / "docs" / "results.md").read_text()
