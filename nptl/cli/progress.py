"""Training progress for a terminal, a log file, or nobody.

:class:`Console` is a :class:`nptl.train.Progress` for a whole command: it knows the plan (the
``fit`` calls to come, in order, with their epochs and mini-batches) and shows

- on a terminal: one bar per ``fit`` call (per arm and draw) with the position in the whole run
  and an ETA over the whole run;
- otherwise (a pipe or a file): one plain line when each ``fit`` call ends, no ``\\r`` updates;
- with ``verbose``: also one line per epoch; with ``quiet``: nothing.

The ETA counts the work in training images (epochs x images per epoch: phases differ in batch
size, not much in seconds per image) and uses the measured seconds per image of each kind of
phase (its label's last word: ``source``, ``scratch``, ``frozen``, ``finetune``, ...), or the mean
over the phases so far for a kind not yet seen.

It also keeps a copy of the weights after the last completed epoch of the current phase
(:meth:`last_completed`), which the commands save when interrupted.

Ctrl-C during a ``fit`` call is acted on between mini-batches: the ``KeyboardInterrupt`` is raised
from :meth:`step`, never inside a Numba kernel (where it would surface as a ``SystemError``).
A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time

from ..train import Progress, metric_label, snapshot


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Console(Progress):
    """``plan``: ``[(label, epochs, images_per_epoch), ...]`` of the ``fit`` calls to come, in order
    (``label`` is what the display calls it); calls beyond the plan are shown by their ``desc``,
    without an ETA."""

    def __init__(self, plan, quiet: bool = False, verbose: bool = False, stream=None, tty: bool | None = None):
        self.plan = [(label, epochs * images) for label, epochs, images in plan]
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.quiet, self.verbose = quiet, verbose
        self.index = -1                 # position in the plan of the current fit call
        self.done = [0.0] * len(self.plan)  # training images seen, per fit call
        self.rate = {}                  # seconds per training image, by kind
        self.model = self.weights = None
        self.completed_epochs = 0
        self.bar = None
        self.desc, self.started = "", None
        self.interrupt_requested, self._sigint_handler = False, None

    # -- the plan and the ETA ----------------------------------------------------------------------
    @staticmethod
    def _kind(label: str) -> str:
        return label.split()[-1] if label.split() else label

    def _eta(self) -> tuple[float, float] | None:
        """(fraction of the run done, seconds left), or None beyond the plan."""
        if not 0 <= self.index < len(self.plan):
            return None
        elapsed_rate = self._rate_now()
        known = list(self.rate.values()) + ([elapsed_rate] if elapsed_rate else [])
        if not known:
            return None
        fallback = sum(known) / len(known)
        left = 0.0
        for i, (label, total) in enumerate(self.plan):
            remaining = total - self.done[i]
            if remaining > 0:
                rate = elapsed_rate if i == self.index and elapsed_rate else self.rate.get(self._kind(label), fallback)
                left += remaining * rate
        elapsed = time.perf_counter() - self.started
        return elapsed / (elapsed + left), left

    def _rate_now(self) -> float | None:
        """Seconds per training image in the current phase so far."""
        seen = self.done[self.index] if 0 <= self.index < len(self.plan) else 0
        return (time.perf_counter() - self.t0) / seen if seen else None

    def _where(self) -> str:
        eta = self._eta()
        return "" if eta is None else f"run {eta[0]:.0%}, ETA {_clock(eta[1])}"

    # -- Progress hooks ----------------------------------------------------------------------------
    # -- Ctrl-C between mini-batches -----------------------------------------------------------------
    def _on_sigint(self, signum, frame):
        if self.interrupt_requested:
            raise KeyboardInterrupt
        self.interrupt_requested = True

    def _defer_interrupts(self) -> None:
        if self._sigint_handler is None and threading.current_thread() is threading.main_thread():
            self._sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _restore_interrupts(self) -> None:
        if self._sigint_handler is not None:
            signal.signal(signal.SIGINT, self._sigint_handler)
            self._sigint_handler = None

    def _interrupt_if_requested(self) -> None:
        if self.interrupt_requested:
            self.interrupt_requested = False
            self._restore_interrupts()
            raise KeyboardInterrupt

    # -- the Progress interface ------------------------------------------------------------------------
    def begin(self, model, desc, epochs, steps):
        self._defer_interrupts()
        self.index += 1
        self.model, self.weights, self.completed_epochs = model, None, 0
        self.epochs, self.steps = epochs, steps
        self.t0 = time.perf_counter()
        self.started = self.started or self.t0
        if self.index < len(self.plan):
            self.desc, total = self.plan[self.index]
            self.per_step = total / (epochs * steps)
        else:
            self.desc = desc.strip() or "train"
        if self.tty and not self.quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs * steps, desc=self.desc, file=self.stream, leave=True, dynamic_ncols=True,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} batches{postfix}")

    def step(self, epoch, step, loss, accuracy):
        self._interrupt_if_requested()
        if self.index < len(self.plan):
            self.done[self.index] += self.per_step
        if self.bar is not None:
            where = self._where()
            self.bar.set_postfix_str(f"epoch {epoch}/{self.epochs} loss {loss:.4f} {metric_label(self.metric)} {accuracy:.4f}"
                                     + (f" | {where}" if where else ""), refresh=False)
            self.bar.update()

    def epoch(self, epoch, logs):
        self.weights, self.completed_epochs = snapshot(self.model), epoch
        self.last_logs = logs
        if self.verbose and not self.quiet:
            m, label = self.metric, metric_label(self.metric)
            msg = f"{self.desc} epoch {epoch}/{self.epochs}: loss {logs['loss']:.4f} {label} {logs[m]:.4f}"
            if not math.isnan(logs["val_loss"]):
                msg += f" val_loss {logs['val_loss']:.4f} val_{label} {logs['val_' + m]:.4f}"
            self._line(msg + f" ({logs['seconds']:.1f}s)")

    def end(self, history):
        if history is None:         # fit is unwinding an exception: let it through
            self.interrupt_requested = False
            self._restore_interrupts()
        rate = self._rate_now()
        if rate:
            self.rate[self._kind(self.desc)] = rate
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif history is not None and not self.quiet and not self.verbose:
            logs = self.last_logs
            where = self._where()
            self._line(f"{self.desc}: {history.epochs} epochs ({time.perf_counter() - self.t0:.1f}s), training loss "
                       f"{logs['loss']:.4f} {metric_label(self.metric)} {logs[self.metric]:.4f}" + (f"; {where}" if where else ""))
        self._interrupt_if_requested()
        self._restore_interrupts()

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def log(self, text: str) -> None:
        """A status line that does not break the bars."""
        if not self.quiet:
            self._line(text)

    def last_completed(self):
        """``(model, weights, epoch)`` of the current phase after its last completed epoch, or
        ``None`` when no epoch has completed."""
        return (self.model, self.weights, self.completed_epochs) if self.weights is not None else None
