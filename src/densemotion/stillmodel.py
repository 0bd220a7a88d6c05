"""The whole still -> motion computation as one torch module: what :class:`~densemotion.predictor.MotionPredictor`
runs and what ``densemotion export`` writes, so that both give the same numbers.

``StillMotionModel(image)``: image (B, 3, H, W) RGB, uint8 or float in 0 .. 255, any H and W ->
``(motion, grid_motion)``, both in the image's own px:

1. **Training scale** (``side`` > 0): the image is resized (bilinear, antialiased) so that its
   longest side is ``side`` px, the training videos' tracking size (the checkpoint records it),
   aspect kept; ``side`` 0 keeps it as it is (the native scale).
2. **Grid image**: the mean colour of each g x g block (``grid_stride``, the training stores' own),
   as a trajectory store's ``frames0``. When step 1 changed nothing those means are rounded to
   whole levels as OpenCV rounds them, exactly the stores' uint8 ``frames0`` (so the motion at the grid points is what
   ``evaluate`` scores); a resized image keeps them unrounded (no rounding edge between an export
   and the predictor).
3. **Net**: MotionNet's own normalisation, upsampling (:func:`~densemotion.model.upsampling_factor`),
   segmentation net, area average back to the grid and the head's point decoding
   (``head.point_decoder``): (B, K, 2, Hg, Wg) px of the resized image.
4. **Back to the image**: the grid field upsampled bilinearly over pixel centres to the resized
   size (the rows and columns past the last whole block repeat the border), then to (H, W), and
   its x and y multiplied by W / w' and H / h': motion (B, K, 2, H, W) in the image's px.
   ``grid_motion`` (B, K, 2, Hg, Wg) is step 3 in the image's px; grid point (i, j) is at
   x = ((j + 0.5) g) W / w' - 0.5, y = ((i + 0.5) g) H / h' - 0.5.

Every size is computed from the input's shape, so TorchScript (``torch.jit.script``) and the ONNX
exporter (``torch.export`` with dynamic H and W) keep it dynamic. Tested against
:func:`densemotion.evaluation.predict` (tests/test_predict.py) so that the two stay one computation.

Letters: B batch, K predicted steps, H x W image, h' x w' resized, Hg x Wg grid.
"""

import torch  # no `from __future__ import annotations`: TorchScript reads the annotations as types
import torch.nn.functional as F
from torch import nn

from densemotion.model import MotionNet, upsampling_factor


class StillMotionModel(nn.Module):
    """A trained :class:`~densemotion.model.MotionNet` as image -> motion (see the module docstring)."""

    mean: torch.Tensor  # buffers, (1, 3, 1, 1), (1, 3, 1, 1) and ()
    std: torch.Tensor
    disp_scale: torch.Tensor

    def __init__(self, model: MotionNet, grid_stride: int, side: int = 0) -> None:
        super().__init__()
        if grid_stride < 1 or side < 0 or 0 < side < grid_stride:
            raise ValueError(f"grid_stride must be >= 1 and side 0 or >= grid_stride (got {grid_stride}, {side})")
        self.net = model.net
        self.decoder = model.head.point_decoder(model.steps)
        self.register_buffer("mean", model.mean.detach().clone())
        self.register_buffer("std", model.std.detach().clone())
        self.register_buffer("disp_scale", model.disp_scale.detach().clone())
        self.grid_stride = int(grid_stride)
        self.side = int(side)
        self.input_scale = int(model.input_scale)
        self.max_input_side = int(model.max_input_side or 0)
        # at the training scale the grid's longest side is always side // g: one upsampling factor
        self.fixed_factor = 0
        if side:
            self.fixed_factor = upsampling_factor(side // grid_stride, 1, self.input_scale, self.max_input_side)
        self.eval()

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """(h', w'): the size the image is seen at (step 1), never under one block."""
        if self.side <= 0:
            return h, w
        longest = max(h, w)
        h2 = (h * self.side + longest // 2) // longest  # round(h * side / longest)
        w2 = (w * self.side + longest // 2) // longest
        return max(h2, self.grid_stride), max(w2, self.grid_stride)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, 3, H, W) RGB 0 .. 255 -> motion (B, K, 2, H, W), grid_motion (B, K, 2, Hg, Wg), image px."""
        b, h, w = image.shape[0], image.shape[2], image.shape[3]
        h2, w2 = self.resized_size(h, w)
        field = self.net_motion(self.grid_image(image))  # (B, K, 2, Hg, Wg) px of the resized image
        k, hg, wg = field.shape[1], field.shape[3], field.shape[4]
        up = upsample_field(field.reshape(b, k * 2, hg, wg), self.grid_stride, h2, w2, h, w)  # (B, 2K, H, W)
        to_image = torch.stack([torch.tensor(w / w2), torch.tensor(h / h2)]).to(field.device)  # (2,) x, y
        to_image = to_image.view(1, 1, 2, 1, 1)
        return up.view(b, k, 2, h, w) * to_image, field * to_image

    def grid_image(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) RGB 0 .. 255 -> (B, 3, Hg, Wg) in [0, 1]: steps 1 and 2, what the net sees."""
        h, w = image.shape[2], image.shape[3]
        h2, w2 = self.resized_size(h, w)
        x = image.float()
        if self.side > 0:
            x = F.interpolate(x, size=(h2, w2), mode="bilinear", align_corners=False, antialias=True)
        cells = F.avg_pool2d(x, self.grid_stride)  # (B, 3, Hg, Wg): each block's mean, levels
        unchanged = torch.tensor(abs(h2 - h) + abs(w2 - w), device=image.device) == 0
        cells = torch.where(unchanged, self.round_levels(cells), cells)  # the stores' uint8 frames0
        return cells / 255.0

    def round_levels(self, cells: torch.Tensor) -> torch.Tensor:
        """Block means rounded as OpenCV's area resize (the stores' ``frames0``) rounds them: its 2x
        path rounds halves up, the general one to even (checked for g = 1 .. 10 in the tests)."""
        if self.grid_stride == 2:
            return torch.floor(cells + 0.5)
        return torch.round(cells)

    def net_motion(self, cells: torch.Tensor) -> torch.Tensor:
        """cells (B, 3, Hg, Wg) in [0, 1] -> (B, K, 2, Hg, Wg) px: MotionNet.forward's computation."""
        hg, wg = cells.shape[2], cells.shape[3]
        s = self.fixed_factor
        if s <= 0:
            s = upsampling_factor(hg, wg, self.input_scale, self.max_input_side)
        x = (cells - self.mean) / self.std
        if s > 1:
            x = F.interpolate(x, scale_factor=float(s), mode="bilinear", align_corners=False)
        raw = self.net(x)["out"]  # (B, C, s Hg, s Wg)
        if s > 1:
            raw = F.avg_pool2d(raw, s)
        return self.decoder(raw, self.disp_scale)


def upsample_field(field: torch.Tensor, g: int, h2: int, w2: int, h: int, w: int) -> torch.Tensor:
    """(B, C, Hg, Wg) at the grid points of an (h', w') image -> (B, C, H, W): bilinear over pixel
    centres to (h', w') (the rows and columns past the last whole block repeat the border), then
    bilinear to (H, W). Values unchanged (a displacement field still needs its px scaling)."""
    hg, wg = field.shape[2], field.shape[3]
    up = F.interpolate(field, size=(hg * g, wg * g), mode="bilinear", align_corners=False)
    up = F.pad(up, (0, w2 - wg * g, 0, h2 - hg * g), mode="replicate")  # (B, C, h', w')
    return F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
