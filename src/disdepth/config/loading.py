"""Loading configs: YAML deltas over the dataclass defaults, ``base:`` chains and ``recipe:NAME``, ``--set a.b=v``,
type checking with one error naming the dotted key, and the dict/YAML round trips."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from disdepth.config.schema import Config, ConfigError
from disdepth.config.validation import check_ranges


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked (and minimally converted) against type ``tp``, or raise ConfigError."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads on/off/yes/no as booleans: take the option spelled that way
            spellings = ("on", "yes", "true") if value else ("off", "no", "false")
            spelled = [o for o in get_args(tp) if isinstance(o, str) and o.lower() in spellings]
            value = spelled[0] if len(spelled) == 1 else value
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept any text float() accepts.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


# Keys that existed only for experiments the measurements rejected, with the value that means "not used". Run folders
# and checkpoints saved before they were retired store them (a full config dump): at that value they are dropped,
# so those runs keep loading; any other value is refused, naming the key, since no code builds that model any more.
RETIRED_KEYS: dict[str, tuple[Any, str]] = {
    "model.head_upsample": (1, "a learned pixel-shuffle upsampling in the head: no faster, no more accurate"),
    "model.decoder_finest_stride": (2, "decoding stopped above stride 2: 6.7 % worse abs_rel on the 7-Scenes frames"),
}


def _retired(full: str, value: Any) -> bool:
    """True when ``full`` is a retired key at its unused value (skip it); raises when it asks for the retired model."""
    if full not in RETIRED_KEYS:
        return False
    unused, why = RETIRED_KEYS[full]
    if value == unused:
        return True
    raise ConfigError(
        f"{full}={value!r}: this setting was retired ({why}); only {unused!r} loads now — "
        "a run made with it needs disdepth 0.2"
    )


def _merge(obj: Any, delta: dict[str, Any], prefix: str = "") -> None:
    """Apply a nested dict of changes to dataclass ``obj`` in place, checking every key and type."""
    if not isinstance(delta, dict):
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: expected a mapping, got {delta!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in delta.items():
        full = f"{prefix}{key}"
        if key not in names:
            if _retired(full, value):
                continue
            raise ConfigError(f"{full}: unknown key; allowed keys here: {', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


RECIPE_PREFIX = "recipe:"


def resolve_config_path(ref: str | Path, relative_to: Path | None = None) -> Path:
    """The file a config reference names.

    ``recipe:NAME`` is ``NAME.yaml`` shipped inside the package (``disdepth.recipes``; ``configs/`` is not
    installed); any other text is a path, taken relative to ``relative_to`` (the folder of the file that names it
    as ``base:``) unless absolute, else relative to the working directory.
    """
    text = str(ref)
    if not text.startswith(RECIPE_PREFIX):
        path = Path(text).expanduser()
        return path if relative_to is None or path.is_absolute() else relative_to / path
    from importlib import resources

    name = text[len(RECIPE_PREFIX) :]
    folder = resources.files("disdepth.recipes")
    if re.fullmatch(r"[A-Za-z0-9_-]+", name) and (folder / f"{name}.yaml").is_file():
        return Path(str(folder / f"{name}.yaml"))
    known = sorted(RECIPE_PREFIX + p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
    raise ConfigError(f"{text}: no such packaged recipe; known: {', '.join(known)}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """Read a YAML delta and its ``base:`` chain; returns deltas in application order."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to this file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = f"0x{raw[exc.start]:02x}"
        raise ConfigError(f"{path}: not UTF-8 text (byte {byte} on line {line}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys")
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a file name or recipe:NAME, got {base!r}")
    chain = _read_yaml(resolve_config_path(base, path.parent), (*seen, path)) if base else []
    return [*chain, data]


def _names_itself_after_a_recipe(path: str | Path, deltas: list[dict[str, Any]]) -> bool:
    """True when ``path`` is the user's own file (not ``recipe:``), sets no ``name`` itself, and its ``base:`` chain
    reaches a packaged recipe that does: the run then takes the file's name instead of the recipe's."""
    if str(path).startswith(RECIPE_PREFIX) or "name" in deltas[-1]:
        return False
    return any("name" in d for d in deltas[:-1]) and _reaches_recipe(Path(str(path)))


def _reaches_recipe(path: Path) -> bool:
    """Whether ``path``'s ``base:`` chain names a ``recipe:`` (read again: a chain is a few small files)."""
    for _ in range(32):  # the chain is loop-checked by _read_yaml; this only bounds the walk
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return False
        base = data.get("base") if isinstance(data, dict) else None
        if not isinstance(base, str):
            return False
        if base.startswith(RECIPE_PREFIX):
            return True
        path = resolve_config_path(base, path.parent)
    return False


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; value is parsed as YAML (1, 1e-3, [1,2], true)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. model.encoder=resnet18")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {text!r}: empty part in key {key!r} (write it like model.encoder)")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(
    paths: str | Path | list[str | Path] | None = None,
    overrides: list[str] | None = None,
    base: Config | None = None,
) -> Config:
    """Resolve a config: defaults (or ``base``) -> YAML files in order -> ``--set`` overrides.

    A path may be ``recipe:NAME``, a recipe shipped inside the package (e.g. ``recipe:demo``).

    Raises:
        ConfigError: naming the dotted key (and the file) for unknown keys or wrong types.
    """
    cfg = base if base is not None else Config()
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        deltas = _read_yaml(resolve_config_path(path))
        for delta in deltas:
            try:
                _merge(cfg, delta)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        if _names_itself_after_a_recipe(path, deltas):
            cfg.name = Path(str(path)).stem  # a user's file built on recipe:demo is the user's run, not the demo
    for text in overrides or []:
        _merge(cfg, parse_override(text))
    return check_ranges(cfg)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from ``to_dict`` output (e.g. the copy stored in a checkpoint)."""
    cfg = Config()
    _merge(cfg, data)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def flat_dict(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: dotted keys, as ``--set`` names them (for diffs between configs)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_keys(before: Config, after: Config) -> list[str]:
    """The dotted keys whose value differs between two configs, sorted (for refusing a resume or a stale stage)."""
    old, new = flat_dict(to_dict(before)), flat_dict(to_dict(after))
    return sorted(k for k in new if new[k] != old.get(k))


def dump_yaml(cfg: Any) -> str:
    """The fully resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_yaml(cfg))
    tmp.replace(path)
    return path
