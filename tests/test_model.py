"""Motion networks: every torchvision model builds and trains; pretrained weights load offline."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import mobilenet_v3_large, resnet50
from torchvision.models import segmentation as seg

from densemotion.model import (
    MODEL_NAMES,
    SPECS,
    ModelError,
    build_model,
    hub_checkpoint_path,
    output_steps,
    set_backbone_trainable,
)
from densemotion.params import ModelParams


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_and_runs_forward_and_backward(name):
    torch.manual_seed(0)
    aux = SPECS[name].has_aux
    model = build_model(ModelParams(name=name, target="trajectory", aux_loss=aux, input_scale=2), window=4)
    image = torch.rand(2, 3, 16, 24)
    out = model(image)
    assert out["out"].shape == (2, 3, 2, 16, 24)  # K = window - 1 steps of (x, y)
    assert ("aux" in out) == aux
    assert torch.count_nonzero(out["out"]) == 0  # zero-initialised head: starts as zero motion
    target = torch.randn_like(out["out"])
    loss = (
        (out["out"] - target).abs().mean() + (out["aux"] - target).abs().mean()
        if aux
        else (out["out"] - target).abs().mean()
    )
    loss.backward()
    head = [p for n, p in model.named_parameters() if "classifier" in n and p.grad is not None]
    assert head and all(torch.isfinite(p.grad).all() for p in head)
    assert any(p.grad.abs().sum() > 0 for p in head)


def test_output_is_in_pixels_via_disp_scale():
    model = build_model(ModelParams(), window=8)
    head = model.net.classifier.high_classifier
    torch.nn.init.constant_(head.bias, 1.0)
    model.disp_scale.fill_(2.5)
    model.eval()
    out = model(torch.rand(1, 3, 8, 12))["out"]
    assert out.shape == (1, 1, 2, 8, 12)
    assert torch.allclose(out, torch.full_like(out, 2.5))  # bias 1 x 2.5 px, input_scale averaged away


def test_steps_and_bad_names():
    assert output_steps("endpoint", 8) == 1 and output_steps("trajectory", 8) == 7
    with pytest.raises(ModelError, match="window"):
        output_steps("endpoint", 1)
    with pytest.raises(ModelError, match="unknown model 'unet'"):
        build_model(ModelParams.model_construct(**{**ModelParams().model_dump(), "name": "unet"}), 8)
    with pytest.raises(ValueError, match="no auxiliary head"):
        ModelParams(name="lraspp_mobilenet_v3_large", aux_loss=True)


def test_freezing_the_backbone():
    model = build_model(ModelParams(), window=8)
    model.train()
    set_backbone_trainable(model, False)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training and model.net.classifier.training
    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.backbone.parameters()) and model.backbone.training


# --- pretrained weights, from files the tests write ---------------------------------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def _save(state: dict, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_coco_weights_load_from_the_hub_cache_except_the_new_head(torch_home):
    torch.manual_seed(1)
    reference = seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    path = hub_checkpoint_path(SPECS["lraspp_mobilenet_v3_large"].coco)
    assert path.parent == torch_home / "hub" / "checkpoints"
    _save(reference.state_dict(), path)
    torch.manual_seed(2)
    model = build_model(ModelParams(pretrained="coco"), window=8)
    ours = model.net.state_dict()
    for key, value in reference.state_dict().items():
        if "low_classifier" in key or "high_classifier" in key:
            assert ours[key].shape[0] == 2  # replaced by the motion head
        else:
            assert torch.equal(ours[key], value), key


def test_coco_weights_with_an_auxiliary_head(torch_home):
    torch.manual_seed(1)
    reference = seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    _save(reference.state_dict(), hub_checkpoint_path(SPECS["deeplabv3_mobilenet_v3_large"].coco))
    for aux in (True, False):
        model = build_model(ModelParams(name="deeplabv3_mobilenet_v3_large", pretrained="coco", aux_loss=aux), window=8)
        ours = model.net.state_dict()
        assert torch.equal(
            ours["classifier.0.project.0.weight"], reference.state_dict()["classifier.0.project.0.weight"]
        )
        assert ("aux_classifier.0.weight" in ours) == aux
        if aux:
            assert torch.equal(ours["aux_classifier.0.weight"], reference.state_dict()["aux_classifier.0.weight"])
            assert ours["aux_classifier.4.weight"].shape[0] == 2


def test_imagenet_backbone_weights_from_weights_path(tmp_path, torch_home):
    torch.manual_seed(3)
    backbone = mobilenet_v3_large(weights=None)
    file = tmp_path / "mine.pth"
    _save(backbone.state_dict(), file)
    model = build_model(ModelParams(pretrained="imagenet", weights_path=str(file)), window=8)
    assert torch.equal(model.backbone.state_dict()["0.0.weight"], backbone.state_dict()["features.0.0.weight"])
    assert torch.equal(
        model.backbone.state_dict()["16.1.running_var"], backbone.state_dict()["features.16.1.running_var"]
    )


def test_imagenet_resnet_backbone_from_the_hub_cache(torch_home):
    torch.manual_seed(4)
    backbone = resnet50(weights=None)
    _save(backbone.state_dict(), hub_checkpoint_path(SPECS["fcn_resnet50"].imagenet))
    model = build_model(ModelParams(name="fcn_resnet50", pretrained="imagenet"), window=8)
    assert torch.equal(
        model.backbone.state_dict()["layer4.2.conv3.weight"], backbone.state_dict()["layer4.2.conv3.weight"]
    )


def test_missing_weights_say_how_to_fetch_them(torch_home):
    with pytest.raises(ModelError) as err:
        build_model(ModelParams(pretrained="coco"), window=8)
    text = str(err.value)
    weights = SPECS["lraspp_mobilenet_v3_large"].coco
    assert str(hub_checkpoint_path(weights)) in text
    assert weights.url in text
    assert "LRASPP_MobileNet_V3_Large_Weights" in text and "get_state_dict" in text
    assert "dvc import-url" in text and "models/torch" in text
    assert not hub_checkpoint_path(weights).exists()  # nothing was downloaded


def test_foreign_weights_are_refused_with_the_mismatch(tmp_path, torch_home):
    file = tmp_path / "wrong.pth"
    _save(resnet50(weights=None).state_dict(), file)
    with pytest.raises(ModelError, match="do not match the model: missing"):
        build_model(ModelParams(pretrained="imagenet", weights_path=str(file)), window=8)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read pretrained weights"):
        build_model(ModelParams(pretrained="coco", weights_path=str(garbage)), window=8)
    missing = tmp_path / "absent.pth"
    with pytest.raises(ModelError, match="model.weights_path"):
        build_model(ModelParams(pretrained="coco", weights_path=str(missing)), window=8)
