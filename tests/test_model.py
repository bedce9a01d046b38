import pytest
import torch

from cifar_app.model import (
    ARCHITECTURES,
    LAYOUT,
    NORMS,
    PARAM_BUDGET,
    build_model,
    count_parameters,
    summarize,
)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("norm", NORMS)
def test_every_variant_is_under_the_budget_and_outputs_logits(norm, arch):
    model = build_model(norm, arch=arch)
    assert count_parameters(model) < PARAM_BUDGET
    model.eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_summary_follows_the_seed_layout_with_shapes_params_and_receptive_field():
    model = build_model("batch")
    rows = summarize(model)
    assert [r.name for r in rows] == list(LAYOUT)
    by_name = {r.name: r for r in rows}
    assert by_name["P1"].output_shape[1:] == (16, 16)
    assert by_name["P2"].output_shape[1:] == (8, 8)
    assert by_name["GAP"].output_shape[1:] == (1, 1)
    assert by_name["c10"].output_shape == (10, 1, 1)
    # 3x3 convs add 2*jump, pools add jump then double it: 3,5,5,6,10,14,18,18,20,28,36,44
    assert [by_name[n].receptive_field for n in ("C1", "C2", "P1", "C5", "P2", "C9")] == [3, 5, 6, 18, 20, 44]
    assert sum(r.params for r in rows) == count_parameters(model)


def test_layer_norm_is_per_sample_over_c_h_w_with_per_channel_affine():
    model = build_model("layer")
    norm = model.layers["C1"][2]
    assert isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == 1
    assert norm.weight.shape == (norm.num_channels,)


def test_group_norm_rejects_groups_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="groups"):
        build_model("group", groups=7)


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        build_model("instance")
