"""Student distillation (docs/method.md §5): depth loss + attentive KD to acclimated teacher features.

The trainable part is a :class:`DistilledStudent` (the student plus, for classic feature KD only, student-side
1x1 adapters). The teacher side (a frozen :class:`~disdepth.tasks.acclimation.AcclimatedTeacher`, or a raw
frozen teacher for classic KD / response KD) lives on the task outside ``task.model``, so DDP never wraps it,
and runs under ``torch.no_grad()``. Teacher targets can be cached per sample id: the teacher then runs once per
training image instead of once per step, also with augmentation on (``tasks/teacher_cache.py``: targets of the
un-augmented frame, warped by each sample's recorded geometry).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.checkpoint import CheckpointKind
from disdepth.models.spec import InputSpec
from disdepth.models.student import DepthStudent
from disdepth.tasks.acclimation import AcclimatedTeacher, teacher_level_for
from disdepth.tasks.kd_losses import (
    DISTANCES,
    attentive_feature_loss,
    match_size,
    softmax_positions,
    standardize_channels,
    uniform_attention,
)
from disdepth.tasks.losses import resize_like, silog_loss
from disdepth.tasks.pseudo import TeacherTarget, loss_to_teacher, target_of, unlabelled
from disdepth.tasks.supervised import ParamGroup, Task, checked_depth_loss, depth_losses, pretrained_groups
from disdepth.tasks.target_store import TargetStore, View
from disdepth.tasks.teacher_cache import GIB, CachedTargets, grid_size, warp_map

log = logging.getLogger(__name__)


class DistilledStudent(DepthStudent):
    """A student that also returns the features it distils (``kd_features``, one per distilled stride).

    Shares the student's encoder/decoder/head (same parameter names, so the engine's encoder learning-rate
    scale applies). ``adapters`` (classic feature KD only) map student channels to the teacher's; they are
    training-only and dropped by :meth:`to_student`.
    """

    def __init__(self, student: DepthStudent, kd_strides: list[int], adapters: nn.ModuleDict | None = None) -> None:
        super().__init__(student.encoder, student.decoder, student.head)
        self.copy_attributes(student)
        strides = [f.stride for f in student.feature_info]
        missing = [s for s in kd_strides if s not in strides]
        if missing:
            raise ValueError(f"distill.levels {missing} are not student encoder strides {strides}")
        self.kd_strides = list(kd_strides)
        self.kd_index = [strides.index(s) for s in kd_strides]
        self.adapters = adapters if adapters is not None else nn.ModuleDict()

    def forward(self, image: torch.Tensor) -> dict:
        out = super().forward(image)
        feats = [out["encoder_features"][i] for i in self.kd_index]
        if len(self.adapters):
            feats = [self.adapters[str(s)](f) for s, f in zip(self.kd_strides, feats, strict=True)]
        out["kd_features"] = feats
        return out

    def to_student(self) -> DepthStudent:
        """The deployable student (shares modules; no adapters)."""
        return DepthStudent(self.encoder, self.decoder, self.head).copy_attributes(self)


class TeacherTargets(nn.Module):
    """Computes (and optionally caches) per-level KD targets, attention maps and teacher depth for a batch.

    With ``cache`` the teacher runs once per training image (``tasks/teacher_cache.py``): on the frame itself when
    the batch has no augmentation geometry, else on the un-augmented frame that ``source`` loads by id (and once
    more on its mirror image, the first time a flipped sample of it comes), whose targets are then warped by each
    sample's recorded geometry. Cached maps are float16 on the CPU; once they reach ``max_cache_bytes``, images not
    yet cached have their targets computed on the augmented sample every time (as without a cache).

    With a ``store`` (``tasks/target_store.py``, written by ``disdepth teach``) the targets of every view it holds
    are read from disk, memory-mapped and warped alike; nothing read from it is kept in memory, and the teacher runs
    only for views the store lacks. ``views_computed`` counts the teacher's runs (one per frame view or sample).

    Args:
        teacher: an :class:`AcclimatedTeacher` (feature_target=acclimated) or a raw ``Teacher`` (raw / none).
        kd_strides: student strides distilled.
        student_spec: the student's input spec (a raw teacher re-normalises the student's input).
        feature_target: "acclimated" (FAM outputs), "raw" (teacher features) or "none" (``distill.feature_target``).
        attention: "magnitude", "saliency" or "none"; ``tau`` and ``attention_floor`` shape it (``distill.*``).
        cache: keep targets per sample id.
        variance_focus, silog_scale: the SILog of the saliency gradient.
        source: sample id -> its un-augmented frame (:func:`~disdepth.tasks.teacher_cache.frame_source`); without
            it a batch with augmentation geometry is computed afresh.
        max_cache_bytes: bound of the cache (``distill.cache_max_gb``); 0 = no bound.
        store: a finished teacher-target store made with this side's identity (``distill.target_store``).
    """

    def __init__(
        self,
        teacher: nn.Module,
        kd_strides: list[int],
        student_spec: InputSpec,
        feature_target: str = "acclimated",
        attention: str = "magnitude",
        tau: float = 1.0,
        attention_floor: float = 0.0,
        cache: bool = False,
        variance_focus: float = 0.85,
        silog_scale: float = 10.0,
        source: Callable[[str], dict] | None = None,
        max_cache_bytes: int = 0,
        store: TargetStore | None = None,
    ) -> None:
        super().__init__()
        self.teacher, self.kd_strides, self.student_spec = teacher, list(kd_strides), student_spec
        self.feature_target, self.attention = feature_target, attention
        self.tau, self.attention_floor = tau, attention_floor
        self.use_cache, self.source = cache, source
        self.cache: dict[str, dict[bool, CachedTargets]] = {}  # sample id -> {mirrored: targets of that frame}
        self.max_cache_bytes, self.cache_bytes, self.cache_full = max_cache_bytes, 0, False
        self.store, self.views_computed = store, 0
        self._warned = False
        self.variance_focus, self.silog_scale = variance_focus, silog_scale
        self.acclimated = isinstance(teacher, AcclimatedTeacher)
        if feature_target == "acclimated" and not self.acclimated:
            raise ValueError(
                "distill.feature_target=acclimated needs an acclimated teacher (distill.acclimated_checkpoint)"
            )
        if attention == "saliency" and not self.acclimated:
            raise ValueError("distill.attention=saliency needs the ghost decoder of an acclimated teacher")
        # The stride of each target map: the student's for FAM outputs, the feeding teacher level's for raw features.
        raw = teacher.teacher if self.acclimated else teacher
        t_strides = [f.stride for f in raw.feature_info]
        self.map_strides = (
            list(kd_strides)
            if feature_target == "acclimated"
            else [t_strides[teacher_level_for(s, t_strides)] for s in kd_strides]
        )

    def train(self, mode: bool = True) -> TeacherTargets:
        # The teacher side never trains here: keep FAM/teacher BN statistics fixed when the task calls .train().
        return super().train(False)

    def _attention(self, feats: list[torch.Tensor], scores: list[torch.Tensor]) -> list[torch.Tensor]:
        """(B, 1, h, w) weights per level, each image summing to 1, from the scores of :meth:`targets`."""
        if self.attention == "none":
            return [uniform_attention(f) for f in feats]
        return [softmax_positions(s, self.tau, self.attention_floor) for s in scores]

    def _saliency_grads(self, acclimated: list[torch.Tensor], index: list[int], batch: dict) -> list[torch.Tensor]:
        """d SILog(ghost(acclimated), gt) / d acclimated, at the distilled levels (task-driven saliency).

        The SILog is each image's own (summed over the batch): a batch-pooled SILog couples the images, so an image's
        scores would depend on the batch it happened to be computed in, and cached or stored scores would not be
        the image's.
        """
        feats = [a.detach().requires_grad_(True) for a in acclimated]
        with torch.enable_grad():
            depth = self.teacher.ghost(feats, tuple(batch["image"].shape[-2:]))["depth"]
            gt, valid = batch["depth"], batch["valid"]
            depth = resize_like(depth, gt)
            loss = sum(
                silog_loss(depth[i : i + 1], gt[i : i + 1], valid[i : i + 1], self.variance_focus, self.silog_scale)
                for i in range(len(depth))
            )
            grads = torch.autograd.grad(loss, [feats[i] for i in index], allow_unused=True)
        return [g if g is not None else torch.zeros_like(feats[i]) for g, i in zip(grads, index, strict=True)]

    @torch.no_grad()
    def targets(self, batch: dict) -> dict:
        """The teacher's answer for a batch before attention: what the cache stores.

        Returns:
            {features: per-stride (B, C, h, w), scores: per-stride (B, 1, h, w) float32 attention scores (``mean_c
            t^2`` for magnitude, ``mean_c |dL/dt|`` for saliency; [] for none), depth: (B, 1, H, W) metres[,
            relative: (B, 1, H, W)]}.
        """
        image = batch["image"]
        if self.acclimated:
            out = self.teacher(image, with_ghost=False)  # targets need the acclimated features, not the ghost depth
            strides = [f.stride for f in self.teacher.student_info]
            index = [strides.index(s) for s in self.kd_strides]
            if self.feature_target == "acclimated":
                feats = [out["acclimated"][i] for i in index]
            else:
                t_strides = [f.stride for f in self.teacher.teacher.feature_info]
                feats = [out["teacher_features"][teacher_level_for(s, t_strides)] for s in self.kd_strides]
            grads = self._saliency_grads(out["acclimated"], index, batch) if self.attention == "saliency" else None
            depth, relative = out["teacher_depth"], out.get("teacher_relative")
        else:
            tout = self.teacher(self.teacher.input_spec.renormalize(image, self.student_spec))
            t_strides = [f.stride for f in self.teacher.feature_info]
            feats = [tout["features"][teacher_level_for(s, t_strides)] for s in self.kd_strides]
            target = target_of(tout, self.teacher, image)
            grads, depth, relative = None, target.depth, target.relative
        # The same reductions magnitude_attention / saliency_attention apply before their softmax.
        if self.attention == "magnitude":
            scores = [f.detach().float().pow(2).mean(1, keepdim=True) for f in feats]
        elif self.attention == "saliency":
            scores = [g.detach().float().abs().mean(1, keepdim=True) for g in grads or []]
        else:
            scores = []
        out = {"features": feats, "scores": scores, "depth": depth}
        if relative is not None:  # a relative teacher: depth targets use its raw output (tasks/pseudo.py)
            out["relative"] = relative
        return out

    def compute(self, batch: dict) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        """{features: per-stride targets, attention: (B, 1, h, w) per stride, depth: (B, 1, H, W) metres}."""
        self.views_computed += len(batch["image"])
        out = self.targets(batch)
        out["attention"] = self._attention(out["features"], out.pop("scores"))
        return out

    @property
    def space(self) -> str:
        """The relative space of the teacher's output (relative teachers)."""
        teacher = self.teacher.teacher if self.acclimated else self.teacher
        return teacher.input_spec.relative_space

    def forward(self, batch: dict) -> dict:
        if not self.use_cache and self.store is None:
            return self.compute(batch)
        geometry = batch.get("geometry")
        if geometry is not None and self.source is None and self.store is None:
            if not self._warned:
                log.warning("teacher cache: augmented batches but no source of un-augmented frames; not caching")
                self._warned = True
            return self.compute(batch)
        views = [_view(batch, i) for i in range(len(batch["id"]))]
        entries = {v: self.cache[v[0]][v[1]] for v in views if v[1] in self.cache.get(v[0], {})}
        if self.store is not None:
            entries.update({v: e for v in views if v not in entries and (e := self.store.get(v)) is not None})
        missing = [i for i, v in enumerate(views) if v not in entries]
        can_fill = self.use_cache and (geometry is None or self.source is not None)
        if missing and can_fill and not self.cache_full:
            entries.update(self._fill(batch, [views[i] for i in missing]))
        rows = [self._warp(entries[v], batch, i, v[1]) if v in entries else None for i, v in enumerate(views)]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:  # not stored and the cache is full (or off): computed on the augmented sample, as without a cache
            self.views_computed += len(todo)
            fresh = self.targets(_rows(batch, todo))
            for j, i in enumerate(todo):
                rows[i] = self._fresh_row(fresh, j, tuple(batch["image"].shape[-2:]))
        out = {
            "features": [torch.stack([r["features"][lv] for r in rows]) for lv in range(len(rows[0]["features"]))],
            "depth": torch.stack([r["depth"] for r in rows]),
        }
        if "relative" in rows[0]:
            out["relative"] = torch.stack([r["relative"] for r in rows])
        scores = [torch.stack([r["scores"][lv] for r in rows]) for lv in range(len(rows[0]["scores"]))]
        out["attention"] = self._attention(out["features"], scores)
        return out

    def _fresh_row(self, out: dict, j: int, out_hw: tuple[int, int]) -> dict:
        """Row ``j`` of :meth:`targets` output, float32, on the grids a warped cached row has."""

        def fit(t: torch.Tensor, stride: int) -> torch.Tensor:
            size, t = grid_size(*out_hw, stride), t[j : j + 1].float()
            if tuple(t.shape[-2:]) != size:  # a teacher that rounds its grid its own way
                t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
            return t[0]

        keep = self.feature_target != "none"  # as the cache stores them
        row = {
            "features": [fit(f, s) for f, s in zip(out["features"], self.map_strides, strict=True)] if keep else [],
            "scores": [fit(f, s) for f, s in zip(out["scores"], self.map_strides, strict=False)] if keep else [],
            "depth": fit(out["depth"], 1),
        }
        if "relative" in out:
            row["relative"] = fit(out["relative"], 1)
        return row

    def _fill(self, batch: dict, views: list[tuple[str, bool]]) -> dict[tuple[str, bool], CachedTargets]:
        """Run the teacher on the frames of ``views`` (id, mirrored) and cache them while the bound allows.

        Without augmentation geometry the batch rows are the frames; with it ``source`` loads each un-augmented
        frame (mirrored where the sample was flipped), and frames of one size run as one batch (a CSV's images
        may differ in size).
        """
        views = list(dict.fromkeys(views))  # an image can appear twice in a batch
        if "geometry" in batch:
            fresh = self.frame_targets(views, batch["image"].device)
        else:
            ids = [str(k) for k in batch["id"]]
            fresh = self._entries([(views, _rows(batch, [ids.index(k) for k, _ in views]))])
        for (k, mirrored), entry in fresh.items():
            if self.max_cache_bytes and self.cache_bytes + entry.nbytes > self.max_cache_bytes:
                self.cache_full = True
                log.warning(
                    "teacher cache full at %.2f GiB (distill.cache_max_gb): images not cached yet are computed on "
                    "each augmented sample", self.cache_bytes / GIB,
                )  # fmt: skip
                break
            self.cache.setdefault(k, {})[mirrored] = entry
            self.cache_bytes += entry.nbytes
        return fresh

    def frame_targets(self, views: list[View], device: torch.device) -> dict[View, CachedTargets]:
        """The teacher's targets of the un-augmented frames of ``views`` (id, mirrored), as the cache and the store
        keep them (``source`` loads each frame; frames of one size run as one batch)."""
        return self._entries(self._frames(views, device))

    def _entries(self, subs: list[tuple[list, dict]]) -> dict[View, CachedTargets]:
        """Run the teacher on each (views, batch) pair: one CPU :class:`CachedTargets` per view."""
        fresh: dict[tuple[str, bool], CachedTargets] = {}
        keep = self.feature_target != "none"  # response KD / pseudo-depth only: no feature maps to keep
        for sub_views, sub in subs:
            self.views_computed += len(sub_views)
            out = self.targets(sub)
            size = tuple(sub["image"].shape[-2:])
            for j, view in enumerate(sub_views):
                fresh[view] = CachedTargets(
                    [f[j].half().cpu() for f in out["features"]] if keep else [],
                    [s[j].float().cpu() for s in out["scores"]] if keep else [],
                    out["depth"][j].half().cpu(),
                    out["relative"][j].float().cpu() if "relative" in out else None,
                    size,  # type: ignore[arg-type]
                )
        return fresh

    def _frames(self, views: list[tuple[str, bool]], device: torch.device) -> list[tuple[list, dict]]:
        """The un-augmented frames of ``views`` as (views, batch) pairs, one batch per frame size, on ``device``."""
        keys = ("image", "depth", "valid")  # what the teacher and the saliency gradient read
        frames = []
        for k, mirrored in views:
            frame = self.source(k)  # type: ignore[misc]
            frames.append({n: frame[n].flip(-1) if mirrored else frame[n] for n in keys})
        groups: dict[tuple, list[int]] = {}
        for j, f in enumerate(frames):
            groups.setdefault(tuple(f["image"].shape), []).append(j)
        return [
            ([views[j] for j in js], {n: torch.stack([frames[j][n] for j in js]).to(device) for n in keys})
            for js in groups.values()
        ]

    def _warp(self, entry: CachedTargets, batch: dict, i: int, mirrored: bool) -> dict:
        """Row ``i`` of the batch from a cached frame: its maps warped by the row's geometry (float32, on device).

        A flipped sample reads the mirrored frame's entry (the teacher's features of a mirrored image are not the
        mirrored features: oriented filters swap channels), so only the flip-free rest of its geometry is warped.
        """
        device, out_hw = batch["image"].device, tuple(batch["image"].shape[-2:])
        geometry = batch.get("geometry")  # None: the sample is the frame itself (no augmentation)
        frame_hw = out_hw if geometry is None else tuple(int(v) for v in batch["geometry_hw"][i])
        if entry.size != frame_hw:
            raise ValueError(f"teacher cache: {batch['id'][i]!r} was cached at {entry.size}, its frame is {frame_hw}")
        if geometry is not None:
            geometry = geometry[i].detach().to("cpu", torch.float64)
            if mirrored:  # frame pixel x is mirrored-frame pixel W - 1 - x (an involution)
                flip = torch.tensor([[-1.0, 0, frame_hw[1] - 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
                geometry = flip @ geometry

        def warp(t: torch.Tensor, stride: int) -> torch.Tensor:
            t = t.to(device).float()
            return t if geometry is None else warp_map(t, geometry, stride, out_hw)

        row = {
            "features": [warp(f, s) for f, s in zip(entry.features, self.map_strides, strict=False)],
            "scores": [warp(f, s) for f, s in zip(entry.scores, self.map_strides, strict=False)],
            "depth": warp(entry.depth, 1),
        }
        if entry.relative is not None:
            row["relative"] = warp(entry.relative, 1)
        return row


def _view(batch: dict, i: int) -> tuple[str, bool]:
    """(sample id, mirrored) of row ``i``: mirrored when its geometry flips (a negative determinant)."""
    geometry = batch.get("geometry")
    if geometry is None:
        return str(batch["id"][i]), False
    (a, b), (c, d) = geometry[i][:2, :2].tolist()
    return str(batch["id"][i]), a * d - b * c < 0


def _rows(batch: dict, rows: list[int]) -> dict:
    """The sub-batch of ``rows`` (tensors indexed, lists picked, other values kept)."""
    index = torch.tensor(rows, dtype=torch.long)
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            out[k] = v[index.to(v.device)]
        elif isinstance(v, list):
            out[k] = [v[i] for i in rows]
        else:
            out[k] = v
    return out


FEATURE_SCHEDULES = ("constant", "decay")


class DistillationTask(Task):
    """Depth loss + feature KD (attentive / plain / classic) + optional response KD.

    Losses: ``silog`` (``l1`` with ``depth_loss="l1"``; + ``chamfer`` for a bins head), ``kd_s{stride}`` per
    distilled level (each already multiplied by ``feature_weight / n_levels``), ``response_kd``; ``loss`` = their sum.

    Args:
        model: the student (+ classic-KD adapters) being trained.
        targets: the teacher side; None when no KD term is on.
        pretrained_lr_scale: learning-rate scale of the student encoder's ImageNet weights; 1 = none.
        feature_target, feature_weight, normalize, standardize, response_weight, distance, feature_schedule:
            ``distill.*`` (config/schema.py); the schedule follows :meth:`set_progress`.
        ghost_weight, ghost_target: the ghost loss (``distill.ghost_*``): the student's encoder pyramid read by the
            acclimated teacher's frozen ghost decoder, SILog to the ground truth ("gt"; the teacher's depth on
            images without it) or to the teacher's depth on every image ("teacher"). Needs an acclimated teacher.
        depth_loss: ``train.depth_loss``, the ground-truth term ("silog" or "l1").
    """

    def __init__(
        self,
        model: DistilledStudent,
        targets: TeacherTargets | None,
        pretrained_lr_scale: float = 1.0,
        feature_target: str = "acclimated",
        feature_weight: float = 1.0,
        normalize: bool = True,
        standardize: bool = True,
        response_weight: float = 0.0,
        variance_focus: float = 0.85,
        silog_scale: float = 10.0,
        chamfer_weight: float = 0.1,
        ghost_weight: float = 0.0,
        ghost_target: str = "gt",
        distance: str = "mse",
        feature_schedule: str = "constant",
        depth_loss: str = "silog",
    ) -> None:
        super().__init__()
        self.depth_loss = checked_depth_loss(depth_loss)
        if ghost_weight > 0 and (targets is None or not targets.acclimated):
            raise ValueError("distill.ghost_weight > 0 needs the ghost decoder of distill.acclimated_checkpoint")
        if ghost_target not in ("gt", "teacher"):
            raise ValueError(f"distill.ghost_target: expected 'gt' or 'teacher', got {ghost_target!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distill.distance: expected one of {DISTANCES}, got {distance!r}")
        if feature_schedule not in FEATURE_SCHEDULES:
            raise ValueError(f"distill.feature_schedule: expected one of {FEATURE_SCHEDULES}, got {feature_schedule!r}")
        self.ghost_weight, self.ghost_target, self.distance = ghost_weight, ghost_target, distance
        self.feature_schedule, self.progress = feature_schedule, 0.0
        self.model, self.targets, self.pretrained_lr_scale = model, targets, pretrained_lr_scale
        self.feature_target, self.feature_weight = feature_target, feature_weight
        self.normalize, self.standardize, self.response_weight = normalize, standardize, response_weight
        self.variance_focus, self.silog_scale, self.chamfer_weight = variance_focus, silog_scale, chamfer_weight

    def set_progress(self, done: float) -> None:
        self.progress = done

    def feature_scale(self) -> float:
        """The feature-KD weight's factor at the current step: 1, or ``1 - done`` under ``decay``."""
        return 1.0 - self.progress if self.feature_schedule == "decay" else 1.0

    def parameter_groups(self) -> list[ParamGroup]:
        pretrained = self.model.encoder if self.pretrained_lr_scale != 1.0 else None
        return pretrained_groups(self.model, pretrained, self.pretrained_lr_scale)

    def deployable(self, trained: nn.Module) -> tuple[CheckpointKind, nn.Module | None]:
        return CheckpointKind.STUDENT, trained.to_student()  # the KD adapters are training-only

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = self.model(batch["image"])
        losses = depth_losses(out, batch, self.variance_focus, self.silog_scale, self.chamfer_weight, self.depth_loss)
        need_features = self.feature_target != "none" and self.feature_weight > 0
        todo = unlabelled(batch)
        # An image without ground truth learns depth from the teacher: by response KD when it is on (every image),
        # else by this term, so no image is left with the KD terms alone.
        pseudo = self.targets is not None and self.response_weight == 0 and bool(todo.any())
        ghost_teacher = self.ghost_weight > 0 and (self.ghost_target == "teacher" or bool(todo.any()))
        if self.ghost_weight > 0 and not ghost_teacher:  # ground truth on every image: no teacher run needed
            losses["ghost_depth"] = self.ghost_weight * self._ghost_loss(out, batch, None)
        if need_features or self.response_weight > 0 or pseudo or ghost_teacher:
            target = self.targets(batch)
            depth_target = TeacherTarget(target["depth"], target.get("relative"), self.targets.space)
            if pseudo:
                losses["pseudo_depth"] = loss_to_teacher(
                    out["depth"][todo], depth_target[todo], self.variance_focus, self.silog_scale
                )
            if need_features:
                weight = self.feature_weight * self.feature_scale() / len(self.targets.kd_strides)
                for stride, s, t, a in zip(
                    self.targets.kd_strides, out["kd_features"], target["features"], target["attention"], strict=True
                ):
                    t = t.to(s.dtype)
                    s = match_size(s, t)
                    if self.standardize:
                        s, t = standardize_channels(s), standardize_channels(t)
                    losses[f"kd_s{stride}"] = weight * attentive_feature_loss(s, t, a, self.normalize, self.distance)
            if self.response_weight > 0:  # SILog to a metric teacher, SSI to a relative one (never as metres)
                losses["response_kd"] = self.response_weight * loss_to_teacher(
                    out["depth"], depth_target, self.variance_focus, self.silog_scale
                )
            if ghost_teacher:
                losses["ghost_depth"] = self.ghost_weight * self._ghost_loss(out, batch, depth_target)
        losses["loss"] = sum(losses.values())
        return losses

    def _ghost_loss(self, out: dict, batch: dict, teacher: TeacherTarget | None) -> torch.Tensor:
        """SILog of the frozen ghost decoder reading the student's own encoder pyramid (gradients reach the encoder).

        The ghost decoder learnt, during acclimation, to read depth from the acclimated teacher features; feature KD
        only asks the student's features to resemble those, this asks them to carry what the decoder reads. With
        ``teacher`` (a (B, 1, H, W) metre target) images without ground truth (all images for ``ghost_target:
        teacher``) are compared with the teacher's depth; the others with the ground truth.
        """
        image = batch["image"]
        depth = self.targets.teacher.ghost(out["encoder_features"], tuple(image.shape[-2:]))["depth"]  # (B, 1, H, W)
        gt, valid = batch["depth"], batch["valid"]
        if teacher is None:
            return silog_loss(resize_like(depth, gt), gt, valid, self.variance_focus, self.silog_scale)
        rows = torch.ones_like(unlabelled(batch)) if self.ghost_target == "teacher" else unlabelled(batch)
        loss = loss_to_teacher(depth[rows], teacher[rows], self.variance_focus, self.silog_scale)
        if not bool(rows.all()):  # the labelled rest against the ground truth
            keep = ~rows
            loss = loss + silog_loss(
                resize_like(depth[keep], gt[keep]), gt[keep], valid[keep], self.variance_focus, self.silog_scale
            )
        return loss


def build_adapters(student_info: list, teacher_info: list, kd_strides: list[int]) -> nn.ModuleDict:
    """Classic feature KD: a 1x1 conv per distilled stride, student channels -> teacher channels (FitNets-style)."""
    s_ch = {f.stride: f.channels for f in student_info}
    t_strides = [f.stride for f in teacher_info]
    return nn.ModuleDict(
        {str(s): nn.Conv2d(s_ch[s], teacher_info[teacher_level_for(s, t_strides)].channels, 1) for s in kd_strides}
    )
