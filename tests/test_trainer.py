"""Continual trainer: determinism, resume at a task boundary, model selection, worst-case logits."""
from __future__ import annotations

import math

import pytest
import torch

from hinterval.checkpoint import load_checkpoint, save_checkpoint
from hinterval.config import make_config
from hinterval.errors import TrainingDiverged, UserError
from hinterval.trainer import ContinualTrainer, iterations_for, train_continual

from conftest import make_synthetic_benchmark


def _cfg(**kw):
    base = dict(benchmark="split-digits", device="cpu", iters_per_task=30, val_every=10, batch_size=16,
                embedding_dim=4, hnet_hidden="16", target_hidden="8", gamma=0.5)
    base.update(kw)
    return make_config(base)


class _Recorder:
    def __init__(self):
        self.states, self.metrics = [], []

    def on_task_end(self, task_id, metrics, state):
        self.metrics.append(metrics)
        self.states.append(state)


@pytest.mark.parametrize("mode", [pytest.param("nested", marks=pytest.mark.slow), "non-forced"])
def test_resume_equals_uninterrupted(mode, tmp_path):
    cfg = _cfg(embedding_mode=mode)
    rec = _Recorder()
    full = train_continual(cfg, callbacks=[rec], benchmark=make_synthetic_benchmark(), progress=False)
    # "kill" after task 1: save the state from the callback, then resume from the file
    save_checkpoint(rec.states[0], tmp_path / "ckpt.pt")
    state = load_checkpoint(tmp_path / "ckpt.pt")
    resumed = train_continual(cfg, resume_state=state, benchmark=make_synthetic_benchmark(), progress=False)
    for key in ("avg_acc", "bwt", "worst_avg_acc", "worst_bwt", "acc_matrix"):
        assert resumed[key] == full[key], key
    assert resumed["cil"]["acc_matrix"] == full["cil"]["acc_matrix"]
    assert resumed["tasks_done"] == 3


def test_result_is_well_formed_and_no_forgetting_of_centre(synthetic_benchmark):
    res = train_continual(_cfg(beta=1.0, iters_per_task=60), benchmark=synthetic_benchmark, progress=False)
    A = res["acc_matrix"]
    assert all(A[i][j] is None for i in range(3) for j in range(i + 1, 3))
    assert 0.0 <= res["avg_acc"] <= 1.0 and res["worst_avg_acc"] <= res["avg_acc"] + 1e-9
    assert res["avg_acc"] > 0.9  # separable blobs
    assert res["bwt"] > -0.1
    assert res["dil"]["avg_acc"] is None  # non-forced: no universal embedding
    assert {"til", "worst", "dil", "cil", "config", "versions", "runtime", "wall_time_s", "seed"} <= set(res)
    assert res["runtime"]["torch_threads"] == torch.get_num_threads() and res["runtime"]["omp_wait_policy"]


def test_trainer_leaves_process_settings_alone(synthetic_benchmark):
    """Threads and the allocator are the program's (hinterval.runtime.configure_process), not the library's."""
    before = torch.get_num_threads()
    ContinualTrainer(_cfg(num_threads=before + 1), benchmark=synthetic_benchmark, progress=False)
    assert torch.get_num_threads() == before


def test_evaluate_recomputes_the_last_row(synthetic_benchmark):
    trainer = ContinualTrainer(_cfg(), benchmark=synthetic_benchmark, progress=False)
    trainer.fit()
    last = trainer.tasks_done - 1
    saved = {s: list(rows[last]) for s, rows in trainer.matrices.items()}
    for rows in trainer.matrices.values():
        rows[last][0] = -1.0  # damage the stored row: evaluate() must put the real accuracies back
    fresh = trainer.evaluate()
    assert fresh == saved and {s: rows[last] for s, rows in trainer.matrices.items()} == saved
    assert min(fresh["til"]) > 0.9  # separable blobs


def test_callbacks_are_fixed_at_construction(synthetic_benchmark):
    seen = []

    class Spy:
        def on_fit_start(self, trainer):
            seen.append(("start", trainer.tasks_done))

        def on_task_end(self, task_id, metrics, state):
            seen.append(("task", task_id))

    trainer = ContinualTrainer(_cfg(iters_per_task=10), callbacks=[Spy()], benchmark=synthetic_benchmark,
                               progress=False)
    assert not hasattr(trainer.callbacks, "append")
    trainer.fit()
    assert seen == [("start", 0), ("task", 0), ("task", 1), ("task", 2)]


def test_nested_mode_has_a_universal_network_that_never_falls_below_its_bound(synthetic_benchmark):
    """Nested mode: one universal network, evaluated on every task; where a task's box is certified,
    the universal network (whose weights lie in every box) is at least as accurate as that bound."""
    res = train_continual(_cfg(embedding_mode="nested"), benchmark=synthetic_benchmark, progress=False)
    uni = res["universal"]
    final = uni["final_accs"]
    assert len(final) == len(synthetic_benchmark) and all(0.0 <= a <= 1.0 for a in final)
    assert res["dil"]["avg_acc"] == pytest.approx(sum(final) / len(final))
    assert uni["violations"] == 0 and uni["certified_bound"] is not None
    assert all(a >= b - 1e-9 for a, b in zip(final, uni["certified_bound"]))


def test_wrong_config_resume_is_refused(synthetic_benchmark):
    rec = _Recorder()
    cfg = _cfg(num_tasks=None)
    train_continual(cfg, callbacks=[rec], benchmark=make_synthetic_benchmark(), progress=False)
    trainer = ContinualTrainer(cfg.replace(beta=0.5), benchmark=make_synthetic_benchmark(), progress=False)
    with pytest.raises(UserError, match="different config"):
        trainer.load_state(rec.states[0])


def test_worst_case_logits_below_middle_for_true_class(synthetic_benchmark):
    trainer = ContinualTrainer(_cfg(), benchmark=synthetic_benchmark, progress=False)
    trainer.fit()
    task = synthetic_benchmark.tasks[0]
    x, y = task.inputs(task.test.x), task.test.y
    pred = trainer.method.predictor([0, 1])
    mid = pred.logits(x)[0]
    lo, hi = pred.bounds(x)
    true_mid = mid.gather(1, y[:, None])
    assert (lo[0].gather(1, y[:, None]) <= true_mid + 1e-5).all()
    assert (lo[0] <= mid + 1e-5).all() and (mid <= hi[0] + 1e-5).all()


def test_gamma_zero_hnet_has_no_intervals(synthetic_benchmark):
    res = train_continual(_cfg(method="hnet"), benchmark=synthetic_benchmark, progress=False)
    assert res["worst_avg_acc"] is None and res["avg_acc"] > 0.8


def test_divergence_is_reported_with_task_and_iteration(synthetic_benchmark):
    with pytest.raises(TrainingDiverged, match=r"task 1/\d+, iteration \d+/\d+"):
        train_continual(_cfg(lr=1e30), benchmark=synthetic_benchmark, progress=False)


def test_iterations_from_epochs(synthetic_benchmark):
    cfg = _cfg(epochs_per_task=2.0, batch_size=10)
    assert iterations_for(cfg, synthetic_benchmark.tasks[0]) == math.ceil(2 * 64 / 10)


def test_cuda_request_without_gpu_is_a_user_error(synthetic_benchmark):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no CUDA GPU"):
        ContinualTrainer(_cfg(device="cuda"), benchmark=synthetic_benchmark, progress=False)


def test_config_validation_messages():
    for bad, msg in [(dict(gamma=-1), "gamma"), (dict(embedding_dim=0), "embedding dim"),
                     (dict(benchmark="nope"), "unknown benchmark"), (dict(beta=-0.1), "beta"),
                     (dict(lr=0), "learning rate"), (dict(hnet_hidden="a,b"), "comma-separated"),
                     (dict(bogus_key=1), "unknown config key"), (dict(method="hnet", embedding_mode="nested", gamma=0), None)]:
        if msg is None:
            make_config(bad)  # hnet ignores gamma/mode: valid
            continue
        with pytest.raises(UserError, match=msg):
            make_config(bad)


def test_forced_collapse_is_detected_and_reported():
    """A huge box trained from the first step with the fixed schedule drives the network to constant
    outputs: the task report, the metrics and the result must say so."""
    cfg = _cfg(gamma=1000.0, kappa_min=0.0, ramp="fixed", ramp_fraction=0.0, iters_per_task=40, num_tasks=2)
    rec = _Recorder()
    res = train_continual(cfg, callbacks=[rec], progress=False)
    assert res["collapsed_tasks"] == [0, 1]
    assert all(r["collapsed"] and r["val_acc"] < 0.6 for r in res["tasks"])
    assert rec.metrics[0]["task_collapsed"] is True and rec.metrics[-1]["collapsed_tasks"] == 2


def test_guarded_ramp_keeps_the_centre_where_the_fixed_one_collapses():
    """Same huge gamma with the default guarded warm-up: the centre network learns every task
    (the box stays small instead), and nothing is reported as collapsed."""
    cfg = _cfg(gamma=1000.0, kappa_min=0.0, iters_per_task=120, num_tasks=2, target_hidden="32", hnet_hidden="32")
    res = train_continual(cfg, progress=False)
    assert res["collapsed_tasks"] == []
    assert min(res["til"]["final_accs"]) >= 0.75  # chance is 0.5; the fixed schedule ends there
    assert all(r["ramp_reached"] < 1.0 for r in res["tasks"])  # the vacuous box was not grown to full gamma


def test_task_report_records_the_weight_box_width():
    res = train_continual(_cfg(num_tasks=1), progress=False)
    (report,) = res["tasks"]
    assert report["weight_box_rel_radius"] > 0 and res["certified"] is True
    assert res["box_size"] == report["weight_box_rel_radius"]
    assert res["gamma_reached"] == pytest.approx(res["config"]["gamma"] * report["ramp_reached"])
    hnet = train_continual(_cfg(num_tasks=1, method="hnet"), progress=False)
    assert "weight_box_rel_radius" not in hnet["tasks"][0] and hnet["box_size"] is None


@pytest.mark.parametrize("hold", ["intersection", "penalty"])
def test_universal_network_is_never_below_its_certified_bound(hold, synthetic_benchmark):
    """The universal embedding lies in every task's embedding box, so its network lies in every
    task's weight box: every sample certified for a task is classified right by it."""
    res = train_continual(_cfg(embedding_mode="nested", nested_hold=hold, iters_per_task=60, gamma=0.5),
                          benchmark=synthetic_benchmark, progress=False)
    uni = res["universal"]
    assert uni["hold"] == hold and uni["violations"] == 0
    assert len(uni["certified_bound"]) == 3
    assert all(a >= b for a, b in zip(uni["final_accs"], uni["certified_bound"]))
    assert uni["acc_matrix"] == res["dil"]["acc_matrix"] and 0 <= uni["embedding_share"] <= 1


def test_intersection_hold_keeps_earlier_certificates(synthetic_benchmark):
    """With the intersection hold each task's box only shrinks inside the box it was certified
    on, so no task's certified accuracy ever drops."""
    res = train_continual(_cfg(embedding_mode="nested", nested_hold="intersection", iters_per_task=60),
                          benchmark=synthetic_benchmark, progress=False)
    W = res["worst"]["acc_matrix"]
    for j in range(3):
        for i in range(j + 1, 3):
            assert W[i][j] >= W[j][j] - 1e-9, (i, j)


def test_non_forced_has_no_universal(synthetic_benchmark):
    res = train_continual(_cfg(iters_per_task=20), benchmark=synthetic_benchmark, progress=False)
    assert res["universal"] is None


def test_partial_interval_scope_is_recorded_and_measured_over_the_boxed_weights(synthetic_benchmark):
    """With the box on the output layer only, result.json names the scope and what it covers,
    the weight-box width is taken over the boxed weights, and in nested mode the task boxes give
    no bound for the universal network (its other layers are not any task's)."""
    from hinterval.intervals import relative_radius

    trainer = ContinualTrainer(_cfg(interval_scope="head", embedding_mode="nested", iters_per_task=20),
                               benchmark=synthetic_benchmark, progress=False)
    res = trainer.fit()
    assert res["interval_scope"] == "head" and res["certified"] is True
    assert "last 1 of 2 layers" in res["certificate"]
    target, box = trainer.method.target, trainer.method.weight_box(2)
    assert int(target.boxed_mask().sum()) == 8 * 2 + 2  # the 8 -> 2 output layer of the MLP
    assert res["tasks"][2]["weight_box_rel_radius"] == pytest.approx(
        relative_radius(box[0][target.boxed_mask()], box[1][target.boxed_mask()]))
    uni = res["universal"]
    assert uni["certified_bound"] is None and uni["bound_avg"] is None and "head" in uni["bound_note"]
    every = train_continual(_cfg(interval_scope="last:2", embedding_mode="nested", iters_per_task=20),
                            benchmark=synthetic_benchmark, progress=False)  # both layers named: the whole box
    assert every["universal"]["certified_bound"] is not None and "bound_note" not in every["universal"]
    full = train_continual(_cfg(num_tasks=1), progress=False)
    assert full["interval_scope"] == "all" and "all 2 layers" in full["certificate"]


def test_corner_centres_stay_apart_and_the_result_says_how_far(synthetic_benchmark):
    """Fixed corners are never trained: every task keeps its own hypernetwork input (and network),
    the universal network keeps its bound, and result.json reports the separation."""
    res = train_continual(_cfg(embedding_mode="nested", nested_centres="corners", iters_per_task=40),
                          benchmark=synthetic_benchmark, progress=False)
    uni = res["universal"]
    sigma = 0.5 / (2 * 4)
    assert uni["centre_min_distance"] >= 2 * sigma - 1e-6  # distinct corners differ by 2 sigma somewhere
    assert uni["network_min_distance"] > 0 and uni["centre_spread"] >= uni["centre_min_distance"]
    assert uni["violations"] == 0 and all(a >= b for a, b in zip(uni["final_accs"], uni["certified_bound"]))


def test_learned_nested_centres_report_their_separation_too(synthetic_benchmark):
    res = train_continual(_cfg(embedding_mode="nested", iters_per_task=20), benchmark=synthetic_benchmark,
                          progress=False)
    uni = res["universal"]
    assert {"centre_spread", "centre_min_distance", "network_min_distance"} <= set(uni)


def test_universal_weight_trains_the_universal_network(synthetic_benchmark):
    """With a universal loss the current task's loss reaches the universal network directly (and its
    output from before the task is held); without it, the loss has no such term."""
    base = dict(embedding_mode="nested", nested_centres="corners", gamma=0.5)
    task = synthetic_benchmark.tasks[1]
    x, y = task.inputs(task.train.x[:16]), task.train.y[:16]
    for weight in (0.0, 1.0):
        method = ContinualTrainer(_cfg(**base, universal_weight=weight), benchmark=synthetic_benchmark,
                                  progress=False).method
        method.begin_task(1)
        loss, logs = method.training_loss(1, x, y, 1.0)
        assert ("ce_universal" in logs) == (weight > 0) and ("reg_universal" in logs) == (weight > 0)
        if weight:
            uni = method.universal_weights(2)
            grads = torch.autograd.grad(logs and loss, list(method.hnet.parameters()), allow_unused=True)
            assert any(g is not None and g.abs().sum() > 0 for g in grads) and uni is not None
