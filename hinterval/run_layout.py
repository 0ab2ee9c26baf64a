"""The names of what ``hinterval train`` writes into a run directory (its own module: the command
line checks a directory with them before torch loads, and the checkpoint code writes them)."""
from __future__ import annotations

CHECKPOINT_NAME = "checkpoint.pt"
RESULT_NAME = "result.json"
RUN_CONFIG_NAME = "config.json"
TENSORBOARD_DIR = "tensorboard"
#: every entry a run writes: the only names ``--overwrite`` deletes
RUN_ENTRIES = (RUN_CONFIG_NAME, CHECKPOINT_NAME, RESULT_NAME, TENSORBOARD_DIR)
