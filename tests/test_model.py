import pytest
import torch

from cifar_app.core.model import (
    ARCHITECTURES,
    CONV_BLOCKS,
    LAYOUT,
    NORMS,
    PARAM_BUDGET,
    build_model,
    count_parameters,
    make_norm,
    patch_whitening,
    summarize,
)

OVER_BUDGET = {"layer-chw-affine"}  # the seed's LayerNorm with its element-wise affine


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("norm", NORMS)
def test_every_variant_outputs_logits_and_all_but_the_seeds_affine_ln_fit_the_budget(norm, arch):
    model = build_model(norm, arch=arch)
    assert (count_parameters(model) < PARAM_BUDGET) is (norm not in OVER_BUDGET)
    model.eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_the_parameter_table_is_what_torch_counts_for_every_architecture_norm_and_groups():
    """``architectures.PARAMS`` lets settings be validated without torch; it must be what the
    network has. On a difference, the message is the table to paste."""
    from cifar_app.core.architectures import PARAMS

    counted = {}
    for arch in ARCHITECTURES:
        for norm in NORMS:
            widths = [w for k, w in ARCHITECTURES[arch].widths.items() if k.startswith("C")]
            counts = {count_parameters(build_model(norm, g, 0.0, arch))
                      for g in (1, 2, 4, 8) if not any(w % g for w in widths)}
            assert len(counts) == 1, (arch, norm, counts)  # groups change no parameter count
            counted[(arch, norm)] = counts.pop()
    assert PARAMS == counted, "PARAMS = " + repr(counted)


def test_an_over_budget_norm_is_refused_as_a_setting_and_shown_on_the_model_table():
    from cifar_app.core.model import norm_budget_rows
    from cifar_app.core.settings import SettingsError, TrainSettings

    with pytest.raises(SettingsError, match="204,666 parameters, over the 50,000 budget"):
        TrainSettings(norm="layer-chw-affine", arch="plain").validate()  # the seed's net
    with pytest.raises(SettingsError, match="over the 50,000 budget"):
        TrainSettings(norm="layer-chw-affine").validate()  # today's default: wider, further over
    rows = {r["normalization"]: r for r in norm_budget_rows(arch="plain")}
    assert rows["LayerNorm [C,H,W], affine (seed)"]["parameters in the norm layers"] == 2 * sum(
        c * s * s for c, s in ((16, 32), (32, 32), (24, 16), (32, 16), (32, 16), (32, 8), (32, 8), (32, 8)))
    assert not rows["LayerNorm [C,H,W], affine (seed)"]["fits the budget"]
    assert rows["LayerNorm [C,H,W], no affine (seed)"]["parameters in the norm layers"] == 0
    assert rows["LayerNorm"]["parameters in the norm layers"] == 2 * (16 + 32 + 24 + 32 + 32 + 32 + 32 + 32)


def test_adding_a_norm_is_one_registry_entry_every_choice_follows():
    from cifar_app.core import norms
    from cifar_app.core.settings import TrainSettings
    from cifar_app.web import charts, tables

    assert NORMS == tuple(norms.REGISTRY) and set(charts.NORM_COLORS) == set(NORMS)
    assert tables.NORM_ORDER == NORMS and TrainSettings.spec("norm").choices == NORMS
    assert len(set(charts.NORM_COLORS.values())) == len(NORMS)  # a colour each


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
        build_model("instance-norm")


def test_the_new_norms_are_what_they_say():
    from torch import nn

    from cifar_app.core.layers import WSConv2d

    inst = build_model("instance")
    assert all(isinstance(inst.layers[b][2], nn.InstanceNorm2d) for b in ("C1", "C5", "C8"))
    # IN before global average pooling would leave every image's pooled features equal to its β:
    # the block that feeds GAP uses LayerNorm
    assert isinstance(inst.layers["C9"][2], nn.GroupNorm) and inst.layers["C9"][2].num_groups == 1
    pure = nn.Sequential(nn.InstanceNorm2d(4, affine=True), nn.AdaptiveAvgPool2d(1))
    with torch.no_grad():
        pure[0].bias.copy_(torch.arange(4.0))
    pooled = pure(torch.randn(3, 4, 8, 8)).flatten(1)
    assert torch.allclose(pooled, torch.arange(4.0).expand(3, 4), atol=1e-5)  # the same for any image
    ws = build_model("ws-group", groups=8, arch="plain").layers["C3"]
    assert isinstance(ws.conv, WSConv2d) and ws.norm_layer.num_groups == 8
    ws = build_model("ws-group", groups=8).layers["C3"]  # separable: both of its convolutions
    assert all(isinstance(c, WSConv2d) for c in ws.conv) and ws.norm_layer.num_groups == 8
    ln = build_model("layer-chw", arch="plain").layers["C7"].norm_layer  # the seed's net
    x = torch.randn(4, 32, 8, 8) * 3 + 1
    assert torch.allclose(ln(x), nn.LayerNorm([32, 8, 8], elementwise_affine=False)(x), atol=1e-5)
    assert not list(ln.parameters())
    seed_ln = build_model("layer-chw-affine", arch="plain").layers["C7"].norm_layer
    assert isinstance(seed_ln, nn.LayerNorm) and tuple(seed_ln.normalized_shape) == (32, 8, 8)
    # Weight Standardization: the conv behaves as one with standardized weights
    conv = WSConv2d(4, 6, 3, padding=1)
    w = conv.weight
    std_w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True, unbiased=False) + 1e-5)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(conv(x), torch.nn.functional.conv2d(x, std_w, conv.bias, padding=1), atol=1e-5)


def test_batch_renorm_is_batchnorm_at_first_then_corrects_towards_the_running_statistics():
    from cifar_app.core.layers import BatchRenorm2d

    torch.manual_seed(0)
    brn, bn = BatchRenorm2d(3, hold=2, relax=4), torch.nn.BatchNorm2d(3, momentum=0.01)
    x = torch.randn(8, 3, 5, 5) * 3 + 2
    assert brn.limits() == (1.0, 0.0)
    assert torch.allclose(brn(x), bn(x), atol=1e-5)  # r_max = 1, d_max = 0: BatchNorm
    assert torch.allclose(brn.running_mean, bn.running_mean)
    assert torch.allclose(brn.running_var, bn.running_var)
    for _ in range(5):
        brn(x)
    assert brn.limits() == (3.0, 5.0)
    y = brn(x * 0.5)  # a batch unlike the running statistics: corrected, so not unit variance
    assert not torch.allclose(y.std(), torch.tensor(1.0), atol=0.05)
    # the paper's formula, with r and d held constant in the backward pass
    brn2 = BatchRenorm2d(3, hold=0, relax=1)
    brn2.running_mean.fill_(0.5)
    brn2.running_var.fill_(4.0)
    brn2.steps.fill_(5)
    xg = (torch.randn(8, 3, 5, 5) * 2).requires_grad_()
    mean, var = xg.mean((0, 2, 3)), xg.var((0, 2, 3), unbiased=False)
    std, rstd = (var + brn2.eps).sqrt(), (4.0 + brn2.eps) ** 0.5
    r = (std.detach() / rstd).clamp(1 / 3, 3)
    d = ((mean.detach() - 0.5) / rstd).clamp(-5, 5)
    want = (xg - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1) * r.view(1, 3, 1, 1) + d.view(1, 3, 1, 1)
    got = brn2(xg)
    assert torch.allclose(got, want, atol=1e-4)
    g1 = torch.autograd.grad((got * torch.arange(3.0).view(1, 3, 1, 1)).sum(), xg)[0]
    xg2 = xg.detach().clone().requires_grad_()
    mean2, var2 = xg2.mean((0, 2, 3)), xg2.var((0, 2, 3), unbiased=False)
    want2 = (xg2 - mean2.view(1, 3, 1, 1)) / (var2 + brn2.eps).sqrt().view(1, 3, 1, 1) * r.view(1, 3, 1, 1)
    g2 = torch.autograd.grad((want2 * torch.arange(3.0).view(1, 3, 1, 1)).sum(), xg2)[0]
    assert torch.allclose(g1, g2, atol=1e-4)
    brn.eval()
    assert torch.allclose(brn(x), torch.nn.functional.batch_norm(
        x, brn.running_mean, brn.running_var, brn.weight, brn.bias, False, 0.0, brn.eps), atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("norm", NORMS)
def test_norm_layers_are_each_c_blocks_normalization_and_nothing_else(norm, arch):
    model = build_model(norm, arch=arch)
    layers = model.norm_layers()
    assert list(layers) == list(CONV_BLOCKS)
    shapes = {row.name: row.output_shape for row in summarize(model)}
    for name, layer in layers.items():
        c, h, w = shapes[name]
        expected = make_norm(norm, c, 4, (h, w), last=name == CONV_BLOCKS[-1])
        assert type(layer) is type(expected)
        assert [p.shape for p in layer.parameters()] == [p.shape for p in expected.parameters()]


def test_patch_whitening_filters_decorrelate_the_patches_of_their_images():
    """On the images they were computed from, the outputs of the + filters have unit variance and
    no correlation (the - filters are their negatives); the directions are the largest-variance ones."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 3, 12, 12, generator=g)
    x = base + 0.8 * base.roll(1, dims=3) + 0.5 * base[:, :1]  # correlated pixels and channels
    w = patch_whitening(x, 16)
    assert w.shape == (16, 3, 3, 3) and torch.equal(w[8:], -w[:8])
    out = torch.nn.functional.conv2d(x.double(), w[:8].double()).permute(1, 0, 2, 3).flatten(1)
    cov = torch.cov(out)
    assert torch.allclose(cov, torch.eye(8, dtype=torch.float64), atol=2e-3)
    patches = torch.nn.functional.unfold(x.double(), 3).transpose(1, 2).reshape(-1, 27)
    variances = torch.linalg.eigvalsh(torch.cov(patches.T))
    # each + filter is a unit direction scaled by 1/sqrt(its variance): the top eight variances
    norms = w[:8].flatten(1).double().norm(dim=1)
    assert torch.allclose(1 / norms ** 2, variances.flip(0)[:8] + 5e-4, rtol=1e-4)


def test_whiten_stem_sets_c1_and_refuses_what_it_cannot_whiten():
    model = build_model("batch")
    x = torch.randn(32, 3, 8, 8)
    model.whiten_stem(x, frozen=True)
    conv = model.blocks()["C1"].conv
    assert torch.equal(conv.weight, patch_whitening(x, conv.out_channels)) and not conv.weight.requires_grad
    assert conv.out_channels == ARCHITECTURES[model.arch].widths["C1"]
    with pytest.raises(ValueError, match="odd"):
        patch_whitening(x, 15)
    with pytest.raises(ValueError, match="27-dimensional"):
        patch_whitening(x, 64)


def test_whiten_is_refused_with_a_weight_standardized_norm():
    from cifar_app.core.settings import SettingsError, TrainSettings

    with pytest.raises(SettingsError, match="whiten"):
        TrainSettings(norm="ws-group", whiten="frozen").validate()
    TrainSettings(norm="group", whiten="frozen").validate()


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_dirac_init_makes_each_c_blocks_convolution_pass_its_input_through(arch):
    model = build_model("batch", arch=arch)
    model.dirac_init()
    for name, block in model.blocks().items():
        cin = next(m for m in block.conv.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
        x = torch.randn(2, cin, 8, 8)
        with torch.no_grad():
            y = block.conv(x)
        k = min(cin, y.shape[1])
        assert torch.allclose(y[:, :k], x[:, :k], atol=1e-6), name
        if y.shape[1] > cin:  # the rest keep their random start
            assert not torch.allclose(y[:, cin:], torch.zeros_like(y[:, cin:]))
