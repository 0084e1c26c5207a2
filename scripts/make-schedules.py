"""Makes tests/models/train/schedules.json: Keras 3's learning-rate schedules (their configs as
Keras serializes them, and the learning rate Keras computes at each of a list of steps), for the
schedule test in src/fit/config.rs.
usage: KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-schedules.py
"""
import json
import keras

S = keras.optimizers.schedules
cases = {
    "exponential": S.ExponentialDecay(0.1, 3, 0.5),
    "exponential_stair": S.ExponentialDecay(0.1, 3, 0.5, staircase=True),
    "cosine": S.CosineDecay(0.05, 12, alpha=0.2),
    "cosine_warmup": S.CosineDecay(0.01, 20, alpha=0.1, warmup_target=0.05, warmup_steps=5),
    "piecewise": S.PiecewiseConstantDecay([3, 9], [0.1, 0.05, 0.01]),
    "inverse_time": S.InverseTimeDecay(0.1, 4, 0.5),
    "inverse_time_stair": S.InverseTimeDecay(0.1, 4, 0.5, staircase=True),
    "polynomial": S.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=2.0),
    "polynomial_cycle": S.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=0.5, cycle=True),
    "restarts": S.CosineDecayRestarts(0.1, 5, t_mul=2.0, m_mul=0.5, alpha=0.05),
    "restarts_t1": S.CosineDecayRestarts(0.1, 4, t_mul=1.0, m_mul=0.8),
}
steps = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 13, 17, 21, 25, 30, 40, 60, 100]
out = {k: {"config": S.serialize(s), "values": [float(s(t)) for t in steps]} for k, s in cases.items()}
with open("tests/models/train/schedules.json", "w") as f:
    json.dump({"keras": keras.__version__, "steps": steps, "cases": out}, f, indent=1)
print(len(out), "schedules")
