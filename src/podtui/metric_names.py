"""Metric names podtui gives a meaning to (a module of its own: the TUI reads it before the models load)."""

LOSS_NAMES = ("loss", "train_loss", "eval_loss", "val_loss", "validation_loss")
"""Loss-like metric names, in the order the chart shows them. The first two are training loss: the runs table's
last loss and sparkline and the NaN guardrail follow the first of them a run logs."""
TRAIN_LOSS_NAMES = LOSS_NAMES[:2]
