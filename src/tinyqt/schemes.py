"""Sparse-update schemes: which biases and which weight channels are trained.

Conv indices follow the paper: the model's convs in forward order, the
classifier excluded, 0 = first conv; for block k >= 1, 3k = first pointwise,
3k+1 = depthwise, 3k+2 = second pointwise (block 0 has no first pointwise,
so its depthwise is 1 and its pointwise 2). The classifier head is always
trained.

A scheme is
- `bias_k`: the biases of the last k convs are trained;
- `weights`: {conv index: ratio} with ratio in (0, 1] the fraction of input
  channels whose weights are trained (the first ceil(ratio * C_in) channels;
  for a depthwise conv, the first channels), or 0 for "bias only" at that
  layer (the paper's "0" entries, kept for fidelity: it adds nothing beyond
  bias_k when the layer is among the last k).

Spellings accepted by `parse_scheme`: `bias-only:K`, `last:K` (weights and
biases of the last K convs), `full`, `paper:NNkb` (the paper's published
schemes for the three backbones), a JSON file path
(`{"bias_k": K, "weights": {"23": 0.25, ...}}`), or a Scheme.
"""
import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Dict

from .errors import TinyQTError


class SchemeError(TinyQTError, ValueError):
    """An update scheme is malformed or does not fit the model."""


@dataclass(frozen=True)
class Scheme:
    """bias_k: biases of the last k convs; weights: conv index -> ratio."""
    bias_k: int
    weights: Dict[int, float] = field(default_factory=dict)
    name: str = "custom"

    def selected_channels(self, conv_index, in_channels):
        """Number of input channels of conv `conv_index` whose weights train."""
        ratio = self.weights.get(conv_index, 0.0)
        return 0 if ratio == 0 else max(1, math.ceil(ratio * in_channels))

    def to_json(self):
        return {"name": self.name, "bias_k": self.bias_k,
                "weights": {str(k): v for k, v in sorted(self.weights.items())}}


def _w(spec):
    return {int(k): float(Fraction(v)) for k, v in spec.items()}


# The paper's published schemes (tiny-training, Table/appendix), per model:
# (bias_k, {conv index: ratio}). Aliases map the memory labels the paper uses
# for the same budget tier on different models.
PAPER_SCHEMES = {
    "mcunet-5fps": {
        "49kb": (20, {23: 0, 24: "1/4", 27: "1/2", 30: "1/2", 33: 0, 39: 0}),
        "74kb": (21, {21: 1, 23: 0, 24: 1, 26: 0, 27: "1/2", 30: 1}),
        "99kb": (22, {21: 1, 24: 1, 27: 1, 30: 1, 36: "1/8", 39: "1/4"}),
        "124kb": (24, {21: "1/4", 24: 1, 27: 1, 30: 1, 33: "1/2", 39: "1/2"}),
        "148kb": (23, {21: 1, 24: 1, 27: 1, 30: 1, 36: 1, 39: "1/2"}),
    },
    "mbv2-w0.35": {
        "49kb": (16, {36: 1, 39: 1, 40: 0, 41: "1/4", 42: "1/8", 45: "1/8", 48: "1/8", 49: "1/8"}),
        "73kb": (20, {32: "1/8", 33: "1/2", 36: "1/2", 39: 1, 41: "1/4", 42: "1/8", 45: "1/8", 48: 1}),
        "99kb": (25, {27: 1, 30: 1, 33: 1, 36: 1, 39: 1, 42: "1/8", 45: "1/2", 48: 1}),
        "123kb": (31, {27: 1, 30: 1, 33: 1, 36: 1, 39: 1, 42: "1/2", 45: 1, 48: 1}),
        "138kb": (34, {27: 1, 30: 1, 33: 1, 36: 1, 39: 1, 42: 1, 45: 1, 48: 1}),
    },
    "proxyless-w0.3": {
        "49kb": (21, {39: "1/4", 42: 1, 44: 0, 45: 1, 50: 0, 51: "1/8", 54: "1/4", 57: "1/4"}),
        "74kb": (28, {33: "1/2", 36: "1/4", 39: 1, 42: 1, 45: 1, 51: "1/2", 54: "1/4", 57: "1/2"}),
        "98kb": (25, {36: 1, 39: "1/2", 42: 1, 45: 1, 48: "1/4", 51: "1/2", 54: 1, 57: 1}),
        "120kb": (32, {36: 1, 39: 1, 42: 1, 45: 1, 48: "1/2", 51: 1, 54: 1, 57: 1}),
        "148kb": (45, {36: 1, 39: 1, 42: 1, 45: 1, 48: 1, 51: 1, 54: 1, 57: 1}),
    },
}

# Budget tiers: the label any model accepts -> the label each model publishes.
_TIERS = {
    "49kb": "49kb",
    "73kb": "74kb", "74kb": "74kb",
    "98kb": "99kb", "99kb": "99kb",
    "120kb": "124kb", "123kb": "124kb", "124kb": "124kb",
    "138kb": "148kb", "148kb": "148kb",
}
_TIER_LABEL = {
    "mcunet-5fps": {"49kb": "49kb", "74kb": "74kb", "99kb": "99kb", "124kb": "124kb", "148kb": "148kb"},
    "mbv2-w0.35": {"49kb": "49kb", "74kb": "73kb", "99kb": "99kb", "124kb": "123kb", "148kb": "138kb"},
    "proxyless-w0.3": {"49kb": "49kb", "74kb": "74kb", "99kb": "98kb", "124kb": "120kb", "148kb": "148kb"},
}


def paper_scheme(model_name, label):
    """The paper's published scheme for model_name at budget label (e.g. '99kb';
    the labels of the same tier on other models, like '98kb', are accepted)."""
    label = label.lower()
    if model_name not in PAPER_SCHEMES:
        raise SchemeError(f"paper schemes exist for {sorted(PAPER_SCHEMES)}, not for model '{model_name}'")
    if label not in _TIERS:
        raise SchemeError(f"unknown paper scheme '{label}': expected one of {sorted(_TIERS)}")
    own = _TIER_LABEL[model_name][_TIERS[label]]
    bias_k, weights = PAPER_SCHEMES[model_name][own]
    return Scheme(bias_k, _w(weights), name=f"paper:{own}")


def parse_scheme(spec, model_name=None, num_convs=None):
    """Scheme from its spelling (see module doc); validated against num_convs
    when given."""
    if isinstance(spec, Scheme):
        scheme = spec
    elif not isinstance(spec, str) or not spec:
        raise SchemeError(f"scheme must be a non-empty string or Scheme, got {spec!r}")
    elif spec == "full":
        if num_convs is None:
            raise SchemeError("scheme 'full' needs the model's conv count")
        scheme = Scheme(num_convs, {i: 1.0 for i in range(num_convs)}, name="full")
    elif spec.startswith("bias-only:") or spec.startswith("last:"):
        kind, _, k = spec.partition(":")
        try:
            k = int(k)
        except ValueError:
            raise SchemeError(f"scheme '{spec}': K must be an integer") from None
        if k < 0 or (num_convs is not None and k > num_convs):
            raise SchemeError(f"scheme '{spec}': K={k} is outside [0, {num_convs if num_convs is not None else 'number of convs'}]")
        if kind == "bias-only":
            scheme = Scheme(k, {}, name=spec)
        else:
            if num_convs is None:
                raise SchemeError(f"scheme '{spec}' needs the model's conv count")
            scheme = Scheme(k, {i: 1.0 for i in range(num_convs - k, num_convs)}, name=spec)
    elif spec.startswith("paper:"):
        if model_name is None:
            raise SchemeError(f"scheme '{spec}' needs the model name (one of {sorted(PAPER_SCHEMES)})")
        scheme = paper_scheme(model_name, spec.split(":", 1)[1])
    elif spec.endswith(".json") or os.path.exists(spec):
        scheme = _load_json(spec)
    else:
        raise SchemeError(f"unknown scheme '{spec}': expected bias-only:K, last:K, full, paper:NNkb or a .json file")
    if num_convs is not None:
        validate(scheme, num_convs)
    return scheme


def _load_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise SchemeError(f"scheme file '{path}': {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise SchemeError(f"scheme file '{path}': not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or "bias_k" not in data or not isinstance(data.get("weights", {}), dict):
        raise SchemeError(f"scheme file '{path}': expected {{\"bias_k\": K, \"weights\": {{conv index: ratio}}}}")
    try:
        weights = {int(k): float(v) for k, v in data.get("weights", {}).items()}
        bias_k = int(data["bias_k"])
    except (TypeError, ValueError):
        raise SchemeError(f"scheme file '{path}': bias_k must be an integer and weights map integer indices to ratios") from None
    return Scheme(bias_k, weights, name=data.get("name", os.path.basename(path)))


def validate(scheme, num_convs):
    """Raises SchemeError naming the entry when an index or ratio is invalid."""
    if not 0 <= scheme.bias_k <= num_convs:
        raise SchemeError(f"scheme '{scheme.name}': bias_k={scheme.bias_k} is outside [0, {num_convs}]")
    for idx, ratio in scheme.weights.items():
        if not 0 <= idx < num_convs:
            raise SchemeError(f"scheme '{scheme.name}': conv index {idx} does not exist (the model has convs 0..{num_convs - 1})")
        if not (ratio == 0 or 0 < ratio <= 1) or math.isnan(ratio):
            raise SchemeError(f"scheme '{scheme.name}': ratio {ratio} of conv {idx} is outside (0, 1]")
