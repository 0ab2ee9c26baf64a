"""Shared pieces of the speed items: the timer, the printed rows and a shape-only benchmark."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

import torch

from hinterval.data.base import Benchmark, Split, Task


class Timer:
    """Times callables on a device, best-of-N with the candidates interleaved (ours, ref, ours, ...).

    ``clock="cpu"`` measures the process's CPU time (``time.process_time``): on a shared,
    oversubscribed CPU the wall clock of a single-threaded run also counts the time the process
    waited for a core, which says nothing about the code; CPU time does not (memory stalls still
    count). ``clock="wall"`` is the wall clock (the only meaningful clock with several threads or
    on CUDA, where it synchronises around each run).
    """

    def __init__(self, device: torch.device, clock: str = "wall"):
        self.device, self.clock = device, clock
        self.now_fn: Callable[[], float] = time.process_time if clock == "cpu" else time.perf_counter

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.now_fn()

    def once(self, fn: Callable[[], Any]) -> float:
        t0 = self.now()
        fn()
        return self.now() - t0

    def compare(self, fns: Dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> Dict[str, Dict[str, float]]:
        """Run every callable ``warmup`` times, then ``repeats`` rounds interleaved; best and median seconds."""
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times: Dict[str, List[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                times[k].append(self.once(fn))
        return {k: {"best": min(v), "median": statistics.median(v), "runs": len(v)} for k, v in times.items()}


def fmt_time(s: float) -> str:
    return f"{s * 1e3:9.1f} ms" if s < 10 else f"{s:9.2f} s "


def row(label: str, ours: str, ref: str, ratio: float, note: str = "") -> None:
    print(f"  {label:<44} ours {ours:>14}   ref {ref:>14}   ratio {ratio:7.2f}x  {note}", flush=True)


def header(title: str) -> None:
    print(f"\n== {title}", flush=True)


def shape_benchmark(num_tasks: int, input_shape: Tuple[int, ...], classes: int, device: torch.device,
                    n: int = 8) -> Benchmark:
    """A benchmark with the right task count and shapes and ``n`` random samples per split: for
    building methods and timing steps (what it learns is irrelevant)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *input_shape, generator=g).to(device)
    y = (torch.arange(n) % classes).to(device)
    split = Split(x, y)
    tasks = [Task(task_id=t, classes=list(range(t * classes, (t + 1) * classes)), train=split, val=split, test=split,
                  flatten=len(input_shape) == 1) for t in range(num_tasks)]
    return Benchmark("speed", tasks, input_shape=input_shape, classes_per_task=classes, num_classes=classes * num_tasks)
