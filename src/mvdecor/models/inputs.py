"""Network inputs: which rendered buffers enter the network, and their standardisation.

A *modality* is one rendered buffer of a :class:`~mvdecor.render.views.RenderedView`:

============ ========== =================================================
name         channels   source buffer
============ ========== =================================================
``grey``     1          ``shading`` (grey Lambert shading, untextured meshes)
``rgb``      3          ``rgb`` (texture colour x shading, textured meshes)
``normal``   3          ``normals`` (world-space, in ``[-1, 1]``)
``depth``    1          ``depth_normalized`` (per-view min-max, ``[0, 1]``)
``position`` 3          ``hit_points`` (the surface point in the shape's
                        unit-sphere-normalised frame)
============ ========== =================================================

``position`` is not in the paper: it tells the network *where on the shape* a
pixel lies, the cue that learning-free label transfer uses. It is consistent
across views of a shape, so it would let the pre-training's correspondence task
be solved by reading it off; add it at fine-tuning instead
(``finetune.add_modalities``), where a pre-trained network gets zero-initialised
filters for it.

Channels are always stacked in this fixed order, whatever order the names are
given in: colour (``grey`` *or* ``rgb``), then ``normal``, then ``depth``, then
``position``. The
paper's input for untextured shapes is ``("grey", "normal", "depth")``: 5
channels; ``("rgb", "normal", "depth")`` gives 7.

Standardisation (:class:`ChannelStats`): each channel's mean and standard
deviation are measured over the **foreground pixels** of the training views
(not hard-coded ImageNet values: these are not photographs). ``normalize``
standardises the foreground and then sets every background pixel to exactly
0, so the background stays one constant value the network can recognise, as
it is in the raw renders (where every buffer is 0 off the object). After
standardisation 0 is also the foreground mean of each channel; the network
still tells background apart because *all* channels are 0 there together,
and it needs no separate mask channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from mvdecor.errors import ConfigError

__all__ = [
    "MODALITIES",
    "ChannelStats",
    "ViewLike",
    "channel_count",
    "channel_names",
    "flip_view_array",
    "input_channel_positions",
    "parse_modalities",
    "rgb_channel_indices",
    "view_to_array",
    "views_to_tensor",
]

#: Input modalities and their channel counts, in stacking order.
MODALITIES: dict[str, int] = {"grey": 1, "rgb": 3, "normal": 3, "depth": 1, "position": 3}

_CHANNEL_NAMES = {
    "grey": ("grey",),
    "rgb": ("r", "g", "b"),
    "normal": ("nx", "ny", "nz"),
    "depth": ("depth",),
    "position": ("px", "py", "pz"),
}


class ViewLike(Protocol):
    """What :func:`view_to_array` needs from a view (a ``RenderedView`` has it all)."""

    face_ids: np.ndarray
    shading: np.ndarray
    rgb: np.ndarray
    normals: np.ndarray
    depth_normalized: np.ndarray
    hit_points: np.ndarray


def parse_modalities(modalities: str | Iterable[str]) -> tuple[str, ...]:
    """Validate modality names; return them in the canonical stacking order.

    ``modalities`` is a sequence of names or one string (``"grey,normal,depth"``
    or ``"grey+normal+depth"``).

    Raises
    ------
    ConfigError
        An unknown or repeated name, no name at all, or both ``grey`` and ``rgb``.
    """
    if isinstance(modalities, str):
        names = [n.strip() for n in modalities.replace("+", ",").split(",") if n.strip()]
    else:
        names = [str(n).strip() for n in modalities]
    valid = ", ".join(MODALITIES)
    if not names:
        raise ConfigError(None, f"no input modality given; choose from: {valid}")
    for name in names:
        if name not in MODALITIES:
            raise ConfigError(None, f"unknown input modality {name!r}; valid modalities: {valid}")
    if len(set(names)) != len(names):
        raise ConfigError(None, f"input modalities repeat a name: {names}")
    if "grey" in names and "rgb" in names:
        raise ConfigError(None, "input modalities 'grey' and 'rgb' exclude each other; choose one colour")
    return tuple(name for name in MODALITIES if name in names)


def channel_count(modalities: str | Iterable[str]) -> int:
    """Number of input channels for ``modalities`` (e.g. 5 for grey + normal + depth)."""
    return sum(MODALITIES[name] for name in parse_modalities(modalities))


def channel_names(modalities: str | Iterable[str]) -> tuple[str, ...]:
    """Name of each input channel, in order (``("grey", "nx", "ny", "nz", "depth")``...)."""
    return tuple(c for name in parse_modalities(modalities) for c in _CHANNEL_NAMES[name])


def input_channel_positions(old: str | Iterable[str], new: str | Iterable[str]) -> list[int]:
    """Where each input channel of ``old`` modalities sits among those of ``new`` (a superset).

    Raises
    ------
    ConfigError
        ``new`` lacks a modality of ``old``.
    """
    old_m, new_m = parse_modalities(old), parse_modalities(new)
    missing = [m for m in old_m if m not in new_m]
    if missing:
        raise ConfigError(
            None, f"input modalities {list(new_m)} lack {missing} of the network's {list(old_m)}"
        )
    names = channel_names(new_m)
    return [names.index(c) for c in channel_names(old_m)]


def rgb_channel_indices(modalities: str | Iterable[str]) -> tuple[int, ...]:
    """Input channels holding R, G, B (``(0, 1, 2)`` with ``rgb``, else ``()``).

    Pass it as ``rgb_channels`` to
    :func:`~mvdecor.models.resnet.load_torchvision_state_dict`, so that only real
    colour channels receive ImageNet's RGB filters.
    """
    return (0, 1, 2) if "rgb" in parse_modalities(modalities) else ()


def _mask_of(view: Any) -> np.ndarray:
    mask = getattr(view, "mask", None)
    if mask is None:
        mask = np.asarray(view.face_ids) != -1
    return np.asarray(mask, dtype=bool)


def view_to_array(view: ViewLike, modalities: str | Iterable[str]) -> np.ndarray:
    """The network input of one view: ``(C, H, W)`` float32, channels in canonical order.

    Raw buffer values, 0 on background (the renderer's contract); standardise
    with :meth:`ChannelStats.normalize`.
    """
    parts = []
    for name in parse_modalities(modalities):
        if name == "grey":
            parts.append(np.asarray(view.shading, dtype=np.float32)[None])
        elif name == "rgb":
            parts.append(np.asarray(view.rgb, dtype=np.float32).transpose(2, 0, 1))
        elif name == "normal":
            parts.append(np.asarray(view.normals, dtype=np.float32).transpose(2, 0, 1))
        elif name == "depth":
            parts.append(np.asarray(view.depth_normalized, dtype=np.float32)[None])
        else:  # position
            parts.append(np.asarray(view.hit_points, dtype=np.float32).transpose(2, 0, 1))
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def flip_view_array(
    array: np.ndarray,
    mask: np.ndarray,
    modalities: str | Iterable[str],
    right_axis: np.ndarray,
    camera_center: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror a raw view array ``(C, H, W)`` and its mask ``(H, W)`` left to right.

    The mirrored image is the view of the scene mirrored across the camera's
    vertical plane (the plane through the camera centre ``c`` with normal ``r``,
    the camera's right axis in world coordinates, a unit vector), so the
    world-space channels are mirrored with it: normals ``n - 2 (n . r) r``,
    positions ``p - 2 ((p - c) . r) r`` (``camera_center`` is needed only when
    ``position`` is an input). Shading, colour and depth are unchanged by a
    mirror. Flipping twice gives back the input up to rounding; background
    pixels stay 0 in the colour, normal and depth channels.
    """
    names = channel_names(modalities)
    normal = [i for i, n in enumerate(names) if n in ("nx", "ny", "nz")]
    position = [i for i, n in enumerate(names) if n in ("px", "py", "pz")]
    flipped = np.ascontiguousarray(array[:, :, ::-1], dtype=np.float32)
    r = np.asarray(right_axis, np.float32).reshape(3, 1, 1)
    if normal:
        n = flipped[normal]
        flipped[normal] = n - 2.0 * (n * r).sum(axis=0, keepdims=True) * r
    if position:
        if camera_center is None:
            raise ValueError("flipping a view with the position input needs the camera centre")
        c = np.asarray(camera_center, np.float32).reshape(3, 1, 1)
        p = flipped[position]
        mirrored = p - 2.0 * ((p - c) * r).sum(axis=0, keepdims=True) * r
        flipped[position] = np.where(mask[None, :, ::-1], mirrored, 0.0)
    return flipped, np.ascontiguousarray(mask[:, ::-1])


def views_to_tensor(
    views: Sequence[ViewLike],
    modalities: str | Iterable[str],
    stats: ChannelStats | None = None,
) -> torch.Tensor:
    """Stack views into a ``(B, C, H, W)`` float32 tensor, standardised by ``stats`` if given."""
    if len(views) == 0:
        raise ValueError("views_to_tensor needs at least one view")
    modalities = parse_modalities(modalities)
    array = np.stack([view_to_array(v, modalities) for v in views])
    if stats is not None:
        array = stats.normalize(array, np.stack([_mask_of(v) for v in views]))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


@dataclass(frozen=True, eq=False)
class ChannelStats:
    """Per-channel foreground mean and standard deviation of the network input.

    Attributes
    ----------
    mean, std : (C,) float32
        Read-only arrays; ``std`` is never 0 (a channel constant over the
        foreground gets ``std = 1``, so it is only centred).
    modalities : tuple of str
        The modalities the channels come from (canonical order), or ``()`` if unknown.
    """

    mean: np.ndarray
    std: np.ndarray
    modalities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float32).reshape(-1)
        std = np.array(self.std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"mean and std differ in length: {mean.shape[0]} vs {std.shape[0]}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("ChannelStats needs finite means and positive finite standard deviations")
        modalities = parse_modalities(self.modalities) if self.modalities else ()
        if modalities and channel_count(modalities) != mean.shape[0]:
            raise ValueError(f"{mean.shape[0]} channel statistics do not fit modalities {modalities}")
        mean.setflags(write=False)
        std.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "modalities", modalities)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_arrays(
        cls,
        arrays: Iterable[np.ndarray],
        masks: Iterable[np.ndarray],
        modalities: str | Iterable[str] = (),
        min_std: float = 1e-6,
    ) -> ChannelStats:
        """Statistics over the foreground pixels (``mask`` true) of ``(C, H, W)`` arrays.

        Accumulated in float64; background pixels are never looked at.
        """
        total = sq_total = None
        count = 0
        for array, mask in zip(arrays, masks, strict=True):
            array = np.asarray(array, dtype=np.float64)
            mask = np.asarray(mask, dtype=bool)
            if array.ndim != 3 or mask.shape != array.shape[1:]:
                raise ValueError(
                    f"expected a (C, H, W) array and an (H, W) mask, got {array.shape}, {mask.shape}"
                )
            fg = array[:, mask]  # (C, n)
            if total is None:
                total = np.zeros(array.shape[0])
                sq_total = np.zeros(array.shape[0])
            elif array.shape[0] != total.shape[0]:
                raise ValueError("arrays differ in channel count")
            total += fg.sum(axis=1)
            sq_total += np.square(fg).sum(axis=1)
            count += fg.shape[1]
        if total is None or count == 0:
            raise ValueError("no foreground pixels to compute channel statistics from")
        mean = total / count
        var = np.maximum(sq_total / count - np.square(mean), 0.0)
        std = np.sqrt(var)
        std = np.where(std < min_std, 1.0, std)
        return cls(mean, std, parse_modalities(modalities) if modalities else ())

    @classmethod
    def from_views(cls, views: Iterable[ViewLike], modalities: str | Iterable[str]) -> ChannelStats:
        """Statistics over the foreground pixels of (training) views."""
        modalities = parse_modalities(modalities)
        views = list(views)
        return cls.from_arrays(
            (view_to_array(v, modalities) for v in views),
            (_mask_of(v) for v in views),
            modalities,
        )

    def normalize(self, x: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor):
        """``(x - mean) / std`` on the foreground, exactly 0 on the background.

        ``x`` is ``(C, H, W)`` or ``(B, C, H, W)`` (numpy or torch); ``mask`` is the
        matching ``(H, W)`` or ``(B, H, W)`` foreground mask. Returns a new array
        (or tensor) of ``x``'s kind.
        """
        if x.shape[-3] != self.channels:
            raise ValueError(f"input has {x.shape[-3]} channels, statistics have {self.channels}")
        if tuple(mask.shape) != tuple(x.shape[:-3]) + tuple(x.shape[-2:]):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not fit input shape {tuple(x.shape)}")
        shape = (-1, 1, 1)
        if isinstance(x, torch.Tensor):
            mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).reshape(shape)
            std = torch.tensor(self.std, device=x.device, dtype=x.dtype).reshape(shape)
            mask_t = torch.as_tensor(mask, device=x.device).bool().unsqueeze(-3)
            return torch.where(mask_t, (x - mean) / std, torch.zeros((), dtype=x.dtype, device=x.device))
        x = np.asarray(x)
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        mask_n = np.expand_dims(np.asarray(mask, dtype=bool), -3)
        out = (x - self.mean.reshape(shape)) / self.std.reshape(shape)
        return np.where(mask_n, out, 0).astype(out_dtype, copy=False)

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for a checkpoint or a JSON file."""
        return {
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "modalities": list(self.modalities),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelStats:
        """Inverse of :meth:`to_dict`; raises :class:`ConfigError` on a malformed dict."""
        try:
            return cls(data["mean"], data["std"], tuple(data.get("modalities", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(None, f"invalid channel statistics: {exc}") from exc

    def __repr__(self) -> str:
        mean = np.array2string(self.mean, precision=3)
        std = np.array2string(self.std, precision=3)
        return f"ChannelStats(mean={mean}, std={std}, modalities={self.modalities})"
