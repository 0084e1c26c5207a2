"""Keras's progress lines for ``kerasc.fit`` and ``Model.predict``, written to ``sys.stdout`` (so a notebook shows them).

verbose=1: ``Epoch 1/3`` then a bar redrawn in place,
``32/32 ━━━━━━━━━━━━━━━━━━━━ 0s 2ms/step - loss: 0.3141``; verbose=2: one line per epoch.
"""

import sys
import time


def _logs(logs):
    return "".join(f" - {k}: {v:.4f}" for k, v in logs)


def _duration(s):
    if s >= 3600:
        return f"{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}"
    if s >= 60:
        return f"{int(s // 60)}:{int(s % 60):02d}"
    return f"{int(s)}s"


def _per_step(seconds, steps):
    per = seconds / max(steps, 1)
    return f"{per * 1e3:.0f}ms/step" if per >= 1e-3 else f"{per * 1e6:.0f}us/step"


def _bar(step, steps, width):
    done = min(int(width * step / max(steps, 1)), width)
    return "\u2501" * done + " " * (width - done)


class Progbar:
    WIDTH = 20

    def __init__(self, verbose):
        self.verbose = verbose
        self.epoch = None
        self.start = time.perf_counter()

    def _begin(self, epoch, epochs):
        if self.epoch != epoch:
            self.epoch = epoch
            self.start = time.perf_counter()
            if self.verbose == 1:
                sys.stdout.write(f"Epoch {epoch + 1}/{epochs}\n")

    def _bar(self, step, steps):
        return _bar(step, steps, self.WIDTH)

    def step(self, epoch, epochs, step, steps, logs):
        self._begin(epoch, epochs)
        if self.verbose != 1:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(step, 1) * (steps - step)
        width = len(str(steps))
        line = f"\r{step:>{width}}/{steps} {self._bar(step, steps)} {_duration(eta)} {_per_step(elapsed, step)}{_logs(logs)}"
        sys.stdout.write(line)
        sys.stdout.flush()

    def epoch_end(self, epoch, epochs, steps, ms, logs):
        self._begin(epoch, epochs)
        seconds = ms / 1e3
        width = len(str(steps))
        if self.verbose == 1:
            line = f"\r{steps:>{width}}/{steps} {self._bar(steps, steps)} {_duration(seconds)} {_per_step(seconds, steps)}{_logs(logs)}\n"
        else:
            line = f"Epoch {epoch + 1}/{epochs}\n{steps}/{steps} - {_duration(seconds)} - {_per_step(seconds, steps)}{_logs(logs)}\n"
        sys.stdout.write(line)
        sys.stdout.flush()


class PredictBar:
    """``Model.predict``'s line, as Keras draws it: verbose=1 redraws
    ``3/8 ━━━━━━━             0s 2ms/step`` in place; verbose=2 writes ``8/8 - 0s - 2ms/step``
    once at the end."""

    WIDTH = Progbar.WIDTH

    def __init__(self, verbose, steps):
        self.verbose = verbose
        self.steps = steps
        self.start = time.perf_counter()

    def step(self, step):
        elapsed = time.perf_counter() - self.start
        steps, width = self.steps, len(str(self.steps))
        if self.verbose == 1:
            eta = elapsed / max(step, 1) * (steps - step)
            bar = _bar(step, steps, self.WIDTH)
            shown = _duration(elapsed if step == steps else eta)
            end = "\n" if step == steps else ""
            sys.stdout.write(f"\r{step:>{width}}/{steps} {bar} {shown} {_per_step(elapsed, step)}{end}")
        elif step == steps:
            sys.stdout.write(f"{steps}/{steps} - {_duration(elapsed)} - {_per_step(elapsed, steps)}\n")
        sys.stdout.flush()
