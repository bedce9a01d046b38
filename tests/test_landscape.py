"""The loss-landscape and internal-covariate-shift probes (Santurkar et al. 2018): where they
measure, what they record, and that training is the same bit for bit with or without them."""

from __future__ import annotations

import math

import pytest
import torch

from cifar_app.core.engine import Hooks, train
from cifar_app.core.landscape import MULTIPLIERS, probe_steps, summary
from cifar_app.core.model import CONV_BLOCKS
from cifar_app.core.settings import TrainSettings
from cifar_app.store.formats import FileInvalid, check_landscape
from cifar_app.store.runstore import RunStore
from cifar_app.web.charts import landscape_plot
from tests.conftest import synthetic_data


def test_probe_steps_spread_over_training_from_step_0_to_the_last():
    assert probe_steps(7800, 8) == [0, 1114, 2228, 3342, 4457, 5571, 6685, 7799]
    assert probe_steps(5, 8) == [0, 1, 2, 3, 4]  # fewer steps than points: each step once
    assert probe_steps(100, 1) == [0] and probe_steps(100, 0) == [] and probe_steps(1, 8) == [0]


@pytest.mark.parametrize("norm,dropout", [("batch", 0.0), ("batch-renorm", 0.0), ("none", 0.2),
                                          ("group", 0.0)])
def test_probes_leave_training_bit_identical(norm, dropout):
    """Weights, BatchNorm running statistics, Batch Renorm's step count, the optimizer's momentum
    (through the weights it moves) and dropout's random draws: all as without probes."""
    data = synthetic_data(256, 64)
    # max LR 0.01: the separable net without a norm diverges at 0.05 and above on these few images
    s = TrainSettings(norm=norm, epochs=2, batch_size=64, dropout=dropout, max_lr=0.01, device="cpu")
    plain = train(s, data)
    records: list[dict] = []
    # 4 probes, at steps 0, 2, 5 and 7 (4 steps an epoch): inside each epoch, at the first step and
    # the last (8 probes cost twice as long; a state a probe failed to restore shows at the end)
    probed = train(s.replace(landscape=4), data, Hooks(on_landscape=records.append))
    for (k, a), b in zip(plain.model.state_dict().items(), probed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h.train_loss for h in plain.history] == [h.train_loss for h in probed.history]
    assert [r["step"] for r in records] == probe_steps(8, 4) and probed.landscape == records


def test_a_record_holds_smoothness_and_ics_per_block():
    data = synthetic_data(256, 64)
    records: list[dict] = []
    train(TrainSettings(norm="batch", epochs=2, batch_size=32, landscape=4, device="cpu"), data,
          Hooks(on_landscape=records.append))
    first, later = records[0], records[-1]
    assert first["step"] == 0 and len(first["losses"]) == len(MULTIPLIERS)
    assert set(later["blocks"]) == set(CONV_BLOCKS)
    for b in later["blocks"].values():
        assert -1 <= b["ics_cos"] <= 1 and b["ics_l2"] >= 0 and b["grad_norm"] > 0
    # The classifier starts at zero, so at step 0 no gradient reaches the blocks (our init, not
    # Bjorck et al.'s): their step-0 gradient norms are exactly zero.
    assert all(b["grad_norm"] == 0 for b in first["blocks"].values())
    assert later["beta"] > 0 and later["loss_range"] >= 0 and math.isfinite(later["predictiveness"])
    s = summary(records)
    assert s["ics_1_minus_cos"] == pytest.approx(
        sorted(sum(1 - b["ics_cos"] for b in r["blocks"].values()) / len(r["blocks"])
               for r in records[1:])[1])  # the median of three steps after step 0
    assert len(landscape_plot({"BN run": records}).data) == 4


def test_the_landscape_log_is_validated_and_restored(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="batch", epochs=1))
    rec = {"step": 3, "blocks": {}, "loss_range": 0.1}
    run.append_landscape(rec)
    run.append_landscape({**rec, "step": 9})
    assert [r["step"] for r in run.landscape()] == [3, 9]
    run.restore_landscape([rec])
    assert [r["step"] for r in run.landscape()] == [3]
    assert check_landscape(b'{"step": 1, "blocks": {}}\n') == 1
    for bad in (b'{"epoch": 1}\n', b'{"step": true, "blocks": {}}\n', b'{"step": 1, "blocks": []}\n'):
        with pytest.raises(FileInvalid):
            check_landscape(bad)


def test_the_inside_page_draws_the_landscape_of_a_probed_run(tmp_path, pages):
    from cifar_app.store.jobs import execute_run

    pages.use(tmp_path / "runs")
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="batch", epochs=1, batch_size=50, landscape=3, device="cpu"))
    execute_run(store, run.id, data=synthetic_data(200, 50))
    assert [r["step"] for r in run.landscape()] == [0, 2, 3]
    at = pages.open("inside")
    assert [c for c in at.get("plotly_chart") if c.key == "inside_landscape"]
    run.path.joinpath("landscape.jsonl").write_text('{"step": "x"}\n{"step": 1, "blocks": {}}\n')
    at = pages.open("inside")  # a damaged log is named, not an exception
    assert any("landscape.jsonl" in e.value.replace("\\", "") for e in at.error)  # as shown


def test_resume_keeps_exactly_the_checkpoints_landscape_records(tmp_path):
    from cifar_app.store.jobs import execute_run

    store = RunStore(tmp_path / "runs", reference_root=None)
    s = TrainSettings(norm="batch", epochs=3, batch_size=50, landscape=4, device="cpu")
    run = store.create(s)
    data = synthetic_data(200, 50)
    seen = []
    train(s, data,
          Hooks(checkpoint=run, on_epoch=seen.append, on_landscape=run.append_landscape),
          should_stop=lambda: len(seen) >= 1)
    run.append_landscape({"step": 99, "blocks": {}, "loss_range": 0.0})  # from after the checkpoint
    run.update_status(state="stopped")
    execute_run(store, run.id, data=data, resume=True)
    assert [r["step"] for r in run.landscape()] == [0, 4, 7, 11]
