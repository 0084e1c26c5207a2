"""Type stubs of the extension module (re-exported by ``kerasc``)."""

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

ArrayLike = Any
Inputs = Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike]]
Outputs = Union[np.ndarray, List[np.ndarray]]

__version__: str

class TensorSpec:
    """One input or output: name, shape (``None`` for the batch and sizes not fixed), dtype."""

    name: str
    shape: Optional[List[Optional[int]]]
    dtype: str

class PhysicalDevice:
    """A device kerasc runs on, as ``tf.config.list_physical_devices()`` lists it."""

    name: str
    device_type: str
    description: str
    threads: int
    memory_bytes: int

class History:
    """What ``fit`` returns: Keras's ``history.history`` and ``history.epoch``, and each step's loss."""

    history: Dict[str, List[float]]
    epoch: List[int]
    step_loss: List[float]

class Model:
    """A saved model compiled for one device."""

    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    device: str
    path: str

    def predict(self, x: Inputs, batch_size: Optional[int] = None, verbose: Union[int, str, None] = None) -> Outputs:
        """Runs the model like ``keras.Model.predict``: one array, a list in input order, or a
        dict by input name; any number of samples, in batches of ``batch_size`` (default 32).
        float64 is converted to float32 and integer token ids are accepted. ``verbose``: 1 or
        ``"auto"`` draws Keras's progress bar, 2 one line at the end, 0 or ``None`` (the
        default) nothing. Raises ``InputError`` when the arrays do not fit the model."""
    def __call__(self, x: Inputs) -> Outputs:
        """Runs the model on one batch (every sample at once)."""
    def summary(self) -> None:
        """Prints the layers as Keras's ``model.summary()`` does."""
    def bench(
        self, batch_size: int = 1, runs: int = 30, warmup: int = 5, seed: int = 0, profile: bool = False
    ) -> Dict[str, Any]:
        """Times the naive plan against the optimized one; the dict of ``kerasc bench --json``."""

def load(
    path: Union[str, os.PathLike],
    device: Optional[str] = None,
    precision: str = "fp32",
    optimize: bool = True,
    threads: Optional[int] = None,
) -> Model:
    """Loads a ``.keras``, ``.h5`` or ``.onnx`` model and compiles it for ``device``
    (``/GPU:0``, ``/device:CPU:0``, ``cpu``, ``gpu:1``; default: the lowest GPU, else the CPU).
    Raises ``ModelError`` for a file kerasc cannot use and ``DeviceError`` for an unknown device."""

def fit(
    path: Union[str, os.PathLike],
    x: Inputs,
    y: Inputs,
    *,
    output: Union[str, os.PathLike],
    epochs: int = 1,
    batch_size: int = 32,
    verbose: int = 1,
    validation_data: Optional[Tuple[Inputs, Inputs]] = None,
    device: Optional[str] = None,
    **options: Any,
) -> History:
    """Fine-tunes the model at ``path`` on ``x``/``y`` and writes it to ``output`` (Keras loads
    it back). ``options`` are ``kerasc fit``'s flags as keywords: ``optimizer="adam"``,
    ``learning_rate=1e-3``, ``loss=...``, ``metrics=["accuracy"]``, ``shuffle=False``,
    ``seed=0``, ``validation_split=0.1``, ``freeze=[...]``, ``early_stopping=3``,
    ``checkpoint=DIR``, ... Progress is drawn as Keras draws it (``verbose=0``: none); Ctrl-C
    stops between steps, writing nothing."""

def devices() -> List[PhysicalDevice]:
    """The physical devices kerasc can run on: the CPU, then every usable GPU."""

def _cli(argv: List[str]) -> int: ...
