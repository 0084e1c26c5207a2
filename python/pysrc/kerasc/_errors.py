"""The exceptions kerasc raises, each carrying kerasc's own message."""


class KerascError(Exception):
    """Base class of every error kerasc raises."""


class ModelError(KerascError, ValueError):
    """The model file cannot be used: unreadable, corrupt, truncated, or with layers kerasc does
    not support (all of them are listed)."""


class InputError(KerascError, ValueError):
    """The arrays given do not fit the model: their number, names, shapes or dtypes."""


class DeviceError(KerascError, RuntimeError):
    """The device asked for is not a device name, or not on this machine."""


class ExecutionError(KerascError, RuntimeError):
    """A run failed: a kernel, the memory it needs, a GPU kernel's compilation."""


class FitError(KerascError, ValueError):
    """Fine-tuning cannot run as asked: its options, its data, a loss that became NaN."""
