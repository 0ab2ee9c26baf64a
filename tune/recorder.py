"""Driver-side Tune callback: one JSON record and one TensorBoard run per trial.

Every result a trial reports reaches the driver, whichever node ran it, so writing here keeps
``results/<name>/`` complete on multi-node clusters without shared storage for the results dir:

* ``trials/<trial_id>.json``: status, searched params, full config, node ids and the metrics
  after every task (atomically rewritten on each report; the reporting reads these files).
* ``tensorboard/<trial_id>[-preset]/``: one TensorBoard run per trial through
  :class:`hinterval.callbacks.TensorBoardLogger`: the per-task ``summary/*`` series, an HParams
  session with the swept values (one row per trial in the HParams tab, the preset marked) and
  the sweep's HParams experiment declaration (swept hyperparameters with their domains, the
  metrics), and the session's status when the trial ends.

A task reported again after a resume (it had to be re-trained) is counted in ``reruns``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ray.tune import Callback

from hinterval import metrics as M
from hinterval.callbacks import HParamDomain, TensorBoardLogger, hparams_experiment_summary
from hinterval.files import write_json
from hinterval.strict_load import read_json_file
from hinterval.config import make_config
from tune.records import load_records, point_key, same_point
from tune.trainable import DIVERGED, REPLAYED

#: trainer metrics written to TensorBoard (the rest of a report is bookkeeping)
_TB_KEYS = (*M.HEADLINE_METRICS, "task_time_s", "elapsed_s")
#: HParams column marking the benchmark preset's trial
PRESET_HPARAM = "preset"
#: Tune bookkeeping fields not kept in the per-task history
_DROP = {"config", "done", "trial_id", "experiment_tag", "date", "pid", "iterations_since_restore",
         "time_since_restore", "checkpoint_dir_name", "should_checkpoint", "timesteps_total", "episodes_total",
         "timesteps_since_restore", "experiment_id"}

#: trial statuses in the records: STOPPED = ended early by the scheduler, DIVERGED = loss became NaN/inf
#: LOST = started just before the driver died and unknown to the resumed experiment
COMPLETE, STOPPED, ERROR, RUNNING, RETRYING, LOST = "COMPLETE", "STOPPED", "ERROR", "RUNNING", "RETRYING", "LOST"


def _clean(v: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def run_name(rec: Mapping[str, Any]) -> str:
    """A trial's TensorBoard run: its 8-character Tune id, ``-preset`` for the preset's trial."""
    return rec["trial_id"] + ("-preset" if rec.get("is_preset") else "")


class SweepRecorder(Callback):
    """Keeps ``trials/<id>.json`` and ``tensorboard/<id>/`` of every trial up to date.

    Args:
        out_dir: the sweep's results directory (absolute, on the driver).
        base: fixed config keys of every trial (merged under the searcher's suggestion).
        preset: the preset's point in the search space (marks the paper/default trial), or None.
        tensorboard: write TensorBoard runs.
        hparams: the swept hyperparameters' domains, declared to TensorBoard's HParams plugin (a
            ``preset`` column is added when there is a preset); empty: TensorBoard infers them.
        metrics: the ``summary/*`` metrics the HParams tab shows, in order.
        tensorboard_dir: where the TensorBoard runs go (default ``out_dir/tensorboard``).
        run_labels: TensorBoard run names by :func:`point_key` of a trial's params (default :func:`run_name`):
            the confirmation runs of a sweep name the trial and seed they repeat.
    """

    def __init__(self, out_dir: str, *, base: Dict[str, Any], preset: Optional[Dict[str, Any]], tensorboard: bool = True,
                 hparams: Sequence[HParamDomain] = (), metrics: Sequence[str] = (), tensorboard_dir: Optional[str] = None,
                 run_labels: Optional[Dict[str, str]] = None):
        self.out_dir, self.base, self.preset, self.tensorboard = str(out_dir), dict(base), preset, tensorboard
        self.hparams, self.metrics = list(hparams), list(metrics)
        self.tensorboard_dir = str(tensorboard_dir or Path(self.out_dir) / "tensorboard")
        self.run_labels = dict(run_labels or {})
        if self.hparams and preset is not None:
            self.hparams.append(HParamDomain(PRESET_HPARAM, values=(False, True),
                                             description="the benchmark preset's config (evaluated first)"))
        self._records: Dict[str, Dict[str, Any]] = {}
        self._tb: Dict[str, TensorBoardLogger] = {}

    # Tune pickles the callback into the experiment state; open writers stay on this driver
    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_records"], state["_tb"] = {}, {}
        return state

    # --- records ---------------------------------------------------------------------------------
    def _path(self, trial_id: str) -> Path:
        return Path(self.out_dir) / "trials" / f"{trial_id}.json"

    def _record(self, trial: Any) -> Dict[str, Any]:
        tid = trial.trial_id
        if tid not in self._records:
            p = self._path(tid)
            if p.is_file():  # resumed sweep: continue the record written before
                self._records[tid] = read_json_file(p, "trial record")
            else:
                params = {k: v for k, v in dict(trial.config).items()}
                try:
                    config = make_config(self.base, params).to_dict()
                except Exception:  # noqa: BLE001 - the trial itself reports the error
                    config = {**self.base, **params}
                self._records[tid] = {
                    "trial_id": tid, "status": "PENDING", "params": params, "config": config,
                    "is_preset": self.preset is not None and same_point(params, self.preset) and not self._preset_taken(),
                    "num_tasks": None, "tasks_done": 0, "node_id": None, "node_ids": [], "history": [],
                    "reruns": [], "started_at": time.time(), "finished_at": None, "wall_time_s": None,
                    "error": None, "restarts": 0,
                }
        return self._records[tid]

    def _preset_taken(self) -> bool:
        return any(r.get("is_preset") for r in self._records.values()) or any(
            r.get("is_preset") for r in load_records(self.out_dir))

    def _save(self, rec: Dict[str, Any]) -> None:
        write_json(self._path(rec["trial_id"]), rec)

    # --- Tune hooks ----------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        if rec["status"] in (RUNNING, RETRYING, STOPPED, ERROR) or rec["history"]:
            rec["restarts"] += 1
        rec["status"] = RUNNING
        self._save(rec)

    def on_trial_result(self, iteration: int, trials: List[Any], trial: Any, result: Dict[str, Any], **info: Any) -> None:
        rec = self._record(trial)
        row = {k: _clean(v) for k, v in result.items() if k not in _DROP and not isinstance(v, (dict, list))}
        if row.get(DIVERGED):  # not a task result: the trial ends here
            rec["diverged"], rec["error"] = True, str(row[DIVERGED])[:500]
            self._save(rec)
            return
        done = int(row.get(M.TASKS_DONE, 0))
        if row.get(REPLAYED) and done <= rec["tasks_done"]:
            return  # a resumed trial re-sent a task this record already has (it was not trained again)
        if done <= rec["tasks_done"]:
            rec["reruns"].append(done)  # this task was trained (and reported) before
        rec["history"] = [h for h in rec["history"] if h.get(M.TASKS_DONE) != done] + [row]
        rec["history"].sort(key=lambda h: h.get(M.TASKS_DONE, 0))
        rec["tasks_done"] = max(rec["tasks_done"], done)
        rec["num_tasks"] = row.get("num_tasks", rec["num_tasks"])
        node = row.get("node_id")
        rec["node_id"] = node
        if node and node not in rec["node_ids"]:
            rec["node_ids"].append(node)
        for k in ("device", "num_threads"):
            if k in row:
                rec["config"][k] = row[k]
        rec["wall_time_s"] = row.get("elapsed_s", rec["wall_time_s"])
        rec["status"] = RUNNING
        self._save(rec)
        if self.tensorboard:
            metrics = {k: row[k] for k in row if (k in _TB_KEYS or k.startswith("acc/")) and M.is_finite_number(row[k])}
            self._logger(rec).on_task_end(done - 1, metrics, {})

    def on_trial_complete(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        finished = rec["num_tasks"] is not None and rec["tasks_done"] >= rec["num_tasks"]
        self._finish(rec, DIVERGED.upper() if rec.get("diverged") else COMPLETE if finished else STOPPED)

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec["error"] = _error_line(trial)
        self._finish(rec, ERROR)

    def on_trial_recover(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec["status"], rec["error"] = RETRYING, _error_line(trial)
        self._save(rec)

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        for logger in self._tb.values():
            logger.writer.close()
        self._tb.clear()
        # A trial created in the last seconds before the driver died may be missing from the
        # experiment state Tune resumed from: it will never run again, so say so in its record.
        known = {t.trial_id for t in trials}
        for rec in load_records(self.out_dir):
            if rec["trial_id"] not in known and rec["status"] in ("PENDING", RUNNING, RETRYING):
                rec["status"], rec["error"] = LOST, "not in Tune's saved experiment state when the sweep was resumed"
                self._save(rec)

    # --- TensorBoard ---------------------------------------------------------------------------
    def _logger(self, rec: Dict[str, Any]) -> TensorBoardLogger:
        tid = rec["trial_id"]
        if tid not in self._tb:
            name = self.run_labels.get(point_key(rec["params"])) or run_name(rec)
            values = dict(rec["params"])
            if self.preset is not None:
                values[PRESET_HPARAM] = bool(rec.get("is_preset"))
            if self.hparams:  # only the declared columns (a confirmation run's seed is in its run name)
                declared = {h.name for h in self.hparams}
                values = {k: v for k, v in values.items() if k in declared}
            experiment = hparams_experiment_summary(self.hparams, self.metrics) if self.hparams else None
            self._tb[tid] = TensorBoardLogger(Path(self.tensorboard_dir) / name, rec["config"], hparams=values,
                                              experiment=experiment, group=name)
        return self._tb[tid]

    def _finish(self, rec: Dict[str, Any], status: str) -> None:
        rec["status"], rec["finished_at"] = status, time.time()
        self._save(rec)
        if self.tensorboard:
            self._logger(rec).end_session(status)
            self._tb.pop(rec["trial_id"], None)


def _error_line(trial: Any) -> Optional[str]:
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else None
