"""The motion-head contract (densemotion.heads): the point head is today's behaviour, and a head
that predicts more plugs into the model, the loss and the scores without touching them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densemotion.evaluation import predict
from densemotion.heads import HEADS, Criterion, PointHead, get_head
from densemotion.model import _replace_heads, build_model
from densemotion.params import ModelParams, ParamsError, parse_params

from conftest import sample_params_dict


def test_point_head_channels_decode_and_point():
    head = PointHead()
    raw = torch.arange(2 * 6 * 3 * 4, dtype=torch.float32).view(2, 6, 3, 4)  # (B, 2K, Hg, Wg), K = 3
    pred = head.decode(raw, 3, torch.tensor(2.0))
    assert head.channels(3) == 6 and pred.shape == (2, 3, 2, 3, 4)
    assert torch.equal(pred[1, 2, 1], raw[1, 5] * 2)  # step k's (x, y) are channels 2k, 2k + 1
    assert head.point(pred) is pred


def test_the_untrained_model_is_zero_motion_through_its_head():
    model = build_model(ModelParams(head="point"), 8).eval()
    assert model.head is HEADS["point"] and get_head("point") is model.head
    with torch.no_grad():
        out = model(torch.rand(2, 3, 16, 24))
    assert torch.equal(model.head.point(out["out"]), torch.zeros(2, 1, 2, 16, 24))


def test_model_head_is_a_validated_param():
    raw = sample_params_dict()
    raw["model"]["head"] = "gaussian"
    with pytest.raises(ParamsError, match="model.head"):
        parse_params(raw, "params.yaml")
    with pytest.raises(ValueError, match="unknown motion head 'gaussian'"):
        get_head("gaussian")


class MeanAndScale:
    """A throwaway head predicting a displacement and a log-scale per pixel and step: what a new
    head brings (its channels, decoding, loss, point estimate) and nothing else."""

    name = "mean_and_scale"

    def channels(self, steps: int) -> int:
        return 3 * steps

    def decode(self, raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = raw.shape
        raw = raw.view(b, steps, 3, h, w)
        return {"motion": raw[:, :, :2] * disp_scale, "log_scale": raw[:, :, 2]}

    def point(self, prediction: dict[str, torch.Tensor]) -> torch.Tensor:
        return prediction["motion"]

    def loss(self, prediction, target, mask, kind, scale=None) -> torch.Tensor:  # Laplace NLL (up to a constant)
        diff = prediction["motion"].float() - target
        if scale is not None:
            diff = diff * scale[:, None, :, None, None]
        b = prediction["log_scale"].exp()
        nll = diff.abs().sum(dim=2) / b + 2 * prediction["log_scale"]
        return (nll * mask).sum() / mask.sum().clamp(min=1)


def test_a_new_head_plugs_into_the_model_the_loss_and_the_scores():
    model = build_model(ModelParams(), 8)
    head = MeanAndScale()
    _replace_heads(model.net, head.channels(model.steps))
    model.head = head
    image = torch.rand(2, 3, 16, 24)
    out = model(image)
    assert out["out"]["motion"].shape == (2, 1, 2, 16, 24) and out["out"]["log_scale"].shape == (2, 1, 16, 24)
    target, mask = torch.ones(2, 1, 2, 16, 24), torch.ones(2, 1, 16, 24, dtype=torch.bool)
    loss = Criterion(head, "epe", aux_weight=0.5)(out, target, mask)
    loss.backward()  # trainable through the new head's own loss
    assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(2.0)  # zero init: |0 - 1| * 2 / e^0
    frames0 = (np.random.default_rng(0).random((2, 16, 24, 3)) * 255).astype(np.uint8)
    assert predict(model, frames0, "cpu").shape == (2, 1, 16, 24, 2)  # scores read the point estimate
