"""Typed configuration: dataclass defaults, YAML files holding only the changes, ``--set a.b=v`` last.

Resolution order (later wins): dataclass defaults -> each YAML file in order -> ``--set`` overrides.
A YAML file may name a ``base:`` file (relative to itself) that it changes; ``recipe:NAME`` (as a file or a
``base:``) is the recipe ``NAME.yaml`` shipped inside the package (``disdepth.recipes``). Every key is checked
against the dataclass field it targets: an unknown key or a value of the wrong type raises
:class:`ConfigError` naming the full dotted key and what is allowed; every value is then range-checked.

Three modules: ``schema`` (the dataclasses), ``loading`` (YAML, merging, ``--set``, dict and YAML round trips) and
``validation`` (the ranges). Models never see these objects; builders (``disdepth.models.student.build_student``
...) turn a section into explicit constructor arguments.
"""

from disdepth.config.loading import (
    RECIPE_PREFIX,
    changed_keys,
    config_from_dict,
    dump_yaml,
    flat_dict,
    load_config,
    parse_override,
    resolve_config_path,
    save_config,
    to_dict,
)
from disdepth.config.schema import (
    PIPELINE_STAGES,
    AcclimateConfig,
    AugmentConfig,
    BenchConfig,
    Config,
    ConfigError,
    DataConfig,
    DistillConfig,
    EvalConfig,
    LGConvConfig,
    ModelConfig,
    PipelineConfig,
    StageBudget,
    SyntheticConfig,
    TeacherConfig,
    TrainConfig,
    stage_config,
)
from disdepth.config.validation import MAX_STEPS, MAX_WIDTH, check_ranges

__all__ = [
    "MAX_STEPS", "MAX_WIDTH", "PIPELINE_STAGES", "RECIPE_PREFIX", "AcclimateConfig", "AugmentConfig", "BenchConfig",
    "Config", "ConfigError", "DataConfig", "DistillConfig", "EvalConfig", "LGConvConfig", "ModelConfig",
    "PipelineConfig", "StageBudget", "SyntheticConfig", "TeacherConfig", "TrainConfig", "changed_keys",
    "check_ranges", "config_from_dict", "dump_yaml", "flat_dict", "load_config", "parse_override",
    "resolve_config_path", "save_config", "stage_config", "to_dict",
]  # fmt: skip
