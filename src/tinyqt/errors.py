"""tinyqt's exceptions. Every error the package raises on bad input is one of
these, and its message names the op, field or shape at fault."""


class TinyQTError(Exception):
    """Base class of every tinyqt error."""


class ModelFormatError(TinyQTError):
    """A model file is malformed, truncated or inconsistent."""


class UnsupportedOpError(TinyQTError):
    """A model uses an operator or option tinyqt does not implement."""


class ShapeError(TinyQTError, ValueError):
    """An array has the wrong shape or dtype for the call."""


class KernelError(TinyQTError):
    """A C kernel returned an error status."""

    def __init__(self, kernel, status):
        self.kernel = kernel
        self.status = status
        super().__init__(f"{kernel}: {STATUS_NAMES.get(status, 'unknown status')} ({status})")


class ArenaOverflowError(TinyQTError):
    """A request did not fit in the arena."""


STATUS_NAMES = {
    0: "TQ_OK",
    -1: "TQ_ERR_NULL (a required pointer is NULL)",
    -2: "TQ_ERR_SHAPE (shapes are inconsistent or out of range)",
    -3: "TQ_ERR_PARAM (a parameter is out of range)",
    -4: "TQ_ERR_SCRATCH (scratch buffer too small)",
    -5: "TQ_ERR_NO_MEMORY (arena exhausted)",
    -6: "TQ_ERR_UNSUPPORTED",
}
