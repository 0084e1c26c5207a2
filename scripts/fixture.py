"""What the fixture scripts share: writing a model Keras saved, the inputs it ran on and Keras's
own output, as the tests read them (NAME.<format>, NAME.input<k>.npy, NAME.expected.npy)."""
import numpy as np


def save_fixture(model, out, name, inputs, expected, formats=("keras", "h5")):
    """Saves `model` as OUT/NAME.<format> for each format, then its inputs and `expected`."""
    for f in formats:
        model.save(f"{out}/{name}.{f}")
    for k, a in enumerate(inputs):
        np.save(f"{out}/{name}.input{k}.npy", a)
    np.save(f"{out}/{name}.expected.npy", expected)
    print(name, np.shape(expected))
