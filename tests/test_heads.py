"""The motion-head contract (densemotion.heads): the point head is today's behaviour, and a head
that predicts more plugs into the model, the loss and the scores without touching them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densemotion.evaluation import predict
from densemotion.heads import (
    Criterion,
    HypothesesHead,
    LaplaceHead,
    PointHead,
    get_head,
    laplace_radius,
)
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
    assert isinstance(model.head, PointHead)
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


@pytest.mark.parametrize("head", ["point", "laplace", "hypotheses"])
def test_every_untrained_head_is_the_zero_motion_baseline(head):
    for name in ("lraspp_mobilenet_v3_large", "fcn_resnet50"):
        model = build_model(
            ModelParams(name=name, head=head, hypotheses=3, aux_loss=name != "lraspp_mobilenet_v3_large"), 8
        )
        with torch.no_grad():
            out = model.eval()(torch.rand(1, 3, 16, 24))
        point = model.head.point(out["out"])
        assert point.shape == (1, 1, 2, 16, 24)
        assert float(point.abs().max()) < 1e-6, (name, head)


def test_the_hypotheses_start_at_zero_and_around_a_circle():
    """M = 4: the first at zero (the still points'), three on a circle 120 degrees apart; M = 2:
    both on the circle, opposite. Equally likely, so their mean is zero motion."""
    for m, zero_first in ((4, True), (2, False)):
        model = build_model(ModelParams(head="hypotheses", hypotheses=m), 8).eval()
        with torch.no_grad():
            hyps, probs = model.head.hypotheses(model(torch.rand(1, 3, 8, 8))["out"])
        assert hyps.shape == (1, m, 1, 2, 8, 8) and torch.allclose(probs, torch.full_like(probs, 1 / m))
        at = hyps[0, :, 0, :, 0, 0]  # (M, 2)
        ring = at[1:] if zero_first else at
        if zero_first:
            assert float(at[0].norm()) < 1e-6
        radius = ring.norm(dim=1)
        assert float(radius.min()) > 0.1 and torch.allclose(radius, radius[0].expand_as(radius), rtol=1e-5)
        cos = float(ring[0] @ ring[1] / radius[0] ** 2)
        assert cos == pytest.approx(math.cos(2 * math.pi / len(ring)), abs=1e-5)


def test_laplace_nll_and_coverage_against_hand_computed_values():
    head = LaplaceHead()
    loc = torch.zeros(1, 1, 2, 1, 2)
    scale = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    target = torch.tensor([[1.0, 4.0], [0.5, 0.0]]).view(1, 1, 2, 1, 2)  # point 0: (1, 0.5), point 1: (4, 0)
    pred = {"loc": loc, "scale": scale}
    nll = head.nll(pred, target)[0, 0, 0]
    want = [2 * np.log(2.0) + 1.5, 2 * np.log(4.0) + 2.0]  # 2 log(2b) + L1 / b
    np.testing.assert_allclose(nll.numpy(), want, rtol=1e-6)
    # Gamma(2, 1) CDF at the radius is the level; point 0 has L1 / b = 1.5, point 1 has 2.0
    for level in (0.5, 0.8, 0.95):
        s = laplace_radius(level)
        assert 1 - np.exp(-s) * (1 + s) == pytest.approx(level, abs=1e-9)
    assert laplace_radius(0.5) == pytest.approx(1.6783, abs=1e-3)
    inside = head.inside(pred, target, 0.5)[0, 0, 0].tolist()
    assert inside == [True, False]  # 1.5 <= 1.678 < 2.0


def test_laplace_coverage_of_samples_from_the_predicted_distribution_is_the_level():
    """Draw displacements from Laplace(loc, b) per axis: the fraction inside each region is its level."""
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    loc = torch.randn(1, 1, 2, 1, n, generator=gen)
    scale = torch.rand(1, 1, 1, n, generator=gen) * 3 + 0.1
    noise = torch.distributions.Laplace(0.0, 1.0).sample((1, 1, 2, 1, n)) * scale[:, :, None]
    pred = {"loc": loc, "scale": scale}
    for level in (0.5, 0.8, 0.95):
        frac = float(LaplaceHead().inside(pred, loc + noise, level).float().mean())
        assert frac == pytest.approx(level, abs=0.005)


def test_laplace_training_learns_the_scale_where_the_motion_is_noisy():
    """A constant input, targets with noise of scale 0.2 on the left half and 2.0 on the right: the
    head's scale follows (the loss is the likelihood), the location the median."""
    torch.manual_seed(0)
    head = LaplaceHead()
    raw = torch.zeros(1, 3, 1, 2, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.05)
    noise = torch.distributions.Laplace(0.0, 1.0)
    for _ in range(600):
        target = noise.sample((64, 1, 2, 1, 2)) * torch.tensor([0.2, 2.0]).view(1, 1, 1, 1, 2) + 1.0
        pred = head.decode(raw.expand(64, -1, -1, -1), 1, torch.tensor(1.0))
        loss = head.loss(pred, target, torch.ones(64, 1, 1, 2, dtype=torch.bool), "epe")
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = head.decode(raw.detach(), 1, torch.tensor(1.0))
    np.testing.assert_allclose(pred["scale"][0, 0, 0].numpy(), [0.2, 2.0], rtol=0.25)
    np.testing.assert_allclose(pred["loc"][0, 0, :, 0].numpy(), np.ones((2, 2)), atol=0.3)


def test_hypotheses_training_finds_both_modes_and_their_odds():
    """Targets +3 or -3 px in x at random (70/30): relaxed WTA puts one hypothesis on each mode and
    the cross-entropy gives their odds; the point head there can only learn their median."""
    torch.manual_seed(0)
    head = HypothesesHead(2)
    raw = torch.zeros(1, head.channels(1), 1, 1)
    raw[0, :4, 0, 0] = torch.tensor([0.05, 0.0, -0.05, 0.0])  # the initial spread
    raw.requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=0.05)
    for _ in range(800):
        sign = torch.where(torch.rand(128) < 0.7, 1.0, -1.0)
        target = torch.zeros(128, 1, 2, 1, 1)
        target[:, 0, 0, 0, 0] = 3.0 * sign
        pred = head.decode(raw.expand(128, -1, -1, -1), 1, torch.tensor(1.0))
        loss = head.loss(pred, target, torch.ones(128, 1, 1, 1, dtype=torch.bool), "epe")
        opt.zero_grad()
        loss.backward()
        opt.step()
    hyps, probs = head.hypotheses(head.decode(raw.detach(), 1, torch.tensor(1.0)))
    xs = hyps[0, :, 0, 0, 0, 0]
    order = torch.argsort(xs)
    np.testing.assert_allclose(xs[order].numpy(), [-3.0, 3.0], atol=0.3)
    np.testing.assert_allclose(probs[0, order, 0, 0].numpy(), [0.3, 0.7], atol=0.08)


@pytest.mark.parametrize("head", ["point", "laplace", "hypotheses"])
def test_each_heads_point_decoder_is_its_point_estimate(head):
    """What the predictor and the exports run (head.point_decoder on raw output) is head.point of
    head.decode, for random raw output (not the zero init, which would hide a wrong slice)."""
    h = get_head(head, hypotheses=3)
    raw = torch.randn(2, h.channels(2), 5, 7)
    scale = torch.tensor(1.7)
    want = h.point(h.decode(raw, 2, scale))
    got = torch.jit.script(h.point_decoder(2))(raw, scale)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "fcn_resnet50"])
def test_the_laplace_scale_reads_the_features_detached(name):
    """The scale's loss trains its own weights but never reaches the features, which the location's
    loss alone shapes; the forward is a plain conv's (non-zero weights, or the test could not fail)."""
    from densemotion.model import MotionConv, _output_convs

    torch.manual_seed(0)
    model = build_model(ModelParams(name=name, head="laplace", input_scale=1), 8).train()
    convs = [m for m in model.modules() if isinstance(m, MotionConv)]
    assert convs and all(c.detach_from == 2 for c in convs)
    with torch.no_grad():
        for conv in convs:
            conv.weight.normal_(0, 0.1)
    x = torch.rand(2, 3, 32, 48)
    feats: dict[str, torch.Tensor] = {}
    hook = _output_convs(model.net)[0].register_forward_hook(lambda m, i, o: feats.update(x=i[0], y=o))
    out = model(x)["out"]
    hook.remove()
    conv = _output_convs(model.net)[0]
    plain = torch.nn.functional.conv2d(feats["x"], conv.weight, conv.bias)
    torch.testing.assert_close(feats["y"], plain)
    first = next(model.backbone.parameters())
    out["scale"].sum().backward()
    assert first.grad is None or not first.grad.any()  # nothing reached the backbone
    assert conv.weight.grad[2:].abs().sum() > 0 and not conv.weight.grad[:2].any()
    model.zero_grad()
    out = model(x)["out"]
    out["loc"].sum().backward()
    assert first.grad is not None and first.grad.abs().sum() > 0  # the location's loss does


def test_point_and_hypotheses_heads_keep_plain_convs():
    from densemotion.model import MotionConv

    for head in ("point", "hypotheses"):
        model = build_model(ModelParams(head=head), 8)
        assert not any(isinstance(m, MotionConv) for m in model.modules())
