"""Makes tests/models/extra/*.theano.h5: Keras 2 files as Keras 2 on Theano would have written
them — the dev set's cnn_mnist.k2.h5 and conv1d.k2.h5 with every Conv1D/2D/3D and Conv2DTranspose
kernel flipped along its spatial axes and the file's `backend` attribute set to `theano` — for
tests/extra_models.rs, which checks them against the unflipped files' outputs.
usage: target/fit-venv/bin/python scripts/make-theano-fixtures.py
"""
import shutil
import h5py
import numpy as np

CONV = {"Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose"}
for name in ["cnn_mnist", "conv1d"]:
    src, dst = f"tests/models/{name}.k2.h5", f"tests/models/extra/{name}.theano.h5"
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        import json
        cfg = json.loads(f.attrs["model_config"])
        layers = cfg["config"]["layers"] if isinstance(cfg["config"], dict) else cfg["config"]
        convs = {l["config"]["name"] for l in layers if l["class_name"] in CONV}
        mw = f["model_weights"]
        flipped = []
        for layer in convs:
            def flip(path, obj):
                if isinstance(obj, h5py.Dataset) and path.split("/")[-1].startswith("kernel"):
                    k = obj[()]
                    obj[...] = k[tuple([slice(None, None, -1)] * (k.ndim - 2) + [slice(None)] * 2)]
                    flipped.append(f"{layer}/{path}")
            mw[layer].visititems(flip)
        f.attrs["backend"] = np.bytes_("theano")
    shutil.copy(f"tests/models/{name}.input.npy", f"tests/models/extra/{name}.theano.input0.npy")
    print(dst, "flipped", flipped)
