"""The motion network: a torchvision segmentation net whose last layer outputs motion vectors.

Any of torchvision's segmentation models is built by name; its final classification conv (and
that of its auxiliary head, when kept) is replaced by a zero-initialised 1x1 conv with the motion
head's channels (:mod:`densemotion.heads`; the point head: ``2 * K``, one (x, y) displacement per
predicted step, K = 1 for the endpoint target, S - 1 for the whole trajectory). Zero init makes
the untrained net the zero-motion baseline.

:class:`MotionNet` wraps the segmentation net so that callers see one convention:
input ``(B, 3, H, W)`` float RGB in [0, 1] at grid resolution, output the head's prediction in
pixels of the tracking resolution (decoded with ``disp_scale``, a buffer set from the training
data so the net works at unit scale); ``model.head.point(...)`` is its ``(B, K, 2, H, W)`` motion.

Pretrained weights are read from ``models/pretrained/<model.pretrained>/`` under torchvision's
own file names (the folder the train stage depends on, so changing a file there re-runs
training) and never downloaded: a missing file is an error that says how to fetch it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights, ResNet101_Weights
from torchvision.models import segmentation as seg

from densemotion.errors import DensemotionError
from densemotion.heads import MotionHead, get_head
from densemotion.params import ModelParams
from densemotion.statedict import load_weights, mismatch, shapes_of

# torchvision's normalisation for all of its ImageNet / COCO weights
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_COCO_CLASSES = 21  # the COCO-with-VOC-labels checkpoints have 21 output classes
# running-statistics update rate of every batch norm (PyTorch's default); short trainings need it
BN_MOMENTUM = 0.1


class ModelError(DensemotionError):
    """Unknown model, missing or mismatched weights."""


@dataclass(frozen=True)
class _Spec:
    builder: Any  # torchvision builder function
    coco: Any  # whole-model weights enum member
    imagenet: Any  # backbone weights enum member
    backbone: str  # "resnet" or "mobilenet": how backbone keys map to ImageNet keys
    has_aux: bool


SPECS: dict[str, _Spec] = {
    "fcn_resnet50": _Spec(
        seg.fcn_resnet50,
        seg.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
        ResNet50_Weights.IMAGENET1K_V1,
        "resnet",
        True,
    ),
    "fcn_resnet101": _Spec(
        seg.fcn_resnet101,
        seg.FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
        ResNet101_Weights.IMAGENET1K_V1,
        "resnet",
        True,
    ),
    "deeplabv3_resnet50": _Spec(
        seg.deeplabv3_resnet50,
        seg.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
        ResNet50_Weights.IMAGENET1K_V1,
        "resnet",
        True,
    ),
    "deeplabv3_mobilenet_v3_large": _Spec(
        seg.deeplabv3_mobilenet_v3_large,
        seg.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        "mobilenet",
        True,
    ),
    "lraspp_mobilenet_v3_large": _Spec(
        seg.lraspp_mobilenet_v3_large,
        seg.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        "mobilenet",
        False,
    ),
}
MODEL_NAMES = tuple(SPECS)


def predicted_steps(target: str, window: int) -> list[int]:
    """Frame indices within a window of ``window`` frames whose displacement the net predicts:
    the last (endpoint) or every frame after the first (trajectory); K is their number."""
    if window < 2:
        raise ModelError(f"trajectory window must be at least 2 frames, got {window}")
    if target == "endpoint":
        return [window - 1]
    if target == "trajectory":
        return list(range(1, window))
    raise ModelError(f"model.target: unknown target {target!r} (endpoint or trajectory)")


def upsampling_factor(h: int, w: int, input_scale: int, max_input_side: int) -> int:
    """How much an (h, w) grid image is upsampled before the net: ``input_scale``, lowered (to 1 at
    least) so that the net's input is at most ``max_input_side`` (0: no bound) on its longest
    side. Plain ints, so that TorchScript compiles it into an exported model too."""
    if max_input_side <= 0:
        return input_scale
    return max(1, min(input_scale, max_input_side // max(h, w)))


class MotionNet(nn.Module):
    """Segmentation net -> per-pixel displacement, with input normalisation and rescaling."""

    net: Any  # a torchvision segmentation model (torchvision ships no type information)
    mean: torch.Tensor  # buffers, (1, 3, 1, 1)
    std: torch.Tensor
    disp_scale: torch.Tensor  # ()

    def __init__(
        self,
        net: nn.Module,
        *,
        steps: int,
        input_scale: int,
        has_aux: bool,
        max_input_side: int | None = None,
        head: MotionHead | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.head = head if head is not None else get_head()
        self.steps = steps
        self.input_scale = input_scale
        self.max_input_side = max_input_side
        self.has_aux = has_aux
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        # pixels per unit of the net's raw output; set from the training data (saved in state_dict)
        self.register_buffer("disp_scale", torch.ones(()))

    @property
    def backbone(self) -> nn.Module:
        return self.net.backbone

    def scale_for(self, h: int, w: int) -> int:
        """The upsampling factor of an (h, w) grid (:func:`upsampling_factor`)."""
        return upsampling_factor(h, w, self.input_scale, self.max_input_side or 0)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> {"out": prediction[, "aux": prediction]}, each decoded by
        the head (the point head's: (B, K, 2, H, W) px)."""
        h, w = image.shape[-2:]
        x = (image - self.mean) / self.std
        s = self.scale_for(h, w)
        if s > 1:
            x = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        raw = self.net(x)  # {"out": (B, C, sH, sW)[, "aux": ...]}
        result = {}
        for key, value in raw.items():
            if s > 1:  # area average back to the grid: the inverse pixel mapping of the upsampling
                value = F.avg_pool2d(value, s)
            result[key] = self.head.decode(value, self.steps, self.disp_scale)  # (B, C, h, w) -> prediction
        return result


class MotionConv(nn.Conv2d):
    """A 1x1 motion conv whose output channels from ``detach_from`` on read the features detached:
    their loss trains this conv's weights for them but does not reach the features, which the
    first channels' loss alone shapes (the Laplace head's scale reads the location's features)."""

    def __init__(self, in_channels: int, out_channels: int, detach_from: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)
        self.detach_from = detach_from

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H, W)
        k = self.detach_from
        bias = self.bias
        assert bias is not None
        kept = F.conv2d(x, self.weight[:k], bias[:k])
        return torch.cat([kept, F.conv2d(x.detach(), self.weight[k:], bias[k:])], dim=1)


def _zero_conv(old: nn.Conv2d, out_channels: int, detach_from: int | None = None) -> nn.Conv2d:
    conv = (
        nn.Conv2d(old.in_channels, out_channels, kernel_size=1)
        if detach_from is None
        else MotionConv(old.in_channels, out_channels, detach_from)
    )
    nn.init.zeros_(conv.weight)
    assert conv.bias is not None  # made with bias above
    nn.init.zeros_(conv.bias)
    return conv


def _replace_heads(net: Any, out_channels: int, detach_from: int | None = None) -> None:
    """Swap the final classification convs for motion convs with ``out_channels`` outputs (those
    from ``detach_from`` on with their gradient stopped at the features: :class:`MotionConv`)."""
    if isinstance(net, seg.LRASPP):
        head = net.classifier
        head.low_classifier = _zero_conv(head.low_classifier, out_channels, detach_from)
        head.high_classifier = _zero_conv(head.high_classifier, out_channels, detach_from)
        return
    # FCNHead and DeepLabHead are Sequentials ending with the 1x1 classification conv
    net.classifier[-1] = _zero_conv(net.classifier[-1], out_channels, detach_from)
    if net.aux_classifier is not None:
        net.aux_classifier[-1] = _zero_conv(net.aux_classifier[-1], out_channels, detach_from)


def _output_convs(net: Any) -> list[nn.Conv2d]:
    """The last convs whose outputs are each a whole prediction: LRASPP sums two (its low and high
    classifiers), so only the high one; FCN and DeepLab: the classifier's and the aux head's."""
    if isinstance(net, seg.LRASPP):
        return [net.classifier.high_classifier]
    convs = [net.classifier[-1]]
    if net.aux_classifier is not None:
        convs.append(net.aux_classifier[-1])
    return convs


def build_model(
    params: ModelParams, window: int, *, load_pretrained: bool = True, pretrained_dir: str | Path | None = None
) -> MotionNet:
    """Build ``params.name`` predicting ``params.target`` for trajectories of ``window`` frames.

    With ``load_pretrained`` the weights named by ``params.pretrained`` are loaded from
    ``pretrained_dir`` (default :func:`pretrained_dir`) before the heads are replaced (pass False
    when a checkpoint's weights will be loaded anyway).
    """
    spec = SPECS.get(params.name)
    if spec is None:
        raise ModelError(f"model.name: unknown model {params.name!r}; available: {', '.join(MODEL_NAMES)}")
    if params.aux_loss and not spec.has_aux:
        raise ModelError(f"model.aux_loss: {params.name} has no auxiliary head (set it to false)")
    steps = len(predicted_steps(params.target, window))
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": _COCO_CLASSES}
    if spec.has_aux:
        kwargs["aux_loss"] = params.aux_loss
    net = spec.builder(**kwargs)
    folder = Path(pretrained_dir) if pretrained_dir is not None else default_pretrained_dir(params.pretrained)
    if load_pretrained and params.pretrained == "coco":
        _load_coco(net, spec, params, folder)
    elif load_pretrained and params.pretrained == "imagenet":
        _load_imagenet(net, spec, params, folder)
    head = get_head(params.head, params.hypotheses)
    _replace_heads(net, head.channels(steps), head.detached_from(steps))
    for conv in _output_convs(net):
        head.initialise(conv, steps)
    for module in net.modules():  # MobileNetV3's 0.01 needs ~1000s of steps before eval mode works
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = BN_MOMENTUM
    return MotionNet(
        net,
        steps=steps,
        input_scale=params.input_scale,
        has_aux=params.aux_loss,
        max_input_side=params.max_input_side,
        head=head,
    )


# --- pretrained weights -----------------------------------------------------------------------


def default_pretrained_dir(pretrained: str) -> Path:
    """``models/pretrained/<pretrained>``: where the train stage finds (and depends on) the files."""
    return Path("models") / "pretrained" / pretrained


def weights_file_name(weights: Any) -> str:
    """torchvision's file name of ``weights`` (a weights enum member), as its URL has it."""
    return os.path.basename(urlparse(weights.url).path)


def _fetch_help(weights: Any, path: Path) -> str:
    return (
        f"densemotion never downloads weights. Where there is internet, version the file with DVC:\n"
        f"  dvc import-url {weights.url} {path}\n"
        f"  git add {path.parent}/*.dvc {path.parent}/.gitignore && dvc push\n"
        f"(or copy the file there; it is torchvision's {type(weights).__name__}.{weights.name}. "
        "Or set model.pretrained=none to train from scratch.)"
    )


def _read_weights(params: ModelParams, weights: Any, folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of ``weights`` from ``folder``; never downloads."""
    path = folder / weights_file_name(weights)
    if not path.is_file():
        raise ModelError(
            f"model.pretrained={params.pretrained}: {params.name} needs {path.name}, not found at {path}.\n"
            f"{_fetch_help(weights, path)}"
        )
    state = load_weights(path, ModelError, "pretrained weights file")
    for key in ("model", "state_dict"):  # some training scripts wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"pretrained weights {path} are not a state dict of tensors")
    return state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    problems = mismatch(state, shapes_of(module.state_dict()), shown=5)
    if problems:
        raise ModelError(f"{what} do not match the model: {problems}")
    module.load_state_dict(state, strict=True)


def _load_coco(net: nn.Module, spec: _Spec, params: ModelParams, folder: Path) -> None:
    state = _read_weights(params, spec.coco, folder)
    if getattr(net, "aux_classifier", None) is None:  # aux head disabled: its weights are not needed
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    _load_strict(net, state, f"COCO weights for {params.name}")


def _load_imagenet(net: Any, spec: _Spec, params: ModelParams, folder: Path) -> None:
    state = _read_weights(params, spec.imagenet, folder)
    if spec.backbone == "resnet":  # IntermediateLayerGetter keeps conv1 .. layer4; fc is dropped
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    else:  # the segmentation backbone is mobilenet's `features`; its classifier is dropped
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    _load_strict(net.backbone, state, f"ImageNet backbone weights for {params.name}")


def set_backbone_trainable(model: MotionNet, trainable: bool) -> None:
    """Freeze (or unfreeze) the backbone: no gradients, and its batch norms keep their statistics."""
    model.backbone.requires_grad_(trainable)
    if model.training:
        model.backbone.train(trainable)
