"""What makes a resumed training run the same run as one that was never stopped.

TRL's trainer restores the weights, the optimizer and scheduler, the RNG states and the place in
the data from a checkpoint, so every step after a resume computes what it would have. One number
does not survive: the `training_loss` a `train()` call returns is the mean over the steps of that
call only, so a run killed at step k and resumed would report the mean of steps k+1 onwards.

`RunLoss` closes that gap: it logs the loss at every checkpoint step (a checkpoint's log history,
which it carries, then holds the loss of every step up to it) and notes the step the call started
at; `run_loss` adds the steps before the resume back from that history. The manifest's
`train_loss` is the mean over the whole run, resumed or not. This module imports transformers:
import it inside the function that trains.
"""

from __future__ import annotations

from transformers import TrainerCallback


class RunLoss(TrainerCallback):
    """Logs the loss at every checkpoint step; `first_step` is the step this `train()` call began at."""

    first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step  # the checkpoint's step when resuming, else 0

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            control.should_log = True


def run_loss(history: list[dict], first_step: int, call_loss: float, last_step: int) -> float:
    """The mean loss over a run's steps, given the mean `call_loss` over the steps its last
    `train()` call ran (`first_step` + 1 to `last_step`) and the run's log history, in which each
    logged loss is the mean over the steps since the log before it. Steps before the resume with
    no loss in the history (a checkpoint written without `RunLoss`) are left out of the mean."""
    before, logged = 0.0, 0
    for entry in history:
        if "loss" in entry and logged < entry["step"] <= first_step:
            before += entry["loss"] * (entry["step"] - logged)
            logged = entry["step"]
    steps = logged + last_step - first_step
    return (before + call_loss * (last_step - first_step)) / steps if steps else call_loss
