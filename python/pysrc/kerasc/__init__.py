"""kerasc: run and fine-tune saved Keras and ONNX models without TensorFlow.

    import kerasc
    model = kerasc.load("model.keras")
    print(model.predict(x))

Everything runs in the same Rust crates as the ``kerasc`` command line.
"""

from ._errors import DeviceError, ExecutionError, FitError, InputError, KerascError, ModelError
from ._kerasc import History, Model, PhysicalDevice, TensorSpec, __version__, devices, fit, load

__all__ = [
    "load",
    "fit",
    "devices",
    "Model",
    "History",
    "TensorSpec",
    "PhysicalDevice",
    "KerascError",
    "ModelError",
    "InputError",
    "DeviceError",
    "ExecutionError",
    "FitError",
    "__version__",
]
