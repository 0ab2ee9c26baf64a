"""Every path a GPU trial runs, on fake CUDA tensors: no GPU needed, no number computed.

``FakeTensorMode`` gives tensors on ``cuda`` that carry shapes and devices only, and raises
``FakeTensorDeviceMismatchError`` as soon as a CPU tensor (a mask, an ``arange``, an index, a
metric buffer left on the CPU) meets a CUDA one: the bug class that would crash every trial of a
sweep on GPU nodes. :func:`test_a_planted_cpu_tensor_fails_the_step` shows the harness catches it.

Two things cannot run on fake CUDA tensors on a machine without a GPU, and the tests stop there:

* the backward pass: the autograd engine asks the CUDA driver for the device's context
  (``hasPrimaryContext``, pytorch/pytorch#92627). The same steps then run complete -- forward,
  loss, backward, optimizer step, validation, evaluation -- on fake tensors of the ``meta``
  device, which also raises on any CPU tensor it meets (:func:`test_full_runs_on_a_fake_device`);
* reading numbers (``.tolist()``, ``float(t)``): fake tensors hold none. The library reads device
  numbers in one place, :func:`hinterval.transfer.to_host`; here it is replaced by a stand-in that
  checks every tensor it is given is on the device and answers with placeholder numbers.
  ``TaskCalibration.from_samples`` selects samples with boolean masks (data-dependent shapes),
  so the calibrated CIL scores are checked from a calibration built of device tensors.

Sizes: the preset CNNs at their real shapes (nothing is allocated or computed), a small MLP, a
few samples per task.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorDeviceMismatchError, FakeTensorMode, unset_fake_temporarily

from hinterval import trainer as trainer_module
from hinterval import transfer
from hinterval.config import make_config
from hinterval.data.base import Benchmark, Split, Task
from hinterval.evaluation import TaskCalibration, evaluate_tasks, raw_task_scores
from hinterval.hypernet import HyperNetwork
from hinterval.methods.registry import METHOD_NAMES
from hinterval.targets.factory import build_target
from hinterval.trainer import ContinualTrainer, make_optimizer

CUDA = torch.device("cuda", 0)

#: (target, image side, classes per task, benchmark preset whose hypernetwork and batch it uses)
TARGETS = [("mlp", None, 2, "split-mnist"), ("resnet18", 32, 10, "split-cifar100"),
           ("resnet18", 64, 5, "tinyimagenet"), ("alexnet", 32, 2, "split-cifar10")]
MODES = {"mlp": ("sound", "rump"), "resnet18": ("sound", "rump", "relaxed"), "alexnet": ("sound", "rump", "relaxed")}


def on_device(t: torch.Tensor, device: torch.device = CUDA) -> bool:
    return isinstance(t, FakeTensor) and t.device == device


def fake_to_host(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Stands in for :func:`hinterval.transfer.to_host`: every tensor must be on the run's device;
    answers False for booleans, -1 for integers (no divergence) and 0.5 for the others."""
    out = {}
    for key, v in values.items():
        if isinstance(v, torch.Tensor):
            assert isinstance(v, FakeTensor) and v.device.type in ("cuda", "meta"), f"{key} is on {v.device}, not the device"
            number = 0.5 if v.is_floating_point() else 0.0 if v.dtype == torch.bool else -1.0
            with unset_fake_temporarily():
                out[key] = number if v.dim() == 0 else torch.full(tuple(v.shape), number).tolist()
        else:
            out[key] = v
    return out


def built_on_the_cpu(build):
    """``build`` run with real tensors: modules are made on the CPU as always and moved to the
    device by the library's own ``.to(device)`` (``Module.to`` cannot swap the parameters of a
    module made of fake tensors)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with unset_fake_temporarily():
            return build(*args, **kwargs)

    return run


@contextlib.contextmanager
def fake_device(monkeypatch: pytest.MonkeyPatch, device: torch.device = CUDA) -> Iterator[FakeTensorMode]:
    """The trainer's ``cuda`` is ``device``, numbers are read through :func:`fake_to_host`, tensors
    are fake. (``torch.cuda.is_available`` itself is left alone: told True, torch's own fake-tensor
    code would call the missing driver.)"""
    resolve = trainer_module.resolve_device
    monkeypatch.setattr(trainer_module, "resolve_device", lambda name: device if name == "cuda" else resolve(name))
    monkeypatch.setattr(trainer_module, "build_method", built_on_the_cpu(trainer_module.build_method))
    monkeypatch.setattr(transfer, "to_host", fake_to_host)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTensorMode]:
    with fake_device(monkeypatch) as mode:
        yield mode


def image_benchmark(num_tasks: int, classes: int, side: int | None, *, n: int = 4) -> Benchmark:
    """Real CPU tensors shaped like a preset's data: uint8 images (CNN: scaled, normalised, flipped
    and cropped as the CIFAR/TinyImageNet loaders set them up), float vectors for the MLP."""
    g = torch.Generator().manual_seed(0)
    tasks = []
    for t in range(num_tasks):
        def split(m: int) -> Split:
            y = torch.arange(m) % classes
            if side is None:
                return Split(torch.randn(m, 16, generator=g), y)
            return Split(torch.randint(0, 256, (m, 3, side, side), dtype=torch.uint8, generator=g), y)

        extra: Dict[str, Any] = {}
        if side is not None:
            extra = dict(scale=255.0, flatten=False, augment=True, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
        tasks.append(Task(task_id=t, classes=list(range(t * classes, (t + 1) * classes)), train=split(n),
                          val=split(n), test=split(n), **extra))
    shape = (16,) if side is None else (3, side, side)
    return Benchmark("fake", tasks, input_shape=shape, classes_per_task=classes, num_classes=classes * num_tasks)


def config(target: str, preset: str, device: str = "cuda", **over: Any):
    """The preset's config for ``target`` on a 2-task benchmark, 2 iterations per task."""
    base = dict(benchmark=preset, target=target, device=device, num_tasks=2, iters_per_task=2, val_every=2,
                batch_size=4, eval_batch_size=4, cil_score="entropy")
    if target == "mlp":
        base.update(target_hidden=(8, 8))
    return make_config({**base, **over})


def tensors_of(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from tensors_of(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors_of(v)


# --- the harness ------------------------------------------------------------------------------
def test_fake_cuda_raises_on_a_cpu_tensor(fake_cuda) -> None:
    a = torch.empty(4, 4, device="cuda")
    assert on_device(a @ a)
    with pytest.raises(FakeTensorDeviceMismatchError):
        a @ torch.empty(4, 4)


def test_a_planted_cpu_tensor_fails_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU tensor planted in the training step (the embeddings' box handed to the hypernetwork
    on the CPU) fails it: the fake-CUDA tests do catch a tensor left behind."""
    from hinterval.embeddings import TaskEmbeddings

    box = TaskEmbeddings.box
    bench = image_benchmark(2, 2, None)
    with fake_device(monkeypatch):
        trainer = ContinualTrainer(config("mlp", "split-mnist"), benchmark=bench, progress=False)
        x, y = trainer.benchmark.tasks[0].train.x, trainer.benchmark.tasks[0].train.y
        trainer.method.training_loss(0, x, y, 1.0)  # unplanted: runs
        monkeypatch.setattr(TaskEmbeddings, "box", lambda self, *a, **k: tuple(t.cpu() for t in box(self, *a, **k)))
        with pytest.raises(FakeTensorDeviceMismatchError):
            trainer.method.training_loss(0, x, y, 1.0)


# --- data ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [None, 32, 64])
def test_data_moves_to_the_device_once_and_batches_stay_there(fake_cuda, side) -> None:
    from hinterval.data.augment import random_flip_crop
    from hinterval.trainer import BatchSampler

    bench = image_benchmark(2, 2, side).to(CUDA)
    for task in bench.tasks:
        for split in (task.train, task.val, task.test):
            assert on_device(split.x) and on_device(split.y)
        idx = BatchSampler(len(task.train), 3, CUDA).next()
        x = task.inputs(task.train.x[idx])
        assert on_device(idx) and on_device(x)
        if task.augment:
            assert on_device(random_flip_crop(x))


def test_grey_digits_padded_resized_and_repeated_to_rgb_on_the_device(fake_cuda) -> None:
    """split-digits as CNN input (``--image-size 64 --image-channels 3``): pad, resize, repeat."""
    bench = image_benchmark(1, 2, 8)
    task = bench.tasks[0]
    task.train.x = task.train.x[:, :1]  # grey 8x8
    task.pad_to, task.resize_to, task.channels = 32, 64, 3
    task = bench.to(CUDA).tasks[0]
    x = task.inputs(task.train.x)
    assert on_device(x) and x.shape == (4, 3, 64, 64)


def test_permuted_inputs_stay_on_the_device(fake_cuda) -> None:
    bench = image_benchmark(1, 2, None)
    task = bench.tasks[0]
    task.perm = torch.randperm(16)
    task = bench.to(CUDA).tasks[0]
    assert on_device(task.perm) and on_device(task.inputs(task.train.x))


# --- hypernetwork ----------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [0, 7000])
def test_hypernetwork_plain_and_chunked(fake_cuda, chunk) -> None:
    hnet = built_on_the_cpu(HyperNetwork)(embedding_dim=48, num_outputs=20_000, hidden=(100,), chunk_size=chunk,
                                          chunk_embedding_dim=16).to(CUDA)
    centre, radius = torch.randn(3, 48, device=CUDA), torch.rand(3, 48, device=CUDA)
    for out in (hnet(centre, radius), hnet(centre, None)):
        for t in (out.middle, out.centre, out.radius):
            assert t is None or (on_device(t) and t.shape == (3, 20_000))


# --- targets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target,side,classes,preset", TARGETS)
def test_every_target_in_every_interval_mode_and_scope(fake_cuda, target, side, classes, preset) -> None:
    bench = image_benchmark(1, classes, side).to(CUDA)
    x = bench.tasks[0].inputs(bench.tasks[0].train.x)
    scopes = ("all",) if target == "mlp" else ("all", "head", "last:3")
    for mode in MODES[target]:
        for scope in scopes:
            if mode == "relaxed" and scope != "all":
                continue  # the relaxed mode boxes every layer (the paper's)
            if side == 64 and scope == "head":
                continue  # the same network as at 32x32 (checked there); 64x64 runs the preset's scope and all
            net = build_target(config(target, preset, interval_mode=mode, interval_scope=scope), bench)
            w = net.init_weights().to(CUDA)
            r = torch.full_like(w, 1e-3)
            if scope == "all":
                assert on_device(net.forward(x, w)) and net.forward(x, w).shape == (x.shape[0], classes)
            mid, c, rad = net.forward_with_interval(x, w, w, r)  # the interval forward and the middle network
            assert all(on_device(t) for t in (mid, c, rad)), (mode, scope)


# --- methods: one training step up to the backward pass, and prediction --------------------------
METHOD_CASES = [(m, "non-forced") for m in METHOD_NAMES] + [("hyperinterval", "nested")]
#: every method on the MLP; on ResNet-18 the hypernetwork methods and joint (which draws earlier
#: tasks' augmented images itself); the others share their code with the MLP case
METHOD_TARGETS = [(m, mode, *TARGETS[0]) for m, mode in METHOD_CASES] + [
    (m, mode, *TARGETS[1]) for m, mode in METHOD_CASES if m in ("hyperinterval", "joint")]


@pytest.mark.parametrize("method,mode,target,side,classes,preset", METHOD_TARGETS)
def test_every_method_trains_and_predicts_on_the_device(fake_cuda, method, mode, target, side, classes, preset) -> None:
    """Task 0 ends and task 1 starts (regulariser targets, EWC's Fisher, InterContiNet's box,
    the nested hold); then task 1's loss with the worst case and the regulariser, every log on the
    device, and the predictors of both tasks (TIL, worst case, universal)."""
    bench = image_benchmark(2, classes, side)
    cfg = config(target, preset, method=method, embedding_mode=mode, ramp="guarded")
    trainer = ContinualTrainer(cfg, benchmark=bench, progress=False)
    m, task = trainer.method, trainer.benchmark.tasks[1]
    assert all(on_device(p) for p in m.parameters()) and all(on_device(b) for b in m.buffers())
    m.begin_task(0)
    if method == "ewc" or getattr(m, "trains_universal", False):
        # EWC's Fisher (and nested mode's, for its universal network) takes per-sample gradients: no
        # backward on fake CUDA (the fake meta run has it)
        with pytest.raises(RuntimeError, match="hasPrimaryContext"):
            m.end_task(0, box_scale=1.0)
    else:
        m.end_task(0, box_scale=1.0)
    m.begin_task(1)
    x, y = task.inputs(task.train.x), task.train.y
    loss, logs = m.training_loss(1, x, y, 0.5)
    assert on_device(loss) and loss.dim() == 0
    tensors = [v for v in logs.values() if isinstance(v, torch.Tensor)]
    assert all(on_device(v) for v in tensors), {k: getattr(v, "device", None) for k, v in logs.items()}
    if method in ("hyperinterval", "intercontinet"):
        assert {"ce_worst", "acc_centre"} <= set(logs)  # the guarded warm-up's inputs, still on the device
    make_optimizer(m.trainable_parameters(1), 1e-3)  # fused Adam accepts the device's parameters
    with pytest.raises(RuntimeError, match="hasPrimaryContext"):  # no backward on fake CUDA without a GPU
        loss.backward()
    m.eval()
    pred = m.predictor([0, 1])
    assert on_device(pred.logits(x))
    bounds, uni = pred.bounds(x), pred.universal(x)
    assert bounds is None or all(on_device(b) for b in bounds)
    assert uni is None or on_device(uni)
    box = m.weight_box(1)
    assert box is None or all(on_device(b) for b in box)


def test_every_method_covers_the_targets_it_is_checked_on() -> None:
    assert {m for m, _ in METHOD_CASES} == set(METHOD_NAMES)


def test_guarded_warm_up_checks_stay_on_the_device(fake_cuda) -> None:
    """The capped worst-case loss picks its branch on the device; the warm-up reads the step's
    logs through the one transfer."""
    from hinterval.schedule import RampController, worst_case_loss

    worst, mid = torch.randn(4, 3, device=CUDA), torch.randn(4, 3, device=CUDA)
    y = torch.zeros(4, dtype=torch.long, device=CUDA)
    loss, raw = worst_case_loss(worst, mid, y, capped=True)
    assert on_device(loss) and on_device(raw)
    ramp = RampController("guarded", n_iters=10, ramp_fraction=0.5, num_classes=3)
    assert ramp.reads_logs
    ramp.update(transfer.to_host({"acc_centre": torch.ones((), device=CUDA), "ce_worst": raw, "ce_middle": raw}))


# --- evaluation -----------------------------------------------------------------------------------
def test_evaluation_runs_every_scenario_on_the_device(fake_cuda) -> None:
    bench = image_benchmark(2, 2, None)
    trainer = ContinualTrainer(config("mlp", "split-mnist", embedding_mode="nested"), benchmark=bench, progress=False)
    trainer.method.eval()
    res = evaluate_tasks(trainer.method.predictor([0, 1]), trainer.benchmark, [0, 1], batch_size=3,
                         cil_score="entropy")
    assert set(res) >= {"til", "worst", "dil", "cil", "dil_violations", "cil_details"}
    assert torch.is_inference_mode_enabled() is False


def test_calibrated_cil_scores_on_the_device(fake_cuda) -> None:
    """The calibrated and interval task-inference scores, from a calibration of device tensors
    (``TaskCalibration.from_samples`` itself selects with boolean masks: data-dependent shapes)."""
    from hinterval.evaluation import CIL_CANDIDATES, task_inference_scores

    from hinterval.evaluation import FeatureStatistics

    T, N, C, H = 3, 5, 4, 6
    mid = torch.randn(T, N, C, device=CUDA)
    lower, upper = mid - 1, mid + 1
    feats = torch.randn(T, N, H, device=CUDA)  # first-layer responses, and their per-task statistics:
    stats = FeatureStatistics(torch.randn(T, C, H, device=CUDA, dtype=torch.float64),
                              torch.ones(T, C, dtype=torch.bool, device=CUDA),
                              torch.randn(T, H, H, device=CUDA, dtype=torch.float64))
    raw = raw_task_scores(mid, (lower, upper), list(CIL_CANDIDATES), feats, stats)
    calib = TaskCalibration({k: v.sort(dim=1).values for k, v in raw.items()}, torch.full((T,), N, device=CUDA),
                            {k: v.mean(1) for k, v in raw.items()}, {k: v.std(1) for k, v in raw.items()}, stats)
    for name in CIL_CANDIDATES:
        s = task_inference_scores(mid, (lower, upper), 0.1, name=name, calibration=calib, feats=feats)
        assert on_device(s) and s.shape == (T, N), name


# --- the whole trainer on a fake device where backward runs ------------------------------------------
META = torch.device("meta")


def host_read(*tensors: torch.Tensor) -> float:
    """Stands in for a report's read of device numbers (a box's relative radius): checks the device."""
    assert all(isinstance(t, FakeTensor) and t.device == META for t in tensors)
    return 0.5


@pytest.fixture
def fake_meta(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTensorMode]:
    """Fake ``meta`` tensors for the trainer's ``cuda``, and Adam's multi-tensor kernel: the fused one
    accepts CUDA (and CPU) parameters only, checked by the fake-CUDA tests up to its step. The
    reports' reads of numbers at a task's end (a box's relative radius, the universal region's
    size: medians and means sent to the host) are stood in for."""
    monkeypatch.setattr(trainer_module, "make_optimizer", lambda params, lr: torch.optim.Adam(params, lr=lr, foreach=True))
    monkeypatch.setattr(trainer_module, "relative_radius", host_read)
    monkeypatch.setattr("hinterval.methods.hyperinterval.HyperIntervalMethod.universal_size", lambda self, n: None)
    with fake_device(monkeypatch, META) as mode:
        yield mode


@pytest.mark.parametrize("method,mode", METHOD_CASES)
def test_full_runs_on_a_fake_device(fake_meta, method, mode) -> None:
    """Two tasks of two steps each: forward, worst-case loss, regulariser, backward, Adam,
    the guarded warm-up, validation, model selection, evaluation in every scenario and the
    checkpoint state, on fake tensors of the ``meta`` device (which, unlike fake CUDA, runs the
    backward pass here); every tensor the host reads comes from the device."""
    seen: Dict[str, list] = {"step": [], "task_end": []}

    class Recorder:
        def on_step(self, task_id: int, step: int, logs: Dict[str, float]) -> None:
            seen["step"].append(logs)

        def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
            seen["task_end"].append(state)

    trainer = ContinualTrainer(config("mlp", "split-mnist", method=method, embedding_mode=mode), callbacks=[Recorder()],
                               benchmark=image_benchmark(2, 2, None), progress=False)
    result = trainer.fit()
    state = trainer.state()
    assert result["tasks_done"] == 2 and len(seen["task_end"]) == 2
    assert seen["step"] and all(isinstance(v, (int, float)) for logs in seen["step"] for v in logs.values())
    assert all(t.device.type == "cpu" for t in tensors_of(state["model"]))  # checkpoints load anywhere


@pytest.mark.parametrize("target,side,classes,preset", TARGETS[2:])
def test_full_cnn_step_on_a_fake_device(fake_meta, target, side, classes, preset) -> None:
    """One task of one step of the preset's CNN, with its scope and the guarded warm-up (ResNet-18
    at 64x64: the same code as at 32x32)."""
    trainer = ContinualTrainer(config(target, preset, num_tasks=1, iters_per_task=1, val_every=1),
                               benchmark=image_benchmark(1, classes, side), progress=False)
    trainer._train_task(0)


# --- checkpoints and trial resources --------------------------------------------------------------------
def test_checkpoint_saved_on_the_cpu_loads_onto_the_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hinterval.checkpoint import load_checkpoint, save_checkpoint

    bench = image_benchmark(2, 2, None)
    cpu = ContinualTrainer(config("mlp", "split-mnist", device="cpu"), benchmark=bench, progress=False)
    save_checkpoint(cpu.state(), tmp_path / "checkpoint.pt")
    state = load_checkpoint(tmp_path / "checkpoint.pt")  # map_location: the CPU, whatever device saved it
    assert all(t.device.type == "cpu" for t in tensors_of(state["model"]))
    with fake_device(monkeypatch):
        gpu = ContinualTrainer(config("mlp", "split-mnist", device="cuda"), benchmark=bench, progress=False)
        gpu.load_state(state)
        assert all(on_device(p) for p in gpu.method.state_dict().values())
        saved = gpu.state()
    assert all(t.device.type == "cpu" for t in tensors_of(saved["model"]))


def test_trial_resources_choose_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial with a GPU share trains on CUDA (and keeps no freed CPU memory); without one on the CPU."""
    from hinterval.runtime import configure_process
    from tune.trainable import trial_device

    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: True)
        device = trial_device(0.25)
        assert device == "cuda" and trial_device(0.0) == "cpu"
        assert configure_process(make_config(dict(device=device, num_threads=1))).keep_freed_memory is False
    with fake_device(monkeypatch):
        trainer = ContinualTrainer(config("mlp", "split-mnist", device=device), benchmark=image_benchmark(2, 2, None),
                                   progress=False)
        assert trainer.device == CUDA and on_device(trainer.benchmark.tasks[0].train.x)
