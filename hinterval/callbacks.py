"""Read-only trainer callbacks: TensorBoard scalars, checkpoints and result files for a run dir."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from hinterval import metrics as M
from hinterval.checkpoint import CHECKPOINT_NAME, RESULT_NAME, save_checkpoint, write_json

HPARAM_KEYS = ("method", "embedding_mode", "gamma", "beta", "embedding_dim", "lr", "batch_size",
               "iters_per_task", "hnet_chunk_size", "seed")


def hparams_of(config: Dict[str, Any]) -> Dict[str, Any]:
    """Scalar/str hyperparameters for TensorBoard's HParams table (lists become strings)."""
    out = {k: config[k] for k in HPARAM_KEYS if k in config}
    out["hnet_hidden"] = ",".join(map(str, config.get("hnet_hidden", [])))
    out["target_hidden"] = ",".join(map(str, config.get("target_hidden", [])))
    return out


class TensorBoardLogger:
    """Writes training scalars per step, metrics per task and an HParams entry at the end."""

    def __init__(self, log_dir: str | Path, config: Dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.config = config

    def on_step(self, task_id: int, step: int, logs: Dict[str, float]) -> None:
        gstep = int(logs.get("step", step))
        for k, v in logs.items():
            if k != "step":
                self.writer.add_scalar(f"train/{k}", v, gstep)

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        for k, v in metrics.items():
            if M.is_finite_number(v):
                self.writer.add_scalar(k if "/" in k else f"metrics/{k}", v, task_id + 1)
        self.writer.flush()

    def on_train_end(self, result: Dict[str, Any]) -> None:
        final = {f"hparam/{k}": result[k] for k in (M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT) if M.is_finite_number(result.get(k))}
        self.writer.add_hparams(hparams_of(self.config), final, run_name=".")
        self.writer.close()


class RunDirWriter:
    """After every task: atomic ``checkpoint.pt`` (resume point) and ``result.json`` (so far)."""

    def __init__(self, out_dir: str | Path, result_fn):
        self.out_dir, self.result_fn = Path(out_dir), result_fn

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        save_checkpoint(state, self.out_dir / CHECKPOINT_NAME)
        write_json(self.out_dir / RESULT_NAME, {**self.result_fn(), "complete": False})

    def on_train_end(self, result: Dict[str, Any]) -> None:
        write_json(self.out_dir / RESULT_NAME, {**result, "complete": result[M.TASKS_DONE] == result["num_tasks"]})
