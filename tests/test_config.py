"""Config system: defaults, YAML deltas, --set overrides, errors that name the key."""

from __future__ import annotations

import pytest

from disdepth.cli import main
from disdepth.config import Config, ConfigError, config_from_dict, load_config, parse_override, save_config, to_dict


def test_defaults_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("model:\n  encoder: resnet18\n  lgconv:\n    enabled: true\n")
    cfg = load_config(tmp_path / "a.yaml", ["model.head=bins", "model.max_depth=80", "train.lr=1e-3"])
    assert cfg.model.encoder == "resnet18" and cfg.model.lgconv.enabled
    assert cfg.model.head == "bins"
    assert cfg.model.max_depth == 80.0 and isinstance(cfg.model.max_depth, float)
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model.n_bins == Config().model.n_bins  # untouched keys keep defaults


def test_base_chain_and_later_wins(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  encoder: resnet18\n  max_depth: 10\n")
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
    cfg = load_config(overrides=["model.encoder=resnet34", "model.lgconv.strides=[8,16,32]"])
    assert config_from_dict(to_dict(cfg)) == cfg
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg


def test_parse_override_nests():
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}


def test_cli_print_config_and_bad_key(capsys):
    assert main(["bench", "--print-config", "--set", "model.encoder=resnet18"]) == 0
    assert "encoder: resnet18" in capsys.readouterr().out
    assert main(["bench", "--print-config", "--set", "model.nope=1"]) == 2
    assert "model.nope: unknown key" in capsys.readouterr().err
