"""Published checkpoints: one record per weights file a learned tracker loads (torchvision's weights-enum idea).

A tracker package declares a :class:`CheckpointRecord` for each published file it can load: its
name and URL, where the state dict sits in the file, how to build the untrained network, the
command that fetches the file, and how test weights are made. The record does the rest, the same
way for every tracker: it reads the file safely (``torch.load(weights_only=True)`` via
:func:`densemotion.statedict.load_weights`), checks every key and shape against the network
before loading (strict), says how to fetch a missing file, and writes the file format for tests.

Records are declared in the tracker package's light ``__init__`` (next to ``TRACKER``, whose
``weights`` is the record's file name), so this module imports torch only when a method runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from densemotion.atomic import atomic_path
from densemotion.statedict import load_weights, mismatch, shapes_of
from densemotion.tracking.base import TrackerError, import_url_command

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

NetT = TypeVar("NetT", bound="nn.Module")


class CheckpointError(TrackerError):
    """A tracker's weights file is missing, unreadable, or not the published model it should hold."""


@dataclass(frozen=True)
class Fixture:
    """How a record's test weights are made: seeded, deterministic, never the published values.

    With ``gain`` (the weights of the stored reference outputs: docs/pips.md, "How it is checked";
    tests/fixtures/alltracker/README.md): parameter i of the sorted parameter names gets
    v = default_rng([seed, i]).standard_normal(shape); tensors of 2+ dimensions
    gain * v / sqrt(prod(shape[1:])), 1-D weights 1 + 0.1 v, the rest 0.1 v, all float64; then the
    entries ``buffers(net)`` gives (what is not a parameter), net being built on the meta device.
    With ``gain=None``: the network's own initialisation under ``torch.manual_seed(seed)`` (for
    tests of shapes and speed only).
    """

    seed: int
    gain: float | None
    buffers: Callable[[nn.Module], dict[str, Tensor]] | None = None


@dataclass(frozen=True)
class CheckpointRecord(Generic[NetT]):
    """One published weights file of a tracker, and everything done with it.

    ``key`` is the state dict's entry in the file (``torch.save({key: state_dict})``), None for a
    file that is the state dict itself. ``build(**kwargs)`` makes the untrained network (its
    keyword arguments, such as a stride, are :meth:`load`'s); it must download nothing, and is
    also called on the meta device for the shapes. ``fetch(url, path)`` is the shell command that
    puts the file at ``path`` as DVC data, shown when it is missing. ``title`` names the model in
    messages ("PIPs": "... does not match the published PIPs model"), ``noun`` the file.
    ``hint(state)``, when given, adds to the message for a state dict that does not match (for
    instance which other model it fits).
    """

    tracker: str  # the tracker that loads it, from models/<tracker>/
    title: str  # the model in messages: "PIPs", "RAFT small"
    file_name: str  # its published name, which it keeps in models/<tracker>/
    url: str  # where it is published (PIPs: the archive that holds it)
    key: str | None  # the state dict's entry in the file; None: the file is the state dict
    build: Callable[..., NetT]  # the untrained network
    fixture: Fixture  # the test weights
    fetch: Callable[[str, str | Path], str] = import_url_command  # (url, path) -> shell command
    noun: str = "checkpoint"  # the file in messages: "checkpoint", "weights file"
    hint: Callable[[Mapping[str, Any]], str] | None = None  # more for a mismatch message

    def fetch_command(self, path: str | Path) -> str:
        """The shell commands that put the published file at ``path`` (DVC-tracked)."""
        return self.fetch(self.url, path)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Key -> shape of the published state dict (built on the meta device: no memory used)."""
        import torch

        with torch.device("meta"):
            return shapes_of(self.build().state_dict())

    def read_state_dict(self, path: str | Path) -> dict[str, Tensor]:
        """The state dict in a published-format file (not yet checked); clear errors naming ``path``."""
        import torch

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"{self.title} {self.noun} {path} not found; fetch it with: {self.fetch_command(path)}"
            )
        ckpt = load_weights(path, CheckpointError, self.noun)
        if self.key is None:
            if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
                raise CheckpointError(f"{path} is not a state_dict (a dict of tensors), got {type(ckpt).__name__}")
            return ckpt
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get(self.key), dict):
            got = sorted(map(str, ckpt))[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
            article = "an" if self.title[:1].lower() in "aeiou" else "a"
            raise CheckpointError(
                f"{path} is not {article} {self.title} {self.noun}: expected a dict with '{self.key}', got {got}"
            )
        return ckpt[self.key]

    def check(self, state: Mapping[str, Any], source: str) -> None:
        """Raise CheckpointError listing the missing, unexpected and wrongly shaped keys of ``state``."""
        problems = mismatch(state, self.expected_shapes())
        if problems:
            hint = self.hint(state) if self.hint is not None else ""
            raise CheckpointError(f"{source} does not match the published {self.title} model{hint}: {problems}")

    def load(
        self,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **build_kwargs: Any,
    ) -> NetT:
        """Build the network (in ``dtype``; None: as built, float32) and load the file at ``path``
        into it (checked, strict), in eval mode on ``device``."""
        state = self.read_state_dict(path)
        self.check(state, str(path))
        net = self.build(**build_kwargs)
        if dtype is not None:
            net = net.to(dtype)
        net.load_state_dict(state, strict=True)
        return net.to(device).eval()

    def fixture_state_dict(self, seed: int | None = None, gain: float | None = None) -> dict[str, Tensor]:
        """The test weights of :class:`Fixture` (its seed and gain unless given here)."""
        import torch

        seed = self.fixture.seed if seed is None else seed
        gain = self.fixture.gain if gain is None else gain
        if gain is None:  # the network's own initialisation
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.build().state_dict()
        with torch.device("meta"):
            net = self.build()
        shapes = {k: tuple(p.shape) for k, p in net.named_parameters()}
        out = {}
        for i, (key, shape) in enumerate(sorted(shapes.items())):
            v = np.random.default_rng([seed, i]).standard_normal(shape)
            if len(shape) >= 2:
                v = gain * v / np.sqrt(np.prod(shape[1:]))
            elif key.endswith("weight"):
                v = 1 + 0.1 * v
            else:
                v = 0.1 * v
            out[key] = torch.from_numpy(v)
        if self.fixture.buffers is not None:
            out.update(self.fixture.buffers(net))
        return out

    def save(self, state: Mapping[str, Tensor], path: str | Path) -> Path:
        """Write ``state`` in the published file format, atomically."""
        import torch

        with atomic_path(path) as tmp:
            torch.save(state if self.key is None else {self.key: state}, tmp)
        return Path(path)

    def save_fixture(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the fixture weights in the published file format, floating tensors in ``dtype``
        (None: float32), for tests and pipelines without the published file."""
        import torch

        dtype = torch.float32 if dtype is None else dtype
        state = self.fixture_state_dict()
        if any(v.is_floating_point() and v.dtype != dtype for v in state.values()):  # else saved as it is
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        return self.save(state, path)
