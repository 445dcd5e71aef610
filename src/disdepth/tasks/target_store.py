"""Teacher targets on disk: the teacher runs once per image and view for a whole dataset, on any number of ranks.

The in-memory cache (``tasks/teacher_cache.py``) keeps targets per process and is bounded by
``distill.cache_max_gb``; at NYU or KITTI size most images do not fit, and under ``torchrun`` every rank fills its own.
A store is written once (``disdepth teach``) and read by every later distillation, on every rank, memory-mapped:

    STORE/identity.json          what made it: teacher weights (SHA-256), targets, levels, normalisation, frames
    STORE/views.json             the planned views [[sample id, mirrored], ...] and the shard size
    STORE/shard-00000.safetensors   per view: features f<level> (fp16), attention scores s<level> (fp32), depth
                                    (fp16), relative (fp32, relative teachers); metadata: the views and frame sizes
    STORE/shard-00000.done       bytes and SHA-256 of the finished shard

A view is one un-augmented training frame as the teacher saw it, or its mirror image (when training flips): a
flipped sample reads its mirrored view, whose features are not the mirrored features (tasks/teacher_cache.py). The
targets are the :class:`~disdepth.tasks.teacher_cache.CachedTargets` the in-memory cache holds, warped the same way.

Sharding: shard ``k`` holds views ``[k * n, (k + 1) * n)`` and rank ``r`` of ``W`` computes the shards with
``k % W == r``, in fixed batches, so the files do not depend on how many processes wrote them. A shard is written to a
temporary name and renamed, then its ``.done`` record is written: a shard without a matching record (a crash, a
truncated copy) is computed again, never read; a finished one is never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from disdepth.tasks.teacher_cache import CachedTargets

log = logging.getLogger(__name__)

STORE_FORMAT = 1
IDENTITY_FILE, VIEWS_FILE = "identity.json", "views.json"
View = tuple[str, bool]  # (sample id, mirrored)


class StoreError(ValueError):
    """A store that cannot be used: another teacher or setting made it, or a shard is damaged (the message says)."""


def weights_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes, in name order): the teacher's identity,
    whatever file or hub id it came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 0-dim buffers too
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def plan_views(ids: list[str], mirrored: bool) -> list[View]:
    """Every frame's view, and its mirror image after it when training flips: the order shards are cut from."""
    return [(k, m) for k in ids for m in ((False, True) if mirrored else (False,))]


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` to a temporary name beside ``path``, flushed to disk, then renamed: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates 0600 files; a shared store is read by every rank
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_json(path: Path, data: dict) -> None:
    _write_atomically(path, lambda p: p.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n"))


def differences(found: dict, wanted: dict, prefix: str = "") -> list[str]:
    """``key: store has X, this run wants Y`` for every key whose value differs (nested dicts by dotted key)."""
    out = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: store has {a!r}, this run wants {b!r}")
    return out


@dataclass
class ShardRecord:
    """What a finished shard's ``.done`` file says: its size and SHA-256."""

    bytes: int
    sha256: str


def _done_record(store: Path, k: int) -> ShardRecord | None:
    path = store / f"{shard_name(k)}.done"
    try:
        data = json.loads(path.read_text())
        return ShardRecord(int(data["bytes"]), str(data["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shard_finished(store: Path, k: int, verify_hash: bool = False) -> bool:
    """True when shard ``k`` is complete: its ``.done`` record exists and the file has its size (and hash)."""
    record = _done_record(store, k)
    path = store / f"{shard_name(k)}.safetensors"
    if record is None or not path.is_file() or path.stat().st_size != record.bytes:
        return False
    return not verify_hash or _file_sha256(path) == record.sha256


@dataclass
class TeachReport:
    """What one process did in :func:`write_store` (its share of the shards)."""

    shards: int  # shards in the store
    computed: int  # shards this process computed
    skipped: int  # shards this process found finished and left alone
    views_computed: int  # teacher runs (views) of this process


def write_store(
    store: str | Path,
    identity: dict,
    views: list[View],
    compute: Callable[[list[View]], list[CachedTargets]],
    rank: int = 0,
    world_size: int = 1,
    views_per_shard: int = 64,
    batch_size: int = 8,
    on_shard: Callable[[int], None] | None = None,
) -> TeachReport:
    """Compute this rank's share of the store's shards (those not finished yet) and write them atomically.

    Args:
        store: the store folder (created).
        identity: what the targets depend on (:func:`~disdepth.pipeline.stages.store_identity`); a store made with
            another identity or another view plan is refused, naming every difference.
        views: every view of the dataset (:func:`plan_views`), the same list on every rank.
        compute: views (one batch, at most ``batch_size``) -> their targets, in order (the teacher runs here).
        rank, world_size: this process's share: shards ``k`` with ``k % world_size == rank``.
        views_per_shard: views per shard file.
        batch_size: views per ``compute`` call (one teacher batch).
        on_shard: called with each shard index this process finished (progress, tests).

    Raises:
        StoreError: the folder holds a store of another identity or view plan.
    """
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    plan = {"format": STORE_FORMAT, "views_per_shard": views_per_shard, "views": [[k, m] for k, m in views]}
    _claim(store / IDENTITY_FILE, identity, "was made by another teacher or setting")
    _claim(store / VIEWS_FILE, plan, "plans other views (another dataset, flips or shard size)")
    n_shards = (len(views) + views_per_shard - 1) // views_per_shard
    report = TeachReport(n_shards, 0, 0, 0)
    for k in range(rank, n_shards, world_size):
        if shard_finished(store, k, verify_hash=True):
            report.skipped += 1
            continue
        shard_views = views[k * views_per_shard : (k + 1) * views_per_shard]
        targets = []
        for i in range(0, len(shard_views), batch_size):
            batch = shard_views[i : i + batch_size]
            targets += compute(batch)
            report.views_computed += len(batch)
        _write_shard(store, k, shard_views, targets)
        report.computed += 1
        if on_shard is not None:
            on_shard(k)
    return report


def _claim(path: Path, wanted: dict, what: str) -> None:
    """Write ``wanted`` to ``path`` if absent; refuse a different one already there (every rank writes the same)."""
    if path.is_file():
        found = json.loads(path.read_text())
        if found != json.loads(json.dumps(wanted)):
            diff = differences(found, wanted) if path.name == IDENTITY_FILE else []
            detail = "; ".join(diff) if diff else "its view list differs"
            raise StoreError(f"{path.parent}: this store {what}: {detail}; use another folder or delete this one")
        return
    _write_json(path, wanted)


def _write_shard(store: Path, k: int, views: list[View], targets: list[CachedTargets]) -> None:
    """One shard file (tensors per slot, views and sizes in its metadata), then its ``.done`` record."""
    tensors: dict[str, torch.Tensor] = {}
    meta = []
    for slot, (view, t) in enumerate(zip(views, targets, strict=True)):
        for level, f in enumerate(t.features):
            tensors[f"{slot}.f{level}"] = f.contiguous()
        for level, s in enumerate(t.scores):
            tensors[f"{slot}.s{level}"] = s.contiguous()
        tensors[f"{slot}.depth"] = t.depth.contiguous()
        if t.relative is not None:
            tensors[f"{slot}.relative"] = t.relative.contiguous()
        meta.append([view[0], view[1], len(t.features), len(t.scores), *t.size])
    path = store / f"{shard_name(k)}.safetensors"
    _write_atomically(path, lambda p: save_file(tensors, str(p), metadata={"views": json.dumps(meta)}))
    _write_json(store / f"{shard_name(k)}.done", {"bytes": path.stat().st_size, "sha256": _file_sha256(path)})


class TargetStore:
    """A finished store, read memory-mapped: :meth:`get` returns one view's targets without loading the rest.

    Args:
        path: the store folder.
        identity: what this run would compute; a store made otherwise is refused (None: not checked).
        max_open: shard files kept open at once (each open shard is one memory map, whose pages read so far count
            as the process's file-backed resident memory; closing the least recently used bounds it).

    Raises:
        StoreError: no store there, another identity, or unfinished shards (naming them and how to finish them).
    """

    def __init__(self, path: str | Path, identity: dict | None = None, max_open: int = 8) -> None:
        self.path = Path(path)
        try:
            found = json.loads((self.path / IDENTITY_FILE).read_text())
            plan = json.loads((self.path / VIEWS_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.path}: not a teacher-target store ({exc}); make one with disdepth teach") from None
        if identity is not None and (diff := differences(found, identity)):
            raise StoreError(f"{self.path}: the store was made by another teacher or setting: {'; '.join(diff)}")
        self.identity = found
        n = int(plan["views_per_shard"])
        self.slots: dict[View, tuple[int, int]] = {
            (str(k), bool(m)): (i // n, i % n) for i, (k, m) in enumerate(plan["views"])
        }
        self.n_shards = (len(self.slots) + n - 1) // n
        unfinished = [k for k in range(self.n_shards) if not shard_finished(self.path, k)]
        if unfinished:
            names = ", ".join(shard_name(k) for k in unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
            raise StoreError(
                f"{self.path}: {len(unfinished)} of {self.n_shards} shards are unfinished or damaged ({names}); "
                "run disdepth teach again with the same settings to finish them"
            )
        self.max_open = max_open
        self._open: OrderedDict[int, tuple[object, list, set[str]]] = OrderedDict()
        self.reads = 0

    def __len__(self) -> int:
        return len(self.slots)

    def _shard(self, k: int) -> tuple[object, list, set[str]]:
        """Shard ``k`` opened (a memory map), its per-slot metadata and tensor names; the least recently used of
        more than ``max_open`` open shards is closed."""
        opened = self._open.get(k)
        if opened is None:
            path = self.path / f"{shard_name(k)}.safetensors"
            try:
                handle = safe_open(str(path), framework="pt")
                opened = handle, json.loads(handle.metadata()["views"]), set(handle.keys())
            except Exception as exc:  # safetensors raises its own error types for a damaged header
                raise StoreError(f"{path}: damaged shard ({exc}); run disdepth teach again to recompute it") from None
            self._open[k] = opened
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
        self._open.move_to_end(k)
        return opened

    def get(self, view: View) -> CachedTargets | None:
        """The targets of ``view`` (CPU tensors), or None when the store does not hold it."""
        where = self.slots.get(view)
        if where is None:
            return None
        k, slot = where
        shard, metadata, names = self._shard(k)
        meta = metadata[slot]  # [id, mirrored, n_features, n_scores, H, W]
        if (meta[0], meta[1]) != view:
            raise StoreError(f"{self.path / shard_name(k)}: slot {slot} holds {meta[:2]}, expected {list(view)}")
        n_features, n_scores, h, w = meta[2:]
        relative = shard.get_tensor(f"{slot}.relative") if f"{slot}.relative" in names else None
        self.reads += 1
        return CachedTargets(
            [shard.get_tensor(f"{slot}.f{i}") for i in range(n_features)],
            [shard.get_tensor(f"{slot}.s{i}") for i in range(n_scores)],
            shard.get_tensor(f"{slot}.depth"),
            relative,
            (int(h), int(w)),
        )
