"""The per-task warm-up: the fixed schedule and the guard that keeps the centre network learned."""
from __future__ import annotations

import pytest

from hinterval.schedule import LEARNED, TOLERANCE, RampController, kappa_and_scale


def test_kappa_and_scale_follow_the_ramp_position() -> None:
    assert kappa_and_scale(0.0, 0.5) == (1.0, 0.0)
    assert kappa_and_scale(0.5, 0.5) == (0.75, 0.5)
    assert kappa_and_scale(1.0, 0.5) == (0.5, 1.0)
    assert kappa_and_scale(7.0, 0.2) == (pytest.approx(0.2), 1.0)  # clamped


def test_fixed_ramp_is_linear_in_iterations() -> None:
    r = RampController("fixed", n_iters=100, ramp_fraction=0.5, num_classes=2)
    seen = []
    for _ in range(60):
        seen.append(r.position)
        r.update({"acc_centre": 0.0})  # the fixed ramp ignores the accuracy
    assert seen[0] == 0.0 and seen[25] == pytest.approx(0.5) and seen[50] == 1.0 and r.complete


def test_zero_ramp_fraction_starts_at_the_full_box() -> None:
    for mode in ("fixed", "guarded"):
        r = RampController(mode, n_iters=10, ramp_fraction=0.0, num_classes=10)
        assert r.complete
        r.update({"acc_centre": 0.0})
        assert r.complete


def test_guarded_ramp_waits_until_the_centre_has_learned() -> None:
    r = RampController("guarded", n_iters=100, ramp_fraction=0.5, num_classes=2)
    for _ in range(200):
        r.update({"acc_centre": 0.5})  # chance: never learned
    assert r.position == 0.0
    learned = 0.5 + LEARNED * 0.5
    for _ in range(100):
        r.update({"acc_centre": min(1.0, learned + 0.05)})
    assert r.complete


def test_guarded_ramp_moves_back_when_the_centre_falls() -> None:
    r = RampController("guarded", n_iters=100, ramp_fraction=0.5, num_classes=10)
    for _ in range(30):
        r.update({"acc_centre": 0.95})
    high = r.position
    assert 0.4 < high < 1.0
    for _ in range(20):
        r.update({"acc_centre": 0.95 - 5 * TOLERANCE})  # the worst-case term pulls the centre down
    assert r.position < high
    low = r.position
    for _ in range(40):
        r.update({"acc_centre": 0.95})
    assert r.position > low  # recovered: the box grows again


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        RampController("sometimes", n_iters=10, ramp_fraction=0.5, num_classes=2)


def test_guarded_ramp_does_not_grow_a_vacuous_box() -> None:
    r = RampController("guarded", n_iters=100, ramp_fraction=0.5, num_classes=2)
    for _ in range(10):
        r.update({"acc_centre": 1.0, "ce_middle": 0.01, "ce_worst": 0.1})
    held = r.position
    assert held > 0
    for _ in range(30):  # the box certifies nothing: worst-case loss far above a constant network's
        r.update({"acc_centre": 1.0, "ce_middle": 0.01, "ce_worst": 50.0})
    assert r.position < held


def test_guarded_ramp_holds_while_the_centre_dips_a_little() -> None:
    r = RampController("guarded", n_iters=100, ramp_fraction=0.5, num_classes=10)
    for _ in range(20):
        r.update({"acc_centre": 0.95})
    before = r.position
    for _ in range(40):
        r.update({"acc_centre": 0.95 - 2 * TOLERANCE})
    assert before <= r.position <= before + 0.2  # grows only until the dip shows, never given back


def test_capped_worst_case_loss_trains_the_centre_when_the_box_is_vacuous() -> None:
    import torch

    from hinterval.schedule import worst_case_loss

    y = torch.tensor([0, 0])
    middle = torch.tensor([[2.0, 0.0], [2.0, 0.0]], requires_grad=True)
    vacuous = torch.tensor([[-500.0, 500.0], [-400.0, 400.0]], requires_grad=True)
    plain, raw = worst_case_loss(vacuous, middle, y, capped=False)
    capped, raw2 = worst_case_loss(vacuous, middle, y, capped=True)
    assert float(raw.detach()) == float(raw2.detach()) == float(plain.detach()) > 400
    assert float(capped.detach()) < 10
    capped.backward()
    assert vacuous.grad is None or float(vacuous.grad.abs().sum()) == 0  # no pull on the vacuous box
    assert float(middle.grad.abs().sum()) > 0  # the centre trains instead
    informative = torch.tensor([[1.0, 0.5], [1.5, 0.0]], requires_grad=True)
    loss, _ = worst_case_loss(informative, middle.detach(), y, capped=True)
    loss.backward()
    assert float(informative.grad.abs().sum()) > 0  # an informative box trains as usual
