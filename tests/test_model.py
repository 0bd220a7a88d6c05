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
    predicted_steps,
    set_backbone_trainable,
    weights_file_name,
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
    assert predicted_steps("endpoint", 8) == [7] and predicted_steps("trajectory", 4) == [1, 2, 3]
    with pytest.raises(ModelError, match="window"):
        predicted_steps("endpoint", 1)
    with pytest.raises(ModelError, match="unknown target 'flow'"):
        predicted_steps("flow", 8)
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


def _save(state: dict, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def _at(folder, weights):
    """Where build_model looks for torchvision's ``weights`` file in ``folder``."""
    return folder / weights_file_name(weights)


def test_coco_weights_load_from_the_pretrained_folder_except_the_new_head(tmp_path):
    torch.manual_seed(1)
    reference = seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    _save(reference.state_dict(), _at(tmp_path / "coco", SPECS["lraspp_mobilenet_v3_large"].coco))
    torch.manual_seed(2)
    model = build_model(ModelParams(pretrained="coco"), window=8, pretrained_dir=tmp_path / "coco")
    ours = model.net.state_dict()
    for key, value in reference.state_dict().items():
        if "low_classifier" in key or "high_classifier" in key:
            assert ours[key].shape[0] == 2  # replaced by the motion head
        else:
            assert torch.equal(ours[key], value), key


def test_default_pretrained_folder_is_the_train_stage_dependency(tmp_path, monkeypatch):
    from densemotion.model import default_pretrained_dir

    assert default_pretrained_dir("coco").as_posix() == "models/pretrained/coco"
    torch.manual_seed(1)
    reference = seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    _save(reference.state_dict(), _at(tmp_path / "models/pretrained/coco", SPECS["lraspp_mobilenet_v3_large"].coco))
    monkeypatch.chdir(tmp_path)
    model = build_model(ModelParams(pretrained="coco"), window=8)
    key = "backbone.0.0.weight"
    assert torch.equal(model.net.state_dict()[key], reference.state_dict()[key])


def test_coco_weights_with_an_auxiliary_head(tmp_path):
    torch.manual_seed(1)
    reference = seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    _save(reference.state_dict(), _at(tmp_path, SPECS["deeplabv3_mobilenet_v3_large"].coco))
    for aux in (True, False):
        mp = ModelParams(name="deeplabv3_mobilenet_v3_large", pretrained="coco", aux_loss=aux)
        ours = build_model(mp, window=8, pretrained_dir=tmp_path).net.state_dict()
        assert torch.equal(
            ours["classifier.0.project.0.weight"], reference.state_dict()["classifier.0.project.0.weight"]
        )
        assert ("aux_classifier.0.weight" in ours) == aux
        if aux:
            assert torch.equal(ours["aux_classifier.0.weight"], reference.state_dict()["aux_classifier.0.weight"])
            assert ours["aux_classifier.4.weight"].shape[0] == 2


def test_imagenet_mobilenet_backbone(tmp_path):
    torch.manual_seed(3)
    backbone = mobilenet_v3_large(weights=None)
    _save(backbone.state_dict(), _at(tmp_path, SPECS["lraspp_mobilenet_v3_large"].imagenet))
    model = build_model(ModelParams(pretrained="imagenet"), window=8, pretrained_dir=tmp_path)
    assert torch.equal(model.backbone.state_dict()["0.0.weight"], backbone.state_dict()["features.0.0.weight"])
    assert torch.equal(
        model.backbone.state_dict()["16.1.running_var"], backbone.state_dict()["features.16.1.running_var"]
    )


def test_imagenet_resnet_backbone(tmp_path):
    torch.manual_seed(4)
    backbone = resnet50(weights=None)
    _save(backbone.state_dict(), _at(tmp_path, SPECS["fcn_resnet50"].imagenet))
    model = build_model(ModelParams(name="fcn_resnet50", pretrained="imagenet"), window=8, pretrained_dir=tmp_path)
    assert torch.equal(
        model.backbone.state_dict()["layer4.2.conv3.weight"], backbone.state_dict()["layer4.2.conv3.weight"]
    )


def test_missing_weights_say_how_to_fetch_them(tmp_path):
    with pytest.raises(ModelError) as err:
        build_model(ModelParams(pretrained="coco"), window=8, pretrained_dir=tmp_path / "coco")
    text = str(err.value)
    weights = SPECS["lraspp_mobilenet_v3_large"].coco
    assert str(_at(tmp_path / "coco", weights)) in text
    assert f"dvc import-url {weights.url} {_at(tmp_path / 'coco', weights)}" in text
    assert not (tmp_path / "coco").exists()  # nothing was downloaded


def test_foreign_weights_are_refused_with_the_mismatch(tmp_path):
    _save(resnet50(weights=None).state_dict(), _at(tmp_path, SPECS["lraspp_mobilenet_v3_large"].imagenet))
    with pytest.raises(ModelError, match="do not match the model: missing"):
        build_model(ModelParams(pretrained="imagenet"), window=8, pretrained_dir=tmp_path)
    _at(tmp_path, SPECS["lraspp_mobilenet_v3_large"].coco).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="is not a readable PyTorch pretrained weights file"):
        build_model(ModelParams(pretrained="coco"), window=8, pretrained_dir=tmp_path)


def test_the_nets_input_side_is_bounded_by_lowering_the_scale():
    """A 720p video's 68x160 grid at input_scale 4 would enter the net at 272x640 (minutes an
    epoch on a CPU): max_input_side lowers the scale for that grid only, and output stays on the grid."""
    model = build_model(ModelParams(input_scale=4, max_input_side=320), window=4).eval()
    seen = []
    model.net.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        big = model(torch.rand(1, 3, 68, 160))["out"]
        small = model(torch.rand(1, 3, 32, 56))["out"]  # the sample's grid: at input_scale
    assert seen == [(136, 320), (128, 224)]
    assert big.shape == (1, 1, 2, 68, 160) and small.shape == (1, 1, 2, 32, 56)
    assert model.scale_for(400, 400) == 1  # never below 1
    assert build_model(ModelParams(input_scale=4, max_input_side=None), window=4).scale_for(68, 160) == 4
