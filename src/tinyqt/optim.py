"""Optimizer configuration for on-device training (QAS SGD, paper Eq. 4).

`SGD` holds plain options (learning rate, QAS on/off, sub-LSB rounding mode,
momentum) and the one xorshift32 PRNG stream the stochastic rounding draws
from; `ParamState` holds a trained layer's momentum buffers and fp32 master
copy. Both are caller-owned numpy arrays handed to the C kernels
(tinyqt.backward), which update them in place, exactly as the firmware does.

Layouts (see src/kernels/include/tinyqt/backward.h): per-weight buffers use
the weight-gradient layout, compact [C_out, KH, KW, n_sel] for conv / 1x1 /
FC ([out, n_sel]) and channel-major [n_sel*mult, KH, KW] for depthwise; the
master copy is in integer-grid units (W_int as float32).
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import ShapeError, TinyQTError

ROUNDING_MODES = {"nearest": 0, "stochastic": 1, "master": 2}
DEFAULT_SEED = 0x2545F491


class OptimizerError(TinyQTError, ValueError):
    """An optimizer option is out of range."""


def trained_weights(w, sel=None, depthwise=False, in_channels=None):
    """The trained int8 weights of w in the weight-gradient layout (used to
    initialise a master copy). sel: selected input channels (None = all)."""
    w = np.asarray(w)
    if depthwise:
        c_out = w.shape[3]
        c_in = in_channels if in_channels is not None else c_out
        mult = c_out // c_in
        idx = np.arange(c_in) if sel is None else np.asarray(sel)
        chans = (idx[:, None] * mult + np.arange(mult)[None, :]).reshape(-1)
        return np.ascontiguousarray(w[0][:, :, chans].transpose(2, 0, 1))
    if w.ndim == 2:  # FC [out, in]
        return np.ascontiguousarray(w if sel is None else w[:, np.asarray(sel)])
    return np.ascontiguousarray(w if sel is None else w[..., np.asarray(sel)])


@dataclass
class ParamState:
    """Optimizer buffers of one trained layer (None when unused)."""
    w_momentum: Optional[np.ndarray] = None
    b_momentum: Optional[np.ndarray] = None
    w_master: Optional[np.ndarray] = None

    def arrays(self):
        """(w_momentum, b_momentum, w_master) as flat float32 views or None."""
        def flat(a):
            return None if a is None else a.reshape(-1)
        return flat(self.w_momentum), flat(self.b_momentum), flat(self.w_master)


class SGD:
    """SGD on int8 weights / int32 biases.

    lr: learning rate of the int8 body; head_lr: of the fp32 head (None: lr;
    a head trained from zero often wants a larger step than the pretrained
    body tolerates); qas: Quantization-Aware Scaling (True) or the "no QAS"
    baseline with raw integer-domain gradients (False); rounding: 'nearest' |
    'stochastic' | 'master'; momentum in [0, 1); seed: the xorshift32 state
    (nonzero) the stochastic rounding starts from. `rng` is a 1-element
    uint32 array the kernels advance in place (one draw per updated element,
    in the documented order)."""

    def __init__(self, lr, *, head_lr=None, qas=True, rounding="nearest", momentum=0.0, seed=DEFAULT_SEED):
        if not np.isfinite(lr):
            raise OptimizerError(f"lr must be finite, got {lr}")
        if head_lr is not None and not np.isfinite(head_lr):
            raise OptimizerError(f"head_lr must be finite, got {head_lr}")
        if rounding not in ROUNDING_MODES:
            raise OptimizerError(f"rounding must be one of {sorted(ROUNDING_MODES)}, got {rounding!r}")
        if not 0.0 <= momentum < 1.0:
            raise OptimizerError(f"momentum must be in [0, 1), got {momentum}")
        seed = int(seed) & 0xFFFFFFFF
        if seed == 0:
            raise OptimizerError("seed must be nonzero (0 is xorshift32's fixed point)")
        self.lr = float(np.float32(lr))
        self.head_lr = self.lr if head_lr is None else float(np.float32(head_lr))
        self.qas = bool(qas)
        self.rounding = rounding
        self.momentum = float(np.float32(momentum))
        self.rng = np.array([seed], dtype=np.uint32)

    def options(self):
        """Keyword arguments that rebuild this optimizer from its start
        (the PRNG at its current state)."""
        return dict(head_lr=self.head_lr, qas=self.qas, rounding=self.rounding, momentum=self.momentum,
                    seed=int(self.rng[0]))

    @property
    def params(self):
        """The tq_sgd_params tuple (lr, momentum, qas, rounding)."""
        return (self.lr, self.momentum, int(self.qas), ROUNDING_MODES[self.rounding])

    def new_state(self, n_weights=0, n_bias=0, master=None):
        """Buffers for a layer with n_weights trained weights and n_bias
        trained biases. master: the trained int8 weights (weight-gradient
        layout) to start the fp32 master copy from ('master' rounding)."""
        st = ParamState()
        if self.momentum > 0:
            if n_weights:
                st.w_momentum = np.zeros(n_weights, dtype=np.float32)
            if n_bias:
                st.b_momentum = np.zeros(n_bias, dtype=np.float32)
        if self.rounding == "master" and n_weights:
            if master is None:
                raise OptimizerError("rounding='master' needs the trained weights to start the master copy")
            m = np.asarray(master).astype(np.float32).reshape(-1)
            if m.size != n_weights:
                raise ShapeError(f"master: expected {n_weights} weights, got {m.size}")
            st.w_master = m
        return st

    def state_for(self, w, *, sel=None, depthwise=False, in_channels=None, bias=True):
        """new_state sized for weight tensor w (conv OHWI, depthwise
        [1, KH, KW, C_out] or FC [out, in]) with input channels sel trained."""
        tw = trained_weights(w, sel, depthwise, in_channels)
        n_bias = 0
        if bias:
            n_bias = tw.shape[0]
        return self.new_state(tw.size, n_bias, master=tw)
