"""Read-only trainer callbacks: TensorBoard scalars and HParams, checkpoints and result files for a run dir.

TensorBoard layout (shared by ``hinterval train`` and the sweep's per-trial runs):

* scalars are grouped so that TensorBoard, which sorts groups by name, lists the useful ones
  first: ``summary/<metric>`` (avg_acc, bwt, worst-case, DIL, CIL after every task),
  ``task_acc/<scenario>/task_NN`` (each task's accuracy), ``time/...`` and ``train/...``;
* the HParams plugin gets a session (the run's hyperparameters) and, for sweeps, an experiment
  declaration (which hyperparameters were swept, their domains, and the ``summary/*`` metrics),
  written with TensorBoard's own protos, so no TensorFlow is needed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from hinterval import metrics as M
from hinterval.checkpoint import CHECKPOINT_NAME, RESULT_NAME, save_checkpoint
from hinterval.config import FIELD_SPECS
from hinterval.files import write_json

#: a run's columns in TensorBoard's HParams table: the config keys declared ``hparam``
HPARAM_KEYS = tuple(k for k, f in FIELD_SPECS.items() if f.setting.hparam)
#: per-task headline metrics, in the order the HParams table shows them (``summary/<name>`` scalars)
SUMMARY_METRICS = M.HEADLINE_METRICS
#: scalar group of the headline metrics; TensorBoard sorts groups by name and this one sorts first
SUMMARY_GROUP = "summary"
TASK_GROUP, TIME_GROUP, TRAIN_GROUP = "task_acc", "time", "train"
#: HParams session status of a finished run, by our trial status
_SESSION_STATUS = {"COMPLETE": "STATUS_SUCCESS", "ERROR": "STATUS_FAILURE", "DIVERGED": "STATUS_FAILURE",
                   "LOST": "STATUS_FAILURE"}


def scalar_tag(key: str) -> Optional[str]:
    """TensorBoard tag of a trainer metric (``None``: not a plotted series, e.g. ``tasks_done``, the step)."""
    if key in SUMMARY_METRICS:
        return f"{SUMMARY_GROUP}/{key}"
    if key.startswith("acc/"):  # acc/til/task_00, see metrics.task_metric_name
        return f"{TASK_GROUP}/{key[len('acc/'):]}"
    if key.endswith("_s"):
        return f"{TIME_GROUP}/{key}"
    return None


def hparams_of(config: Dict[str, Any]) -> Dict[str, Any]:
    """Scalar/str hyperparameters for TensorBoard's HParams table (width lists become ``"a,b"`` strings)."""
    out = {k: config[k] for k in HPARAM_KEYS if k in config and config[k] is not None}
    for k, v in out.items():
        if isinstance(v, (list, tuple)):
            out[k] = ",".join(map(str, v))
    return out


@dataclass(frozen=True)
class HParamDomain:
    """One hyperparameter of a TensorBoard HParams experiment.

    ``values`` for a discrete domain (strings, numbers or bools), else the interval ``low``..``high``
    (``log`` only goes into the description: TensorBoard's proto has no scale field; pick "Log"
    in the parallel-coordinates view).
    """

    name: str
    values: Tuple[Any, ...] = ()
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    differs: bool = True
    description: str = ""


def _domain(h: HParamDomain) -> Any:
    from tensorboard.plugins.hparams import summary_v2 as hp

    if h.values:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in h.values)
        return hp.Discrete([float(v) for v in h.values] if numbers else list(h.values))
    if h.low is not None and h.high is not None:
        return hp.RealInterval(float(h.low), float(h.high))
    return None


def hparams_experiment_summary(hparams: Sequence[HParamDomain], metrics: Sequence[str], *,
                               time_created: Optional[float] = None):
    """The HParams experiment declaration: which columns the HParams tab shows, in this order.

    Without it TensorBoard infers the columns from the sessions, ticks the first five
    alphabetically and plots only values logged once; declared metrics are the per-task
    ``summary/<metric>`` series, so "Show Metrics" draws them against the task number.
    Built with TensorBoard's HParams API (no TensorFlow needed); the API has no ``differs``
    argument, so that bit (whether a column differs between runs) is set on its result.
    """
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    params = [hp.HParam(h.name, _domain(h), description="; ".join(
        t for t in (h.description, "swept on a log scale: pick Log for its axis" if h.log else "") if t))
        for h in hparams]
    summary = hp.hparams_config_pb(params, [hp.Metric(f"{SUMMARY_GROUP}/{m}", display_name=m) for m in metrics],
                                   time_created_secs=time.time() if time_created is None else time_created)
    value = summary.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info, h in zip(data.experiment.hparam_infos, hparams):
        info.differs = h.differs
    value.metadata.plugin_data.content = data.SerializeToString()
    return summary


def hparams_session_start_summary(values: Mapping[str, Any], *, group: str, start_time: Optional[float] = None):
    """One HParams session (a row of the table): the run's hyperparameter values."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    return hp.hparams_pb({k: values[k] for k in sorted(values) if values[k] is not None}, trial_id=group,
                         start_time_secs=start_time or time.time())


def hparams_session_end_summary(status: str, *, end_time: Optional[float] = None):
    """End of a session: success for a run that finished every task, failure for an error, else unknown.

    TensorBoard's HParams API writes no session end, so this one is built from its plugin's protos."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(_SESSION_STATUS.get(status, "STATUS_UNKNOWN")),
                                          end_time_secs=end_time or time.time())
    summary = summary_pb2.Summary()
    summary.value.add(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR, metadata=metadata.create_summary_metadata(
        plugin_data_pb2.HParamsPluginData(session_end_info=info)))
    return summary


def _run_name(log_dir: Path) -> str:
    return log_dir.resolve().parent.name if log_dir.name == "tensorboard" else log_dir.name


class TensorBoardLogger:
    """Writes training scalars per step, metrics per task and an HParams session.

    Args:
        log_dir: the run's directory (one TensorBoard run).
        config: the run's resolved config; its :func:`hparams_of` values form the session
            unless ``hparams`` is given.
        hparams: session values to log instead (a sweep logs only what it swept).
        experiment: an HParams experiment declaration to write first (see
            :func:`hparams_experiment_summary`); ``None`` lets TensorBoard infer the columns.
        group: the session's name in the HParams table (default: the run directory's name, i.e.
            ``RUN`` for ``RUN/tensorboard``, so runs compared side by side stay apart).

    The event file is opened at the first event, not on construction: a trainer's callbacks are
    built before the run directory is checked and prepared.
    """

    def __init__(self, log_dir: str | Path, config: Dict[str, Any], *, hparams: Optional[Mapping[str, Any]] = None,
                 experiment: Any = None, group: Optional[str] = None):
        self.log_dir, self.config = Path(log_dir), config
        self._session = (hparams_of(config) if hparams is None else hparams, group or _run_name(self.log_dir), time.time())
        self._experiment, self._writer = experiment, None

    @property
    def writer(self):
        """The ``SummaryWriter``; opened, with the HParams declarations, on first use."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
            fw = self._writer.file_writer  # the event file's writer, for summaries SummaryWriter has no method for
            if self._experiment is not None:
                fw.add_summary(self._experiment)
            values, group, started = self._session
            fw.add_summary(hparams_session_start_summary(values, group=group, start_time=started))
            self._writer.flush()
        return self._writer

    def on_step(self, task_id: int, step: int, logs: Dict[str, float]) -> None:
        gstep = int(logs.get("step", step))
        for k, v in logs.items():
            if k != "step":
                self.writer.add_scalar(f"{TRAIN_GROUP}/{k}", v, gstep)

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        for k, v in metrics.items():
            tag = scalar_tag(k)
            if tag is not None and M.is_finite_number(v):
                self.writer.add_scalar(tag, v, task_id + 1)
        self.writer.flush()

    def end_session(self, status: str) -> None:
        """Mark the HParams session finished with our run status and close the writer."""
        fw = self.writer.file_writer
        if fw is None:  # closed: the session was ended before
            return
        fw.add_summary(hparams_session_end_summary(status))
        self.writer.close()

    def on_train_end(self, result: Dict[str, Any]) -> None:
        self.end_session("COMPLETE" if result.get(M.TASKS_DONE) == result.get("num_tasks") else "STOPPED")


class RunDirWriter:
    """After every task: atomic ``checkpoint.pt`` (resume point) and ``result.json`` (the trainer's
    result so far, taken from the trainer that starts the fit)."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.result_fn: Optional[Callable[[], Dict[str, Any]]] = None

    def on_fit_start(self, trainer: Any) -> None:
        self.result_fn = trainer.result

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        save_checkpoint(state, self.out_dir / CHECKPOINT_NAME)
        write_json(self.out_dir / RESULT_NAME, {**self.result_fn(), "complete": False})

    def on_train_end(self, result: Dict[str, Any]) -> None:
        write_json(self.out_dir / RESULT_NAME, {**result, "complete": result[M.TASKS_DONE] == result["num_tasks"]})
