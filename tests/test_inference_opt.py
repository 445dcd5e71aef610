"""BatchNorm folding and channels-last eager inference (deploy/inference.py) and their use in DepthPredictor."""

from __future__ import annotations

import torch
from bn_students import randomise_batchnorm, student  # tests/bn_students.py
from torch import nn

from disdepth.api import DepthPredictor
from disdepth.deploy.inference import conv_bn_pairs, fold_batchnorm, optimize_for_inference


def test_fold_removes_every_batchnorm_of_the_student_and_keeps_its_depth():
    model = student("model.decoder_upsample=nearest")  # timm BatchNormAct2d in the encoder, plain BN in the decoder
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(2, 3, 64, 96)
    folded, count = fold_batchnorm(model, x[:1])
    assert count == n_bn > 40
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    with torch.inference_mode():
        want, got = model(x)["depth"], folded(x)["depth"]
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    assert (want.std() > 1e-3).item()  # not a constant output that any fold would match


def test_lgconv_student_folds_what_it_can():
    model = student("model.lgconv.enabled=true")
    folded, count = fold_batchnorm(model, torch.randn(1, 3, 64, 64))
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert count > 0 and left > 0  # BNs after an LG-Conv sum are not a conv's own output
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(folded(x)["depth"], model(x)["depth"], rtol=1e-4, atol=1e-5)


class _ConvReadTwice(nn.Module):
    """conv -> BN, and the conv's raw output is also added back (folding that pair would change the sum); then a
    plain conv2 -> bn2 that folds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.bn, self.bn2 = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn2(self.conv2(self.bn(y) + y))


class _SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.conv(x)


def test_a_fold_that_changes_the_output_is_undone_and_the_others_kept():
    model = _ConvReadTwice().eval()
    randomise_batchnorm(model)
    x = torch.randn(1, 3, 16, 16)
    assert conv_bn_pairs(model, x) == [("conv", "bn"), ("conv2", "bn2")]  # hooks cannot see the second reader...
    optimized, ok = optimize_for_inference(model, x)
    assert ok and optimized is not model  # ...the output check can: only that pair stays unfolded
    assert isinstance(optimized.bn, nn.BatchNorm2d) and isinstance(optimized.bn2, nn.Identity)
    with torch.inference_mode():
        torch.testing.assert_close(optimized(x.contiguous(memory_format=torch.channels_last)), model(x))


def test_an_optimisation_that_still_changes_the_output_keeps_the_model(monkeypatch):
    from disdepth.deploy import inference

    model = student()
    broken = student()
    nn.init.constant_(broken.head.conv.bias, 5.0)  # a different depth, whatever the folding does
    monkeypatch.setattr(inference, "fold_batchnorm", lambda *args, **kwargs: (broken, 0))
    kept, ok = optimize_for_inference(model, torch.randn(1, 3, 64, 64))
    assert kept is model and not ok


def test_a_module_called_twice_is_not_folded():
    model = _SharedConv().eval()
    randomise_batchnorm(model)
    assert conv_bn_pairs(model, torch.randn(1, 3, 8, 8)) == []


def test_predictor_runs_the_optimised_student_with_the_same_depth():
    model = student()
    spec = model.input_spec
    fast = DepthPredictor(model, spec.mean, spec.std)
    plain = DepthPredictor(model, spec.mean, spec.std, optimize=False)
    assert fast.channels_last and not plain.channels_last
    assert plain.model is model and fast.model is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.model.modules())
    images = torch.rand(2, 3, 70, 100)  # not a multiple of 32: resized to 64x96 and back
    torch.testing.assert_close(fast.predict_tensor(images), plain.predict_tensor(images), rtol=1e-4, atol=1e-5)
