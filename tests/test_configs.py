"""The shipped configs: layout rules, the paths the docs name, and every student/teacher recipe building its model
and running one training step on a stub dataset in its layout.

Layout (README, "Configs"): ``configs/<dataset>/base.yaml`` has no base; every other file under a dataset folder
names ``base: base.yaml`` (one level); ``configs/teachers/*.yaml`` have no base and are composed after a dataset
file with a second ``-c``; the packaged recipes (``recipe:NAME``) have no base.

The full datasets are not on the test machines: the stub is the synthetic world written by ``disdepth data synth``
in the NYU or KITTI BTS layout at the real frame size. Hub weights cannot be downloaded here, so pretrained
weights are switched off (the offline ``package:`` weights stay on), crops are shrunk and the run is one step.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml

from disdepth.cli import main
from disdepth.config import PIPELINE_STAGES, ConfigError, StageBudget, load_config, resolve_config_path, stage_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
ALL_YAML = sorted(CONFIGS.rglob("*.yaml"))
RECIPES = sorted(Path(str(resources.files("disdepth.recipes"))).glob("*.yaml"))
DATASETS = ("nyu", "kitti")
LAYOUTS = {"nyu": ("indoor", "480x640"), "kitti": ("outdoor", "375x1242")}
# The encoders the README and configs/<dataset>/student.yaml name as tested; each is built and stepped below.
ENCODERS = (
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "resnet18",
    "resnet34",
    "efficientnet_b0",
    "tf_efficientnet_lite0",
    "ghostnet_100",
)
# Student variants beyond the encoder: (id, --set overrides), as student.yaml documents them.
# The default (tf_efficientnet_lite0 with the packaged weights) needs no override; the others take timm's weights.
STUDENTS = [
    *((enc, [f"model.encoder={enc}", "model.pretrained=timm"]) for enc in ENCODERS),
    ("default_lgconv", ["model.lgconv.enabled=true"]),
    ("default", []),
    ("until_0_5", ["model.encoder=mobilenetv2_100", "model.pretrained=timm", "model.decoder=unet"]),
]
TEACHERS = sorted((CONFIGS / "teachers").glob("*.yaml"))
# Encoders and teacher files do not depend on the dataset, so each is built and stepped once, on one dataset's stub,
# alternating so that both layouts see students and teachers (a Hugging Face teacher: the dataset it is made for).
STUDENT_RUNS = [(DATASETS[i % 2], name, sets) for i, (name, sets) in enumerate(STUDENTS)]
TEACHER_RUNS = {
    "swin_tiny": "kitti",
    "swin_base": "nyu",
    "swin_large": "kitti",
    "vit_base": "nyu",
    "pvt_v2_b2": "kitti",
    "hybrid_lite0": "nyu",
    "depth_anything_v2_metric_indoor": "nyu",
    "depth_anything_v2_metric_outdoor": "kitti",
}


def raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _id(path: Path) -> str:
    return f"recipe:{path.stem}" if path in RECIPES else path.relative_to(CONFIGS).as_posix()


# ---------------------------------------------------------------------------------------------------------------
# Layout: every file loads, one base level, the base is the dataset file.
# ---------------------------------------------------------------------------------------------------------------


def test_layout_files_exist():
    for dataset in DATASETS:
        for name in ("base", "student", "disdepth"):
            assert (CONFIGS / dataset / f"{name}.yaml").is_file()
    teachers = {"swin_base", "swin_tiny", "swin_large", "vit_base", "pvt_v2_b2", "hybrid_lite0"}
    assert teachers <= {p.stem for p in TEACHERS}
    assert not (CONFIGS / "synthetic").exists()  # the smoke recipe lives in the package only (recipe:demo)


@pytest.mark.parametrize("path", ALL_YAML, ids=_id)
def test_every_config_loads(path):
    load_config(path)


@pytest.mark.parametrize("path", [*ALL_YAML, *RECIPES], ids=_id)
def test_base_chain_is_one_level_and_the_base_is_the_dataset_file(path):
    base = raw(path).get("base")
    if path in RECIPES or path.name == "base.yaml" or path.parent.name in ("teachers", "benchmarks"):
        assert base is None, f"{path}: a dataset, teacher or benchmark file, or a packaged recipe, has no base"
        return
    assert base is not None, f"{path}: a dataset folder's recipe starts from its dataset file"
    target = resolve_config_path(base, path.parent).resolve()
    assert "base" not in raw(target), f"{path}: its base {base} has a base itself (at most one level)"
    # The dataset file of its own folder, or (a recipe on another dataset's data) a packaged recipe.
    assert target == (path.parent / "base.yaml").resolve() or target in [r.resolve() for r in RECIPES], base


def test_recipe_paths_resolve_and_unknown_ones_name_the_known(tmp_path):
    assert load_config("recipe:demo").pipeline.teacher.steps > 0
    with pytest.raises(ConfigError, match="known: recipe:demo"):
        load_config("recipe:nope")
    with pytest.raises(ConfigError, match="no such packaged recipe"):
        load_config("recipe:../configs/nyu/base")
    child = tmp_path / "child.yaml"
    child.write_text("base: recipe:demo\ntrain:\n  steps: 3\n")
    cfg = load_config(child)
    # A user's file built on a recipe is the user's run: it takes the file's name, not the recipe's.
    assert cfg.train.steps == 3 and cfg.name == "child" != load_config("recipe:demo").name


# ---------------------------------------------------------------------------------------------------------------
# Every config path the README, docs and config comments name exists and resolves (with the other -c files and
# the --set overrides of the same command).
# ---------------------------------------------------------------------------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *ALL_YAML, *RECIPES]
CONFIG_ARG = re.compile(r"(?:^|\s)(?:-c|--config)\s+([^\s`'\"]+)")
SET_ARG = re.compile(r"(?:^|\s)--set\s+([\w.]+=[^\s`'\"]*)")


def _commands(path: Path) -> list[str]:
    """Command lines (backslash continuations joined; a config's comment marker stripped) naming a shipped config."""
    text = path.read_text()
    if path.suffix == ".yaml":
        text = "\n".join(line.lstrip("# ") for line in text.splitlines() if line.lstrip().startswith("#"))
    text = re.sub(r"\\\n\s*", " ", text)
    return [
        line
        for line in text.splitlines()
        if any(a.startswith(("configs/", "recipe:", "src/")) for a in CONFIG_ARG.findall(line))
    ]


def test_docs_name_config_files():
    commands = [c for p in DOCS for c in _commands(p)]
    named = {a for c in commands for a in CONFIG_ARG.findall(c)}
    assert {"recipe:demo", "configs/nyu/student.yaml", "configs/nyu/disdepth.yaml"} <= named


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_config_path_in_the_docs_exists_and_resolves(doc):
    for line in _commands(doc):
        # Shipped files only: not a user's own (my_kitti.yaml) nor a placeholder (configs/<dataset>/..., FILE).
        files = [a.rstrip(".,;:)") for a in CONFIG_ARG.findall(line)]
        files = [f for f in files if f.startswith(("configs/", "recipe:", "src/")) and "<" not in f and f.isascii()]
        files = [f for f in files if f.startswith("recipe:") or f.endswith(".yaml")]
        paths = [f if f.startswith("recipe:") else ROOT / f for f in files]
        for path in paths:
            assert isinstance(path, str) or path.is_file(), f"{doc.name}: {path} does not exist ({line.strip()})"
        # Placeholders (KEY=<...>, KEY=...) stay strings; a real --set must resolve with the files.
        sets = [s for s in SET_ARG.findall(line) if not re.search(r"=(<|\.\.\.|$)", s) and "<" not in s]
        try:
            load_config(paths, sets)
        except ConfigError as exc:
            raise AssertionError(f"{doc.name}: {line.strip()}: {exc}") from None
    # Outside command lines too: a configs/... file named anywhere in the text exists.
    for name in re.findall(r"configs/[\w/.-]+\.yaml", doc.read_text()):
        assert (ROOT / name).is_file() or name == "configs/my_run.yaml", f"{doc.name} names {name}"


# ---------------------------------------------------------------------------------------------------------------
# Pipeline files: typed per-stage budgets.
# ---------------------------------------------------------------------------------------------------------------

PIPELINES = [*(CONFIGS / d / "disdepth.yaml" for d in DATASETS), *sorted((CONFIGS / "sevenscenes").glob("*.yaml"))]


@pytest.mark.parametrize("path", [*PIPELINES, "recipe:demo"], ids=str)
def test_pipeline_files_give_typed_stage_budgets(path):
    cfg = load_config(path)
    file = resolve_config_path(path)
    chain = [raw(file), *([raw(resolve_config_path(raw(file)["base"], file.parent))] if "base" in raw(file) else [])]
    assert any("pipeline" in delta for delta in chain)
    for stage in PIPELINE_STAGES:
        assert isinstance(getattr(cfg.pipeline, stage), StageBudget)
        for delta in chain:  # each stage's budget is written as {steps, lr, batch_size}, nothing else
            assert set((delta.get("pipeline") or {}).get(stage) or {}) <= {"steps", "lr", "batch_size"}
    acc = stage_config(cfg, "acclimate").train
    assert 0 < acc.steps < stage_config(cfg, "distill").train.steps  # acclimation is a fraction of the schedule
    assert stage_config(cfg, "teacher").train.lr > 0


@pytest.mark.parametrize("dataset", DATASETS)
def test_disdepth_file_matches_its_parts(dataset):
    """The pipeline's student is student.yaml + LG-Conv, its teacher teachers/swin_base.yaml; a composed teacher
    file changes the teacher stage only."""
    d = CONFIGS / dataset
    cfg = load_config(d / "disdepth.yaml")
    assert cfg.model == load_config(d / "student.yaml", ["model.lgconv.enabled=true"]).model
    teacher = load_config([d / "base.yaml", CONFIGS / "teachers/swin_base.yaml"])
    assert cfg.teacher == teacher.teacher and stage_config(cfg, "teacher").train.lr == teacher.train.lr
    base = load_config(d / "base.yaml")
    for stage in ("baseline", "distill"):
        assert stage_config(cfg, stage).train == base.train and stage_config(cfg, stage).data == base.data
    hybrid = load_config([d / "disdepth.yaml", CONFIGS / "teachers/hybrid_lite0.yaml"])
    assert hybrid.teacher.kind == "hybrid" and stage_config(hybrid, "teacher").train.lr == 1e-4
    for stage in ("baseline", "acclimate", "distill"):
        assert stage_config(hybrid, stage).train == stage_config(cfg, stage).train


# ---------------------------------------------------------------------------------------------------------------
# Every student encoder and every teacher file builds and trains one step on each dataset's stub.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_data(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("disdepth.data.synthetic")
    root = tmp_path_factory.mktemp("stub")
    for name, (preset, size) in LAYOUTS.items():
        assert main(["data", "synth", "--preset", preset, "--n", "2", "--size", size, "--out", str(root / name)]) == 0
    return {name: root / name for name in LAYOUTS}


def test_student_yaml_and_readme_list_the_tested_encoders():
    readme = (ROOT / "README.md").read_text()
    for dataset in DATASETS:
        text = (CONFIGS / dataset / "student.yaml").read_text()
        assert all(enc in text for enc in ENCODERS), dataset
    assert all(f"`{enc}`" in readme for enc in ENCODERS)


def _one_step(files: list[Path], sets: list[str], dataset: str, model: str, data: Path, run: Path) -> None:
    cfg = load_config(files, sets)
    assert cfg.data.dataset == dataset and cfg.train.steps > 1000  # a full-scale recipe, not a toy
    crop = (224, 224) if model == "teacher" else (64, 96)
    overrides = [
        *sets,
        f"data.root={data}",
        f"data.gt_root={data}",
        f"data.eval_root={data}",
        f"data.eval_gt_root={data}",
        f"data.train_list={data / 'train_files.txt'}",
        "data.test_list=",
        "data.val_list=",  # no eval: one step only
        "data.batch_size=2",
        "data.num_workers=0",
        f"data.augment.crop_height={crop[0]}",
        f"data.augment.crop_width={crop[1]}",
        "train.steps=1",
        "train.eval_every=0",
        "train.log_every=1",
        "data.use_right=false",  # the stub writes image_02 only
    ]
    if cfg.model.pretrained == "timm":
        overrides.append("model.pretrained=none")
    if cfg.teacher.pretrained == "timm":
        overrides.append("teacher.pretrained=none")
    args = ["train", *(x for f in files for x in ("--config", str(f))), "--run-dir", str(run), "--model", model]
    for item in overrides:
        args += ["--set", item]
    torch.manual_seed(0)
    assert main(args) == 0
    assert (run / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize(("dataset", "name", "sets"), STUDENT_RUNS, ids=[f"{d}-{n}" for d, n, _ in STUDENT_RUNS])
def test_student_builds_and_steps(dataset, name, sets, stub_data, tmp_path):
    _one_step([CONFIGS / dataset / "student.yaml"], sets, dataset, "student", stub_data[dataset], tmp_path / "run")


def test_every_teacher_file_composes_with_every_dataset_and_is_stepped():
    assert set(TEACHER_RUNS) == {p.stem for p in TEACHERS}
    assert set(TEACHER_RUNS.values()) == set(DATASETS) and {d for d, _, _ in STUDENT_RUNS} == set(DATASETS)
    for dataset in DATASETS:
        for teacher in TEACHERS:
            cfg = load_config([CONFIGS / dataset / "base.yaml", teacher])
            assert cfg.data.dataset == dataset and cfg.teacher.max_depth == cfg.model.max_depth == cfg.eval.max_depth


@pytest.mark.parametrize(
    ("teacher", "dataset"), TEACHER_RUNS.items(), ids=[f"{d}-{t}" for t, d in TEACHER_RUNS.items()]
)
def test_teacher_builds_and_steps(teacher, dataset, stub_data, tmp_path):
    files = [CONFIGS / dataset / "base.yaml", CONFIGS / "teachers" / f"{teacher}.yaml"]
    cfg = load_config(files)
    if cfg.teacher.kind == "hf":
        assert "/" in cfg.teacher.name  # a hub id; loading needs the hub (tested with local folders elsewhere)
        return
    _one_step(files, [], dataset, "teacher", stub_data[dataset], tmp_path / "run")
