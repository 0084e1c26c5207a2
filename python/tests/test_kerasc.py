"""The Python package against Keras's own outputs and the command line's behaviour: run by
`.ci/run` on a wheel built by maturin and installed into a fresh venv (scripts/python-tests.sh)."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kerasc

MODELS = Path(__file__).resolve().parents[2] / "tests" / "models"
DEV = [
    "mlp", "cnn_mnist", "resnet_block", "sepconv", "mobilenetv2", "text_embed", "lstm", "gru",
    "conv1d", "activations", "pool_pad_up", "reshape_ln", "transformer", "long_names",
]


def close(got, want, what):
    # The whole-model tolerance against Keras (DESIGN.md): atol 1e-4, rtol 1e-3.
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3, err_msg=what)


@pytest.mark.parametrize("name", DEV)
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_every_dev_model_predicts_what_keras_did(name, ext):
    m = kerasc.load(MODELS / f"{name}.{ext}")
    x = np.load(MODELS / f"{name}.input.npy")
    close(m.predict(x), np.load(MODELS / f"{name}.expected.npy"), f"{name}.{ext}")


def test_an_onnx_export_and_the_naive_plan_give_the_same():
    x = np.load(MODELS / "cnn_mnist.input.npy")
    want = np.load(MODELS / "cnn_mnist.expected.npy")
    close(kerasc.load(MODELS / "cnn_mnist.onnx").predict(x), want, "onnx")
    close(kerasc.load(MODELS / "cnn_mnist.keras", optimize=False).predict(x), want, "naive")
    close(kerasc.load(MODELS / "cnn_mnist.keras", threads=1).predict(x), want, "one thread")


def test_inputs_as_a_list_or_a_dict_by_name():
    m = kerasc.load(MODELS / "extra" / "ops_model.keras")
    x0, x1 = (np.load(MODELS / "extra" / f"ops_model.input{k}.npy") for k in (0, 1))
    want = np.load(MODELS / "extra" / "ops_model.expected.npy")
    names = [s.name for s in m.inputs]
    assert names == ["x", "ids"]
    close(m.predict([x0, x1]), want, "list")
    close(m.predict((x0, x1)), want, "tuple")
    close(m.predict({"ids": x1, "x": x0}), want, "dict")
    with pytest.raises(kerasc.InputError, match="no model input is named 'idz'"):
        m.predict({"x": x0, "idz": x1})
    with pytest.raises(kerasc.InputError, match="no array for model input 'ids'"):
        m.predict({"x": x0})
    with pytest.raises(kerasc.InputError, match="2 input"):
        m.predict([x0])
    with pytest.raises(kerasc.InputError, match="pass a list or a dict"):
        m.predict(x0)


def test_strings_go_through_the_text_layers():
    m = kerasc.load(MODELS / "extra" / "text_vocab.keras")
    xs = [np.load(MODELS / "extra" / f"text_vocab.input{k}.npy", allow_pickle=False) for k in (0, 1)]
    close(m.predict(xs), np.load(MODELS / "extra" / "text_vocab.expected.npy"), "text")
    # The same strings as a Python list of str (numpy makes a unicode array of it).
    close(m.predict([x.tolist() for x in xs]), np.load(MODELS / "extra" / "text_vocab.expected.npy"), "lists")


def test_any_batch_size_is_split_into_batches():
    m = kerasc.load(MODELS / "cnn_mnist.keras")
    x = np.concatenate([np.load(MODELS / "cnn_mnist.input.npy")] * 18)[:70]
    whole = m(x)
    assert whole.shape == (70, 10)
    for bs in [None, 7, 32, 70, 1000]:
        np.testing.assert_allclose(m.predict(x, batch_size=bs), whole, atol=1e-6, err_msg=f"batch_size {bs}")
    one_by_one = np.concatenate([m(x[i : i + 1]) for i in range(70)])
    np.testing.assert_allclose(one_by_one, whole, atol=1e-6)
    with pytest.raises(kerasc.InputError):
        m.predict(x, batch_size=0)


def test_calls_in_a_row_reuse_no_stale_input():
    # predict copies a float32 input into a buffer kept from the last call: each call must see
    # its own numbers, whatever size the last one had.
    m = kerasc.load(MODELS / "cnn_mnist.keras")
    x = np.load(MODELS / "cnn_mnist.input.npy")
    rng = np.random.default_rng(3)
    xs = [rng.random((n, 28, 28, 1), dtype=np.float32) for n in [5, 2, 9, 1, 5]]
    alone = [kerasc.load(MODELS / "cnn_mnist.keras")(a) for a in xs]
    for a, want in zip(xs, alone):
        got = m(a)
        np.testing.assert_array_equal(got, want)
        a[:] = 0  # the caller's array changes after the call; the result must not
        np.testing.assert_array_equal(got, want)
    close(m(x), np.load(MODELS / "cnn_mnist.expected.npy"), "after reuse")


def test_predict_draws_keras_progress_when_asked(capsys):
    m = kerasc.load(MODELS / "cnn_mnist.keras")
    x = np.concatenate([np.load(MODELS / "cnn_mnist.input.npy")] * 3)[:10]
    m.predict(x, batch_size=4)
    assert capsys.readouterr().out == ""
    m.predict(x, batch_size=4, verbose=1)
    out = capsys.readouterr().out
    assert out.count("\r") == 3 and out.endswith("\n")
    last = out.split("\r")[-1]
    assert last.startswith("3/3 " + "\u2501" * 20) and "/step" in last, out
    m.predict(x, batch_size=4, verbose="auto")
    assert capsys.readouterr().out.split("\r")[-1].startswith("3/3 ")
    m.predict(x, verbose=2)
    out = capsys.readouterr().out
    assert out.startswith("1/1 - ") and out.endswith("/step\n") and "\r" not in out, out
    for bad in [3, "loud", 1.5]:
        with pytest.raises(kerasc.InputError, match="verbose"):
            m.predict(x, verbose=bad)


def test_an_onnx_graph_compiles_for_the_inputs_it_is_given():
    # Symbolic sizes past the batch, and scales, starts, pads, bounds and axes given as inputs:
    # compiled on the first call for them, the plan kept for the next call with the same ones.
    d = MODELS / "onnx"
    m = kerasc.load(d / "runtime_values.onnx")
    assert [i.name for i in m.inputs][:3] == ["x", "scales", "starts"]
    assert m.inputs[0].shape == [None, 3, None, None] and m._plans == 0
    with pytest.raises(kerasc.InputError, match="call it once first"):
        m.bench()
    xs = [np.load(d / f"runtime_values.input{k}.npy") for k in range(9)]
    want = np.load(d / "runtime_values.expected0.npy")
    close(m(xs), want, "runtime_values")
    close(m.predict(xs, batch_size=1), want, "runtime_values in batches of 1")
    assert m._plans == 1
    # Other values: another plan, with ONNX's meaning (here: no padding, other slices).
    other = list(xs)
    other[5] = np.zeros(8, np.int64)
    other[3] = np.array([5, 100], np.int64)
    got = m(other)
    assert got.shape == (2, 3, 4, 6, 1) and m._plans == 2
    ref = np.clip(np.repeat(np.repeat(xs[0], 2, axis=2), 2, axis=3)[:, :, 1:5, 4:], -0.5, 0.8)[..., None]
    np.testing.assert_allclose(got, ref, atol=1e-6)
    close(m(xs), want, "runtime_values again")
    assert m._plans == 2 and m.bench(runs=2)["batch"] == 1
    with pytest.raises(kerasc.InputError, match="inputs"):
        m(xs[0])


def test_inputs_are_converted_as_keras_converts_them():
    m = kerasc.load(MODELS / "cnn_mnist.keras")
    x = np.load(MODELS / "cnn_mnist.input.npy")
    want = np.load(MODELS / "cnn_mnist.expected.npy")
    close(m.predict(x.astype(np.float64)), want, "float64")
    close(m.predict(np.asfortranarray(x)), want, "Fortran order")
    close(m.predict(x[:, ::-1][:, ::-1]), want, "negative strides")
    images = (np.arange(2 * 28 * 28) % 255).astype(np.uint8).reshape(2, 28, 28, 1)
    np.testing.assert_allclose(m.predict(images), m.predict(images.astype(np.float32)), atol=1e-6)
    t = kerasc.load(MODELS / "text_embed.keras")
    ids = np.load(MODELS / "text_embed.input.npy")
    want = np.load(MODELS / "text_embed.expected.npy")
    for dtype in [np.int32, np.int64, np.uint16]:
        close(t.predict(ids.astype(dtype)), want, f"token ids as {dtype}")


def test_wrong_shapes_and_dtypes_raise_input_errors():
    m = kerasc.load(MODELS / "cnn_mnist.keras")
    with pytest.raises(kerasc.InputError, match="expected shape"):
        m.predict(np.zeros((2, 5, 5, 1), np.float32))
    with pytest.raises(ValueError):  # every InputError is a ValueError too
        m.predict(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(kerasc.InputError, match="strings"):
        m.predict(np.array([["a"] * 28] * 28))
    with pytest.raises(kerasc.InputError, match="complex"):
        m.predict(np.zeros((1, 28, 28, 1), np.complex64))
    t = kerasc.load(MODELS / "text_embed.keras")
    with pytest.raises(kerasc.InputError, match="float32"):
        t.predict(np.load(MODELS / "text_embed.input.npy").astype(np.float32))


def test_bad_files_and_devices_raise_model_and_device_errors(tmp_path):
    with pytest.raises(kerasc.ModelError, match="No such file"):
        kerasc.load(tmp_path / "missing.keras")
    for name, data in [("junk.keras", b"PK\x03\x04" + os.urandom(200)), ("junk.h5", b"\x89HDF\r\n\x1a\n" + os.urandom(300)), ("junk.onnx", os.urandom(100))]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(kerasc.ModelError):
            kerasc.load(tmp_path / name)
    # A truncated real file.
    whole = (MODELS / "cnn_mnist.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(kerasc.ModelError):
        kerasc.load(tmp_path / "cut.h5")
    with pytest.raises(kerasc.DeviceError, match="cannot parse device"):
        kerasc.load(MODELS / "mlp.h5", device="/TPU:0")
    with pytest.raises(kerasc.DeviceError, match="not available"):
        kerasc.load(MODELS / "mlp.h5", device="/GPU:7")
    with pytest.raises(ValueError, match="unknown precision"):
        kerasc.load(MODELS / "mlp.h5", precision="fp8")
    m = kerasc.load(MODELS / "mlp.h5", device="/device:CPU:0")
    assert m.device == "/CPU:0"


def test_summary_inputs_outputs_bench_and_devices(capsys):
    m = kerasc.load(MODELS / "cnn_mnist.keras")
    m.summary()
    out = capsys.readouterr().out
    assert 'Model: "cnn_mnist"' in out and "conv2d (Conv2D)" in out and "Total params: 5,258" in out
    (i,), (o,) = m.inputs, m.outputs
    assert (i.name, i.shape, i.dtype) == ("image", [None, 28, 28, 1], "float32")
    assert (o.shape, o.dtype) == ([None, 10], "float32")
    r = m.bench(batch_size=2, runs=3, warmup=1)
    assert r["batch"] == 2 and r["optimized"]["median_ms"] > 0 and r["naive"]["median_ms"] > 0
    assert r["max_abs_diff"] < 1e-5
    devs = kerasc.devices()
    assert devs[0].name == "/physical_device:CPU:0" and devs[0].device_type == "CPU"


def test_predict_releases_the_interpreter_while_it_computes():
    m = kerasc.load(MODELS / "mobilenetv2.keras", threads=1)
    x = np.concatenate([np.load(MODELS / "mobilenetv2.input.npy")] * 64)
    m(x[:2])
    done = threading.Event()
    spans = []

    def work():
        t0 = time.perf_counter()
        m(x)
        spans.append(time.perf_counter() - t0)
        done.set()

    t = threading.Thread(target=work)
    gaps, last = [], time.perf_counter()
    t.start()
    while not done.is_set():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        sum(range(200))
    t.join()
    # The run takes well over 100 ms; Python code kept running beside it (a held interpreter
    # would stall this loop for the whole run).
    assert spans[0] > 0.1, spans
    assert len(gaps) > 100 and max(gaps) < spans[0] / 2, (len(gaps), max(gaps), spans)


def trace():
    return json.loads((MODELS / "mlp.finetune_losses.json").read_text())


def test_fit_on_the_mlp_ends_where_keras_ended(tmp_path):
    d = np.load(MODELS / "mlp.finetune.npz")
    out = tmp_path / "trained.h5"
    h = kerasc.fit(
        MODELS / "mlp.h5", d["x_train"], d["y_train"], output=out, epochs=2, batch_size=16,
        shuffle=False, validation_data=(d["x_val"], d["y_val"]), verbose=0,
    )
    k = trace()
    for ours, keras in [("loss", "epoch_loss"), ("accuracy", "epoch_accuracy"), ("val_loss", "epoch_val_loss"), ("val_accuracy", "epoch_val_accuracy")]:
        np.testing.assert_allclose(h.history[ours], k[keras], rtol=1e-4, atol=1e-6, err_msg=ours)
    np.testing.assert_allclose(h.step_loss, k["step_loss"], rtol=1e-4)
    assert h.epoch == [0, 1]
    # The written file holds Keras's trained weights: the same predictions as Keras's own file.
    x = np.concatenate([d["x_train"], d["x_val"]])
    ours, keras = kerasc.load(out).predict(x), kerasc.load(MODELS / "mlp.finetuned.h5").predict(x)
    np.testing.assert_allclose(ours, keras, atol=1e-5)


def test_fit_draws_keras_progress_and_checks_its_options(tmp_path, capsys):
    d = np.load(MODELS / "mlp.finetune.npz")
    kerasc.fit(MODELS / "mlp.keras", d["x_train"], d["y_train"], output=tmp_path / "a.keras", epochs=2, batch_size=64, learning_rate=0.05, optimizer="adam", metrics=["accuracy"])
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "4/4" in out and "loss:" in out and "accuracy:" in out, out
    kerasc.fit(MODELS / "mlp.h5", d["x_train"], d["y_train"], output=tmp_path / "b.h5", verbose=2)
    out = capsys.readouterr().out
    # verbose=2: one line per epoch after its header, no bar redrawn in place.
    assert "\r" not in out and out.splitlines()[0] == "Epoch 1/1" and out.splitlines()[1].startswith("8/8 - "), out
    with pytest.raises(kerasc.FitError, match="fit options"):
        kerasc.fit(MODELS / "mlp.h5", d["x_train"], d["y_train"], output=tmp_path / "c.h5", no_such_option=3)
    with pytest.raises(kerasc.FitError, match="samples"):
        kerasc.fit(MODELS / "mlp.h5", d["x_train"], d["y_train"][:10], output=tmp_path / "c.h5", verbose=0)
    with pytest.raises(kerasc.FitError, match="optimizer"):
        kerasc.fit(MODELS / "mlp.h5", d["x_train"], d["y_train"], output=tmp_path / "c.h5", optimizer="nope", verbose=0)
    assert not (tmp_path / "c.h5").exists()


def test_ctrl_c_stops_fit_between_steps_and_writes_nothing(tmp_path):
    import _thread

    d = np.load(MODELS / "cnn_mnist.finetune.npz")
    x, y = d["x_train"], d["y_train"]
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        kerasc.fit(MODELS / "cnn_mnist.h5", x, y, output=tmp_path / "never.h5", epochs=10000, batch_size=8, verbose=0)
    assert time.perf_counter() - t0 < 10
    timer.cancel()
    assert not (tmp_path / "never.h5").exists()


def test_the_wheel_installs_the_command_line():
    exe = shutil.which("kerasc", path=str(Path(sys.executable).parent))
    assert exe, "the kerasc command is not beside this Python"
    r = subprocess.run([exe, "inspect", str(MODELS / "mlp.h5")], capture_output=True, text=True)
    assert r.returncode == 0 and "Total params" in r.stdout, r.stderr
    r = subprocess.run([exe, "run", str(MODELS / "nothing.h5"), "-i", str(MODELS / "mlp.input.npy")], capture_output=True, text=True)
    assert r.returncode == 1 and "error:" in r.stderr
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "kerasc" in r.stdout
