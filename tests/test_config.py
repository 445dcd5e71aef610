"""Config system: defaults, YAML deltas, --set overrides, errors that name the key."""

from __future__ import annotations

import pytest

from disdepth.cli import main
from disdepth.config import Config, ConfigError, config_from_dict, load_config, parse_override, save_config, to_dict


def test_defaults_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("model:\n  encoder: resnet18\n  pretrained: none\n  lgconv:\n    enabled: true\n")
    cfg = load_config(tmp_path / "a.yaml", ["model.head=bins", "model.max_depth=80", "train.lr=1e-3"])
    assert cfg.model.encoder == "resnet18" and cfg.model.lgconv.enabled
    assert cfg.model.head == "bins"
    assert cfg.model.max_depth == 80.0 and isinstance(cfg.model.max_depth, float)
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model.n_bins == Config().model.n_bins  # untouched keys keep defaults


def test_on_off_options_survive_yaml_booleans(tmp_path):
    """YAML 1.1 reads on/off as booleans; a choice whose options are "on"/"off" still gets the string, from --set and
    from a file, and a plain boolean is still refused for a choice that has no such spelling."""
    assert load_config(overrides=["distill.cache_teacher=off"]).distill.cache_teacher == "off"
    (tmp_path / "a.yaml").write_text("distill:\n  cache_teacher: on\n")
    assert load_config(tmp_path / "a.yaml").distill.cache_teacher == "on"
    with pytest.raises(ConfigError, match="model.head"):
        load_config(overrides=["model.head=off"])


def test_base_chain_and_later_wins(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  encoder: resnet18\n  pretrained: none\n  max_depth: 10\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nmodel:\n  max_depth: 80\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.model.encoder, cfg.model.max_depth) == ("resnet18", 80.0)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.encodr=resnet18", "model.encodr: unknown key; allowed keys here: encoder"),
        ("model.head=softmax", "model.head: expected one of 'sigmoid', 'bins'"),
        ("model.n_bins=many", "model.n_bins: expected int"),
        ("model.n_bins=2.5", "model.n_bins: expected int"),
        ("model.lgconv.enabled=3", "model.lgconv.enabled: expected bool"),
        ("model.lgconv.strides=[16, x]", "model.lgconv.strides[1]: expected int"),
        ("model.lgconv=1", "model.lgconv: expected a mapping"),
        ("nothing", "expected KEY=VALUE"),
    ],
)
def test_errors_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert fragment in str(err.value)


def test_yaml_error_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  max_depth: deep\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: model.max_depth: expected float"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_dict_and_file(tmp_path):
    cfg = load_config(overrides=["model.encoder=resnet34", "model.pretrained=timm", "model.lgconv.strides=[8,16,32]"])
    assert config_from_dict(to_dict(cfg)) == cfg
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg


def test_parse_override_nests():
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}


def test_cli_print_config_and_bad_key(capsys):
    assert main(["bench", "--print-config", "--set", "model.encoder=resnet18", "--set", "model.pretrained=timm"]) == 0
    assert "encoder: resnet18" in capsys.readouterr().out
    assert main(["bench", "--print-config", "--set", "model.nope=1"]) == 2
    assert "model.nope: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("data.batch_size=0", "data.batch_size: must be >= 1, got 0"),
        ("data.num_workers=-1", "data.num_workers: must be >= 0"),
        ("train.steps=0", "train.steps: must be >= 1"),
        ("train.log_every=0", "train.log_every: must be >= 1"),
        ("train.eval_every=-1", "train.eval_every: must be >= 0"),
        ("train.checkpoint_every=-5", "train.checkpoint_every: must be >= 0"),
        ("train.lr=0", "train.lr: must be finite and > 0, got 0.0"),
        ("train.lr=.nan", "train.lr: must be finite and > 0, got nan"),
        ("train.lr=inf", "train.lr: must be finite and > 0, got inf"),
        ("train.encoder_lr_scale=-0.1", "train.encoder_lr_scale: must be finite and >= 0"),
        ("train.weight_decay=-1e-2", "train.weight_decay: must be finite and >= 0"),
        ("train.ema_decay=1.0", "train.ema_decay: must be in [0, 1)"),
        ("train.max_bad_steps=0", "train.max_bad_steps: must be >= 1"),
        ("train.warmup_steps=-1", "train.warmup_steps: must be >= 0"),
        ("model.min_depth=0", "model.min_depth/max_depth: must be 0 < min_depth < max_depth (metres), got 0.0..10.0"),
        ("model.max_depth=1e-4", "model.min_depth/max_depth: must be 0 < min_depth < max_depth"),
        ("teacher.max_depth=.inf", "teacher.min_depth/max_depth: must be 0 < min_depth < max_depth"),
        ("eval.min_depth=-1", "eval.min_depth: must be > 0 (metres) or null, got -1.0"),
        ("data.depth_scale=-256", "data.depth_scale: must be finite and >= 0 (0 = dataset default), got -256.0"),
        ("data.depth_scale=.nan", "data.depth_scale: must be finite and >= 0"),
        ("eval.pred_scale=-1", "eval.pred_scale: must be finite and >= 0"),
        ("distill.levels=[]", "distill.levels: must be a non-empty list of encoder strides"),
        ("distill.levels=[4,12]", "distill.levels: must be a non-empty list of encoder strides (powers of two"),
        ("distill.levels=[0]", "distill.levels: must be"),
        ("distill.feature_weight=-1", "distill.feature_weight: must be finite and >= 0"),
        ("distill.response_weight=.inf", "distill.response_weight: must be finite and >= 0"),
        ("distill.tau=0", "distill.tau: must be finite and > 0"),
        ("bench.resolutions=[[480, 640], [0, 10]]", "bench.resolutions[1]: must be [height, width] in pixels"),
        ("bench.resolutions=[[480]]", "bench.resolutions[0]: must be [height, width]"),
        ("pipeline.teacher.steps=-1", "pipeline.teacher.steps: must be >= 0 (0 = train.steps)"),
        ("pipeline.distill.lr=-1e-4", "pipeline.distill.lr: must be finite and >= 0 (0 = train.lr)"),
        ("pipeline.acclimate.batch_size=-2", "pipeline.acclimate.batch_size: must be >= 0"),
    ],
)
def test_out_of_range_values_name_the_key_and_range(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_range_limits_that_stay_valid(tmp_path):
    """The documented zeros (off / inherit / only at the end) and eval caps left to the protocol load fine."""
    cfg = load_config(
        overrides=[
            "train.eval_every=0",
            "train.checkpoint_every=0",
            "train.ema_decay=0",
            "train.warmup_steps=0",
            "data.num_workers=0",
            "data.depth_scale=0",
            "pipeline.teacher.steps=0",
            "pipeline.teacher.lr=0",
            "eval.min_depth=0.5",
            "eval.max_depth=.inf",
            "distill.levels=[8]",
        ]
    )
    assert cfg.train.eval_every == 0 and cfg.eval.max_depth == float("inf")
    (tmp_path / "bad.yaml").write_text("train:\n  steps: 0\n  lr: 0\n")
    with pytest.raises(ConfigError, match=r"train.steps: must be >= 1, got 0; train.lr: must be finite and > 0"):
        load_config(tmp_path / "bad.yaml")  # every bad key in one line


def test_cli_out_of_range_is_one_line(capsys):
    assert main(["bench", "--print-config", "--set", "data.batch_size=0"]) == 2
    out, err = capsys.readouterr()
    assert err == "disdepth: config error: data.batch_size: must be >= 1, got 0\n" and "Traceback" not in out
