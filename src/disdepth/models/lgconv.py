"""LG-Conv: a local 3x3 conv plus a parallel global branch (DisDepth, arXiv:2404.16386, docs/method.md §2).

The paper's abstract says LG-Conv gives a pretrained CNN the global context a transformer teacher
has, so that the student can absorb the teacher's knowledge. Our reading (each choice configurable):

    r   = ReLU(Conv1x1_stride(x))                      reduce C_in -> R at the conv's output grid
    z   = concat(r, broadcast(mean_hw(r)))             local + pooled global vector, 2R channels
    A   = softmax_hw(Conv1x1(z))                       aggregation attention, one map per head
    V   = Conv1x1(r)                                   values, R channels = heads x (R / heads)
    t_h = sum_p A_h(p) V_h(p)                          one global token per head
    B   = sigmoid(Conv1x1(z))                          broadcast attention, one map per head
    g   = BN(Conv1x1(B_h(p) * t_h))                    project R -> C_out
    y   = conv(x) + g

The branch BatchNorm starts with gamma = 0, so a converted pretrained backbone gives exactly the
same output at step 0 and training decides how much global context to mix in. ``GlobalBranch.forward``
computes the same formula in a cheaper order (the projections act on the h tokens, not on every pixel);
every op is a 1x1 conv, mean, softmax, matmul or einsum, so the module exports to ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from disdepth.models.encoder import mark_from_scratch


class GlobalBranch(nn.Module):
    """The global half of LG-Conv: (B, C_in, H, W) -> (B, C_out, H', W') at the wrapped conv's stride.

    Parameter count (``expected_parameters``), with R = width, h = heads:
        reduce  C_in*R + R       aggregation  2R*h + h    broadcast  2R*h + h
        value   R*R + R          project      R*C_out     BN (affine) 2*C_out
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, heads: int, stride: int = 1) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"LG-Conv width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, width, 1, stride=stride), nn.ReLU(inplace=True))
        self.aggregate = nn.Conv2d(2 * width, heads, 1)
        self.broadcast = nn.Conv2d(2 * width, heads, 1)
        self.value = nn.Conv2d(width, width, 1)
        self.project = nn.Conv2d(width, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.norm.weight)  # identity at init: branch output is exactly zero
        mark_from_scratch(self)  # new inside a pretrained encoder: full learning rate

    @staticmethod
    def expected_parameters(in_channels: int, out_channels: int, width: int, heads: int) -> int:
        """Closed-form parameter count of one branch (see class docstring)."""
        r, h = width, heads
        return (in_channels * r + r) + 2 * (2 * r * h + h) + (r * r + r) + r * out_channels + 2 * out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H', W'), the formula of the module docstring in a cheaper order.

        Every step after ``reduce`` is linear in something that is constant over positions, so it is computed
        once per image instead of once per pixel (same parameters, same result up to float rounding):

        * the pooled half of ``z`` only adds a per-image constant to the aggregation/broadcast logits;
        * ``sum_p A_h(p) V_h(p) = W_v,h (sum_p A_h(p) r(p)) + b_v,h`` because each A_h sums to 1 over positions;
        * ``project(B_h(p) * t_h) = sum_h B_h(p) (W_p,h t_h)`` because ``project`` is linear without bias.

        Per pixel this leaves the reduce conv (C_in x R), the logits (2h x R), the pooling (h x R) and the
        output (h x C_out) instead of 4hR + R^2 + R x C_out, and no (B, 2R, H', W') or (B, R, H', W') map.
        """
        r = self.reduce(x)  # (B, R, H', W')
        width, heads = r.shape[1], self.heads
        head_dim = width // heads
        flat = r.flatten(2)  # (B, R, N)
        weight = torch.cat([self.aggregate.weight, self.broadcast.weight]).flatten(1)  # (2h, 2R): [local | pooled]
        bias = torch.cat([self.aggregate.bias, self.broadcast.bias])  # (2h,)
        per_image = flat.mean(dim=-1) @ weight[:, width:].t() + bias  # (B, 2h): the pooled half of z, and bias
        logits = torch.matmul(weight[:, :width], flat) + per_image.unsqueeze(-1)  # (B, 2h, N)
        attn = logits[:, :heads].softmax(dim=-1)  # (B, h, N) aggregation attention, sums to 1 over positions
        spread = logits[:, heads:].sigmoid()  # (B, h, N) broadcast attention
        pooled = torch.matmul(attn, flat.transpose(1, 2))  # (B, h, R): attention-weighted mean of r per head
        value_weight = self.value.weight.view(heads, head_dim, width)
        tokens = torch.einsum("ndr,bnr->bnd", value_weight, pooled) + self.value.bias.view(heads, head_dim)
        project_weight = self.project.weight.view(-1, heads, head_dim)  # (C_out, h, d)
        per_head = torch.einsum("cnd,bnd->bcn", project_weight, tokens)  # (B, C_out, h): W_p,h t_h
        out = torch.matmul(per_head, spread).unflatten(2, r.shape[2:])  # (B, C_out, H', W')
        return self.norm(out)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The module docstring's formula step by step, every map materialised (tests check :meth:`forward`)."""
        r = self.reduce(x)  # (B, R, H', W')
        b, width, height, w = r.shape
        pooled = r.mean(dim=(2, 3), keepdim=True).expand_as(r)
        z = torch.cat([r, pooled], dim=1)  # (B, 2R, H', W')
        attn = self.aggregate(z).flatten(2).softmax(dim=-1)  # (B, h, N) sums to 1 over positions
        values = self.value(r).flatten(2).reshape(b, self.heads, width // self.heads, height * w)  # (B, h, d, N)
        tokens = torch.einsum("bhn,bhdn->bhd", attn, values)  # (B, h, d): one global token per head
        spread = self.broadcast(z).sigmoid().flatten(2)  # (B, h, N)
        out = torch.einsum("bhd,bhn->bhdn", tokens, spread).reshape(b, width, height, w)
        return self.norm(self.project(out))


class LGConv(nn.Module):
    """Wraps an existing 3x3 ``nn.Conv2d`` (kept as ``local`` with its pretrained weights) and adds a global branch."""

    def __init__(self, local: nn.Conv2d, width: int, heads: int) -> None:
        super().__init__()
        self.local = local
        stride = local.stride[0] if isinstance(local.stride, tuple) else int(local.stride)
        self.global_branch = GlobalBranch(local.in_channels, local.out_channels, width, heads, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The converter only wraps "same"-padded convs, so both grids are ceil(H / stride) x ceil(W / stride).
        return self.local(x) + self.global_branch(x)


@dataclass(frozen=True)
class LGConvPolicy:
    """Which convs get a global branch.

    Attributes:
        strides: output strides (w.r.t. the network input) of eligible convs; 16, 32 = the two deepest stages.
        min_channels: minimum input channels of an eligible conv.
        include_depthwise: also convert depthwise 3x3 convs (MobileNet / EfficientNet blocks).
        heads: global tokens per branch.
        reduction: branch width = max(in_channels // reduction, min_width), rounded up to a multiple of heads.
        min_width: lower bound on the branch width.
    """

    strides: tuple[int, ...] = (16, 32)
    min_channels: int = 64
    include_depthwise: bool = True
    heads: int = 4
    reduction: int = 8
    min_width: int = 16

    def width_for(self, in_channels: int) -> int:
        width = max(in_channels // self.reduction, self.min_width)
        return -(-width // self.heads) * self.heads


def _output_strides(model: nn.Module, sample_size: int = 96) -> dict[str, int]:
    """Output stride of every "same"-padded Conv2d (output grid = ceil(input / stride)).

    Found by one forward pass with scoped hooks (removed afterwards); convs whose
    padding shrinks the grid are left out, because the global branch (1x1, same stride) would not line up.
    """
    strides: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):

            def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor, name: str = name) -> None:
                step = mod.stride[0]
                if output.shape[-1] == -(-inputs[0].shape[-1] // step):
                    strides[name] = round(sample_size / output.shape[-1])

            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, sample_size, sample_size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return strides


def convert_to_lgconv(model: nn.Module, policy: LGConvPolicy) -> list[str]:
    """Replace eligible 3x3 convs of ``model`` (taking (B, 3, H, W) input) by :class:`LGConv`, in place.

    Returns:
        The dotted names of the converted convs, in module order.
    """
    strides = _output_strides(model)
    chosen: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or module.kernel_size != (3, 3):
            continue
        depthwise = module.groups > 1 and module.groups == module.in_channels
        if module.groups > 1 and not depthwise:
            continue  # grouped (RegNet-style) convs: keep it simple, skip
        if depthwise and not policy.include_depthwise:
            continue
        if module.in_channels < policy.min_channels or strides.get(name) not in policy.strides:
            continue
        chosen.append(name)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        conv = getattr(parent, child)
        setattr(parent, child, LGConv(conv, policy.width_for(conv.in_channels), policy.heads))
    return chosen


def lgconv_parameters(model: nn.Module) -> int:
    """Number of parameters in all LG-Conv global branches of ``model``."""
    return sum(p.numel() for m in model.modules() if isinstance(m, GlobalBranch) for p in m.parameters())
