"""The step interface: the loop issues (almost) nothing outside the step function, at any batch,
eager and fast; the class switch."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from lpd_core.errors import SettingError
from lpd_core import build_schedule, generate
from lpd_core.fast import release_fast_state
from lpd_core.generate import LOOP_RANGE
from lpd_core.step import STEP_RANGE

GROUPS = [1, 2, 4, 6, 9, 12, 14, 16]
MAX_OPS_OUTSIDE_STEP = 5  # per step (the budget)


@pytest.fixture(scope="module")
def schedule():
    return build_schedule(8, group_sizes=GROUPS, order="random", seed=5)


def operations_outside_the_step(run) -> int:
    """Operator calls (top level: not inside another operator) that the decode loop makes outside
    the step function: on CUDA, what runs outside the replayed graph."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    count = 0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        names, parent = [], event.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        if LOOP_RANGE in names and STEP_RANGE not in names and not any(n.startswith("aten::") for n in names):
            count += 1
    return count


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_at_most_five_operations_per_step_outside_the_step_at_batch_1_and_64(reference_model, schedule, fast):
    counts = []
    for batch in (1, 64):
        labels = torch.arange(batch) % 10
        settings = dict(cfg=3.0, top_k=20, top_p=0.9, temperature=0.9, seeds=3, fast=fast,
                        callback=lambda step: step.step)  # a progress bar: reads the step number only
        counts.append(operations_outside_the_step(lambda: generate(reference_model, schedule, labels, **settings)))
    release_fast_state(reference_model)
    assert counts[0] == counts[1]
    assert counts[0] <= MAX_OPS_OUTSIDE_STEP * len(GROUPS)
    assert counts[0] == (len(GROUPS) if fast else 0)  # fast: one copy of the step's rows into the graph input


def test_the_counter_sees_operations_outside_the_step(reference_model, schedule):
    """The count is real: a callback that reads the tokens adds its scatters to it."""
    count = operations_outside_the_step(
        lambda: generate(reference_model, schedule, [1], callback=lambda step: step.tokens))
    assert count >= len(GROUPS)


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_switch_at_step_0_is_plain_generation_with_the_new_labels(reference_model, schedule, fast):
    settings = dict(cfg=3.0, seeds=[4, 8], fast=fast)
    switched = generate(reference_model, schedule, [1, 2], switch_labels=[7, 3], switch_step=0, **settings)
    plain = generate(reference_model, schedule, [7, 3], **settings)
    release_fast_state(reference_model)
    assert torch.equal(switched, plain)


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_switch_mid_way_differs_from_both_classes(reference_model, schedule, fast):
    settings = dict(cfg=3.0, seeds=[4, 8], temperature=0, fast=fast)
    switched = generate(reference_model, schedule, [1, 2], switch_labels=[7, 3], switch_step=4, **settings)
    old = generate(reference_model, schedule, [1, 2], **settings)
    new = generate(reference_model, schedule, [7, 3], **settings)
    release_fast_state(reference_model)
    decoded_before = torch.from_numpy(schedule.order[:sum(GROUPS[:4])])
    assert torch.equal(switched[:, decoded_before], old[:, decoded_before])  # steps before the switch
    assert (switched != old).sum() > 10 and (switched != new).sum() > 10


def test_switched_logits_agree_eager_and_fast(reference_model, schedule):
    """The extra class row of the switch step pads and replays like any other row."""
    seen, fast = [], []
    generate(reference_model, schedule, [1], switch_labels=[7], switch_step=3, temperature=0,
             callback=lambda s: seen.append(s.logits))
    generate(reference_model, schedule, [1], switch_labels=[7], switch_step=3, temperature=0, fast=True,
             callback=lambda s: fast.append(s.logits))
    release_fast_state(reference_model)
    assert len(seen) == len(fast) == len(GROUPS)
    assert all((a - b).abs().max() < 1e-5 for a, b in zip(seen, fast))


@pytest.mark.parametrize("kwargs, message", [
    (dict(switch_labels=[2]), r"needs both switch_labels and switch_step"),
    (dict(switch_step=1), r"needs both switch_labels and switch_step"),
    (dict(switch_labels=[2], switch_step=8), r"switch_step must be between 0 and 7"),
    (dict(switch_labels=[12], switch_step=1), r"class index 12 is out of range"),
    (dict(switch_labels=[1, 2], switch_step=1), r"got 2 switch labels for a batch of 1"),
])
def test_bad_switch_raises_clear_errors(reference_model, schedule, kwargs, message):
    with pytest.raises(SettingError, match=message):
        generate(reference_model, schedule, [1], **kwargs)
