"""Trainer: fine-tuning at batch 1 (the device's reality) over a Plan.

    plan = tinyqt.compile(model, "paper:99kb", sram="256KB", num_classes=10)
    tr = Trainer(plan, model, lr=0.01)
    tr.fit(x_train, y_train, epochs=1)           # int8 NHWC images, int labels
    tr.evaluate(x_test, y_test)                  # -> accuracy
    tr.save_checkpoint("ckpt.npz"); tr.load_checkpoint("ckpt.npz")

The weight updates are fused into the backward (no gradient buffer exists).
Gradient accumulation trades SRAM for a larger effective batch: compile with
accumulate=True (one fp32 sum per trained parameter, counted in the plan's
peak) and pass accumulate=N; the mean gradient of every N images is applied
at once (and what is left at the end of an epoch). Host only: tinyqt.codegen
refuses such plans. Long runs show a progress bar (tqdm) unless
progress=False.
"""
import json
import os

import numpy as np

from .errors import ShapeError, TinyQTError
from .optim import SGD
from .runtime import Runtime


class Trainer:
    def __init__(self, plan, model, lr=0.01, *, head_lr=None, qas=True, rounding="nearest", momentum=0.0,
                 seed=1, progress=True, accumulate=1):
        if isinstance(accumulate, bool) or not isinstance(accumulate, (int, np.integer)) or accumulate < 1:
            raise TinyQTError(f"accumulate: expected a whole number of images >= 1, got {accumulate!r}")
        if accumulate > 1 and not plan.accumulates:
            raise TinyQTError(f"accumulate={accumulate}: this plan has no gradient sums; compile it with "
                              "tinyqt.compile(..., accumulate=True)")
        self.accumulate = int(accumulate)
        self.optimizer = SGD(lr, head_lr=head_lr, qas=qas, rounding=rounding, momentum=momentum)
        self.runtime = Runtime(plan, model, self.optimizer)
        self.rng = np.random.default_rng(seed)
        self.progress = progress
        self.history = []

    def _check(self, x, y):
        if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 4:
            raise ShapeError(f"images: expected int8 [N, H, W, C] (see tinyqt.data.to_model_input), got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        y = np.asarray(y)
        if y.shape != (x.shape[0],):
            raise ShapeError(f"labels: expected shape ({x.shape[0]},), got {y.shape}")
        return y

    def step(self, image, label):
        """One training step (batch 1); returns the loss. With accumulation
        the weights change on every accumulate-th step only."""
        loss = self.runtime.step(image, label)
        if self.runtime.accumulated >= self.accumulate:
            self.runtime.apply_accumulated()
        return loss

    def fit(self, x, y, epochs=1, shuffle=True):
        """Trains on every image of x once per epoch; returns the mean loss of
        the last epoch."""
        y = self._check(x, y)
        mean = float("nan")
        for epoch in range(epochs):
            order = self.rng.permutation(len(y)) if shuffle else np.arange(len(y))
            it = order
            bar = None
            if self.progress and len(order) >= 200:
                from tqdm import tqdm
                bar = tqdm(order, desc=f"epoch {epoch + 1}/{epochs}", unit="img", leave=False)
                it = bar
            losses = []
            for i in it:
                losses.append(self.step(x[i:i + 1], int(y[i])))
                if bar is not None and len(losses) % 50 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            self.runtime.apply_accumulated()  # the epoch's last, partial group
            mean = float(np.mean(losses))
            self.history.append(mean)
        return mean

    def evaluate(self, x, y):
        """Top-1 accuracy of the current trained tensors on x, y."""
        y = self._check(x, y)
        if len(y) == 0:
            return float("nan")
        hits = sum(self.runtime.predict(x[i:i + 1]) == int(y[i]) for i in range(len(y)))
        return hits / len(y)

    def save_checkpoint(self, path):
        """The trained tensors and the optimizer's PRNG state as an .npz
        (no pickles), written whole (temporary name, then rename)."""
        arrays = {f"t/{k}": v for k, v in self.runtime.trained_tensors().items()}
        arrays["rng"] = self.optimizer.rng.copy()
        arrays["meta"] = np.frombuffer(json.dumps({"steps": self.runtime.steps_done,
                                                   "scheme": self.runtime.plan.scheme_name}).encode(), np.uint8)
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load_checkpoint(self, path):
        try:
            with np.load(path, allow_pickle=False) as z:
                tensors = {k[2:]: z[k] for k in z.files if k.startswith("t/")}
                rng = z["rng"]
                meta = json.loads(bytes(z["meta"]).decode())
        except (OSError, ValueError, KeyError) as e:
            raise TinyQTError(f"{path}: not a tinyqt checkpoint ({e})") from None
        if meta.get("scheme") != self.runtime.plan.scheme_name:
            raise TinyQTError(f"{path}: checkpoint of scheme {meta.get('scheme')}, this plan is {self.runtime.plan.scheme_name}")
        self.runtime.load_trained_tensors(tensors)
        self.optimizer.rng[...] = rng
        self.runtime.steps_done = meta.get("steps", 0)
