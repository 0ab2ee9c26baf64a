"""hinterval/callbacks.py: the TensorBoard layout of a `hinterval train` run (scalar groups, HParams session)."""
from __future__ import annotations

from pathlib import Path

import pytest

from hinterval.callbacks import HParamDomain, TensorBoardLogger, hparams_experiment_summary, scalar_tag
from hinterval.config import make_config


def _events(run: Path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    hp, scalars = {}, {}
    for f in sorted(run.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(f)).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    hp[v.tag] = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                elif v.metadata.plugin_data.plugin_name == "scalars" or v.HasField("simple_value"):
                    scalars.setdefault(v.tag, []).append(event.step)
    return hp, scalars


def test_scalar_groups_sort_the_headline_metrics_first():
    tags = [scalar_tag(k) for k in ("avg_acc", "cil_avg_acc", "acc/worst/task_03", "task_time_s", "tasks_done")]
    assert tags == ["summary/avg_acc", "summary/cil_avg_acc", "task_acc/worst/task_03", "time/task_time_s", None]
    groups = sorted({t.split("/")[0] for t in tags if t} | {"train"})
    assert groups[0] == "summary"  # TensorBoard lists groups by name: the headline metrics open first


def test_a_train_run_is_one_hparams_session_named_after_its_directory(tmp_path):
    from tensorboard.plugins.hparams import api_pb2

    cfg = make_config(benchmark="split-digits", gamma=0.5).to_dict()
    logger = TensorBoardLogger(tmp_path / "my-run" / "tensorboard", cfg)
    for t, acc in enumerate((0.9, 0.8)):
        logger.on_task_end(t, {"tasks_done": t + 1, "avg_acc": acc, "bwt": None, "acc/til/task_00": acc}, {})
    logger.on_train_end({"tasks_done": 2, "num_tasks": 2})
    hp, scalars = _events(tmp_path / "my-run" / "tensorboard")
    start = hp["_hparams_/session_start_info"].session_start_info
    assert start.group_name == "my-run" and start.hparams["gamma"].number_value == 0.5
    assert start.hparams["hnet_hidden"].string_value == ",".join(map(str, cfg["hnet_hidden"]))
    assert hp["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS
    assert "_hparams_/experiment" not in hp  # a lone run: TensorBoard works out what differs between runs
    assert scalars == {"summary/avg_acc": [1, 2], "task_acc/til/task_00": [1, 2]}  # None (bwt) is skipped


def test_experiment_declares_domains_types_and_metrics():
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    summary = hparams_experiment_summary(
        [HParamDomain("lr", low=1e-4, high=1e-2, log=True), HParamDomain("hnet_hidden", values=("50,50", "100,100")),
         HParamDomain("embedding_dim", values=(16, 24)), HParamDomain("preset", values=(False, True), differs=False)],
        ["avg_acc", "worst_avg_acc"])
    [value] = summary.value
    exp = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content).experiment
    lr, hidden, dim, preset = exp.hparam_infos
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == pytest.approx((1e-4, 1e-2))
    assert "log scale" in lr.description and lr.differs and not preset.differs
    assert hidden.type == api_pb2.DATA_TYPE_STRING and sorted(v.string_value for v in hidden.domain_discrete.values) == [
        "100,100", "50,50"]
    assert dim.type == api_pb2.DATA_TYPE_FLOAT64 and preset.type == api_pb2.DATA_TYPE_BOOL
    assert [m.name.tag for m in exp.metric_infos] == ["summary/avg_acc", "summary/worst_avg_acc"]
