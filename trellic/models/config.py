"""The model config: architecture, channel counts, quantizer steps, prior widths; versioned.

Every weights file stores it as JSON. Version 1 (the files shipped before the
latent-codec layer) held exactly ``N``, ``M`` and ``tcq_delta`` and meant the
mbt2018-mean architecture; it loads as that. From version 2 the config names
its architecture (:mod:`trellic.models.architectures`). A field the file lacks
takes its default, so adding an optional field keeps every older file
loading; a version newer than this trellic, a field it does not know, an
unknown architecture or out-of-range values are errors (ValueError): the
config sizes the model, so it is checked before anything is allocated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from trellic.models.architectures import ARCHITECTURES

CONFIG_VERSION = 2
VERSION_1_ARCHITECTURE = "mbt2018-mean"
MAX_CHANNELS = 1024
# Quantizer steps: the coding tables have a row per (quantizer, scale level) as wide as
# 10 standard deviations of the widest scale (64) in steps of the level spacing (delta for
# USQ, 2 * delta for TCQ), and every symbol needs a count of 2**16: a step of 1e-6 would
# ask for 160 GB. At MIN_DELTA the widest row has 12,805 symbols (USQ) and the tables
# take a few MB; the trained grid is 1 and useful steps lie within 0.3..3.
MIN_DELTA = 0.05
MAX_DELTA = 1e3
MAX_PRIOR_LAYERS, MAX_PRIOR_WIDTH = 8, 16  # bounds of the factorized prior's density network


@dataclass(frozen=True)
class ModelConfig:
    """architecture: a name in the registry; N transform channels, M latent channels;
    tcq_delta: the step of the TCQ tables; usq_delta: the step of the USQ/RDOQ tables (1: the
    grid the model was trained on; other steps trade rate for distortion, the anchor of a
    step sweep); prior_filters: hidden widths of the factorized prior's density network
    (trellic's models (3, 3, 3), CompressAI's (3, 3, 3, 3)); groups: the channel groups of
    y, summing to M, for codecs that code y in groups (ELIC); empty: the architecture's
    default."""

    architecture: str = "mbt2018-mean"
    N: int = 128
    M: int = 192
    tcq_delta: float = 0.6
    usq_delta: float = 1.0
    prior_filters: tuple[int, ...] = (3, 3, 3)
    groups: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}")
        for name in ("N", "M"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"config {name}={value!r} is not an integer")
            if not 1 <= value <= MAX_CHANNELS:
                raise ValueError(f"config {name}={value} is not in 1..{MAX_CHANNELS}")
        problem = ARCHITECTURES[self.architecture].channel_problem(self.N, self.M)
        if problem is not None:
            raise ValueError(f"config M={self.M}: {self.architecture} {problem}")
        for name in ("tcq_delta", "usq_delta"):
            delta = getattr(self, name)
            if isinstance(delta, bool) or not isinstance(delta, float | int):
                raise ValueError(f"config {name}={delta!r} is not a number")
            if not MIN_DELTA <= delta < MAX_DELTA:
                raise ValueError(f"config {name}={delta:g} out of range "
                                 f"[{MIN_DELTA:g}, {MAX_DELTA:g})")
        filters = self.prior_filters
        if not (
            isinstance(filters, tuple)
            and 1 <= len(filters) <= MAX_PRIOR_LAYERS
            and all(type(width) is int and 1 <= width <= MAX_PRIOR_WIDTH for width in filters)
        ):
            raise ValueError(f"config prior_filters={filters!r} out of range")
        groups = self.groups
        if not (
            isinstance(groups, tuple)
            and all(type(size) is int and size >= 1 for size in groups)
            and (not groups or sum(groups) == self.M)
        ):
            raise ValueError(f"config groups={groups!r} are not positive integers "
                             f"adding up to M={self.M}")

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """A stored config of any version up to :data:`CONFIG_VERSION`."""
        if not isinstance(data, dict):
            raise ValueError("model config is not a JSON object")
        data = dict(data)
        version = data.pop("version", 1)
        if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
            raise ValueError(
                f"model config version {version!r} is not supported "
                f"(this trellic reads 1..{CONFIG_VERSION})"
            )
        if version == 1:
            data.setdefault("architecture", VERSION_1_ARCHITECTURE)
        for name in ("prior_filters", "groups"):
            if isinstance(data.get(name), list):  # JSON has no tuples
                data[name] = tuple(data[name])
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"model config has fields this trellic does not know: {unknown}")
        return cls(**data)

    def to_dict(self) -> dict:
        """The stored config. Empty ``groups`` are left out: a model's identity hashes this
        dict, and the configs written before the field existed have none."""
        data = {"version": CONFIG_VERSION, **asdict(self)}
        if not self.groups:
            del data["groups"]
        return data
