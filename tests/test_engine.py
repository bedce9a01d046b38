import math

import pytest
import torch

from cifar_app.core.engine import Hooks, onecycle_lr, predict_probs, train
from cifar_app.core.model import NORMS
from cifar_app.core.settings import SettingsError, TrainSettings
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data

QUICK = dict(epochs=3, batch_size=50, max_lr=0.05, label_smoothing=0.0, device="cpu")


@pytest.mark.parametrize("norm", [n for n in NORMS if n != "layer-chw-affine"])  # the rest fit the budget
def test_short_training_on_synthetic_images_lowers_the_loss(norm, tiny_data):
    epochs = []
    result = train(TrainSettings(norm=norm, **QUICK), tiny_data, Hooks(on_epoch=epochs.append))
    assert len(epochs) == 3 and not result.stopped
    assert epochs[-1].train_loss < epochs[0].train_loss
    assert all(0 <= e.test_acc <= 1 and e.seconds > 0 and e.images_per_s > 0 for e in epochs)
    assert result.test_probs.shape == (100, 10)


def test_training_refuses_a_network_the_parameter_table_does_not_describe(tiny_data, monkeypatch):
    """The budget is checked on ``architectures.PARAMS`` (no torch needed); a table left stale by an
    edited architecture must not let a network over the budget train."""
    from cifar_app.core import architectures, settings

    settings._param_count.cache_clear()
    monkeypatch.setitem(architectures.PARAMS, ("separable-b", "batch"), 40_000)
    try:
        with pytest.raises(RuntimeError, match="PARAMS says 40,000"):
            train(TrainSettings(**QUICK), tiny_data)
    finally:
        settings._param_count.cache_clear()


def test_batch_events_cover_every_step_with_the_onecycle_lr(tiny_data):
    batches = []
    train(TrainSettings(**QUICK), tiny_data, Hooks(on_batch=batches.append))
    assert [b.step for b in batches] == list(range(1, 3 * 8 + 1))  # 400 // 50 = 8 per epoch
    lrs = [b.lr for b in batches]
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1 and math.isclose(max(lrs), 0.05, rel_tol=1e-6)
    assert lrs[-1] < lrs[peak] / 20 and all(math.isfinite(b.loss) for b in batches)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 1000])
def test_onecycle_schedule_is_defined_for_any_number_of_steps(total):
    lrs = [onecycle_lr(i, total, 0.1, 0.25) for i in range(total)]
    assert all(0 < lr <= 0.1 for lr in lrs)
    if total > 1:
        assert lrs[-1] < lrs[0] and lrs[-1] == min(lrs)
    assert lrs[-1] == pytest.approx(0.1 / 20 / 200)  # max_lr / div_factor / final_div_factor
    if total >= 100:
        assert max(lrs) == pytest.approx(0.1, rel=1e-3) and lrs[0] == pytest.approx(0.005)


def test_learns_the_synthetic_task():
    data = synthetic_data(n_train=600, n_test=200)
    result = train(TrainSettings(epochs=4, batch_size=50, max_lr=0.1, device="cpu"), data)
    assert result.history[-1].test_acc > 0.5


def test_stop_between_batches_then_resume_from_the_checkpoint(tmp_path):
    tiny_data = synthetic_data(n_train=200, n_test=50)  # 4 batches per epoch
    settings = TrainSettings(**QUICK)
    ckpt = RunStore(tmp_path / "runs", reference_root=None).create(settings)  # a Run keeps checkpoints
    seen = []

    def stop_in_epoch_2():
        return len(seen) >= 4 + 2

    first = train(settings, tiny_data,
                  Hooks(on_batch=seen.append, checkpoint=ckpt), should_stop=stop_in_epoch_2)
    assert first.stopped and [h.epoch for h in first.history] == [1] and ckpt.has_checkpoint()

    resumed = train(settings, tiny_data, Hooks(checkpoint=ckpt), resume=True)
    assert [h.epoch for h in resumed.history] == [1, 2, 3] and not resumed.stopped

    straight = train(settings, tiny_data)
    # same seed, per-epoch data order and augmentation: resuming reproduces the uninterrupted run
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4)


@pytest.mark.parametrize("field,value", [
    ("norm", "instance-norm"), ("epochs", 0), ("epochs", 51), ("batch_size", 1), ("batch_size", 2048),
    ("max_lr", -1.0), ("max_lr", float("nan")), ("dropout", 1.0), ("groups", 5), ("train_limit", 0),
    ("label_smoothing", 0.9), ("device", "tpu"), ("augment", "yes"), ("epochs", 2.5),
    ("crop_pad", 9), ("crop_pad", -1), ("momentum", True), ("seed", -1), ("test_limit", 0),
])
def test_invalid_settings_name_the_field(field, value):
    settings = TrainSettings(norm="group", **{field: value}) if field != "norm" else TrainSettings(norm=value)
    with pytest.raises(SettingsError) as err:
        settings.validate()
    assert err.value.field == field and str(err.value).startswith(field)


def test_settings_round_trip_and_refuse_unknown_keys():
    s = TrainSettings(norm="layer", epochs=3, train_limit=100)
    assert TrainSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingsError, match="colour"):
        TrainSettings.from_dict({"colour": "red"})


def test_divergence_stops_with_a_clear_error(tiny_data):
    from cifar_app.core.engine import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="lower max learning rate"):
        train(TrainSettings(norm="none", epochs=2, batch_size=50, max_lr=2.0, device="cpu"), tiny_data)


def test_flip_tta_averages_each_image_with_its_mirror():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.full((3,), 120.0), torch.full((3,), 60.0)
    cpu = torch.device("cpu")
    model(torch.zeros(1, 3, 32, 32))  # materialize the lazy layer
    single = predict_probs(model, x, mean, std, cpu)
    mirror = predict_probs(model, x.flip(3), mean, std, cpu)
    tta = predict_probs(model, x, mean, std, cpu, batch_size=4, flip_tta=True)
    assert not torch.allclose(single, mirror)  # the model is not mirror-symmetric
    torch.testing.assert_close(tta, (single + mirror) / 2)


def test_the_train_loss_is_also_recorded_without_label_smoothing(tiny_data):
    """train_ce is the plain cross-entropy on the training batches, comparable to test_loss; with
    label smoothing the optimized loss is higher than it."""
    smoothed = train(TrainSettings(**{**QUICK, "label_smoothing": 0.2, "epochs": 2}), tiny_data)
    e = smoothed.history[-1]
    assert e.train_ce is not None and e.train_ce < e.train_loss
    plain = train(TrainSettings(**{**QUICK, "epochs": 1}), tiny_data).history[-1]
    assert plain.train_ce == pytest.approx(plain.train_loss, rel=1e-5)  # no smoothing: the same


def test_every_setting_is_described_once_and_drives_validation_and_parsing():
    from cifar_app.core.settings import parse_grid, parse_setting

    for name in TrainSettings.names():
        spec = TrainSettings.spec(name)
        assert spec.help and spec.describe_range()
        spec.check(name, TrainSettings.default(name))  # every default is valid
    assert parse_setting("batch_size", "32") == 32 and parse_setting("augment", "false") is False
    assert parse_setting("train_limit", "none") is None and parse_setting("max_lr", "0.4") == 0.4
    assert parse_grid("batch-size=2,4,8") == ("batch_size", [2, 4, 8])
    for bad in ("batch_size=1,4", "max_lr=0.1,abc", "colour=red", "epochs=", "epochs=3,3"):
        with pytest.raises(SettingsError):
            parse_grid(bad)
    with pytest.raises(SettingsError, match="settings"):
        TrainSettings.from_dict([1, 2])



def test_ema_model_is_the_moving_average_of_the_weights_and_is_what_the_run_scores(tiny_data):
    """With ``ema`` the run's model is the average: its weights follow the trained ones by the decay
    (checked against a hand-kept average of the same steps), and the test accuracy and predictions
    the run records are that model's."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    decay, kept = 0.9, {}

    def keep(optimizer, *_):  # after every optimizer step: our own average of the classifier
        w = optimizer.param_groups[1]["params"][-1].detach().clone()  # c10.bias (no-decay group)
        kept["avg"] = w if "avg" not in kept else decay * kept["avg"] + (1 - decay) * w
        kept["last"] = w

    handle = register_optimizer_step_post_hook(keep)
    try:
        result = train(TrainSettings(ema=decay, **QUICK), tiny_data)
    finally:
        handle.remove()
    bias = result.model.layers["c10"].bias.detach()
    assert torch.allclose(bias, kept["avg"], atol=1e-6) and not torch.allclose(bias, kept["last"])
    probs = predict_probs(result.model, tiny_data.test_x, result.mean, result.std, torch.device("cpu"))
    acc = (probs.argmax(1) == tiny_data.test_y).float().mean().item()
    assert acc == pytest.approx(result.history[-1].test_acc)
    assert (result.test_probs == probs.numpy()).all()


@pytest.mark.parametrize("changes", [dict(ema=0.8), dict(mix="cutmix", resize_start=24, epochs=4)],
                         ids=["ema", "cutmix-resized"])
def test_a_stopped_run_resumes_to_the_uninterrupted_one(tmp_path, changes):
    """The EMA's average, and the mixing's and resizing's per-epoch draws, resume exactly."""
    data = synthetic_data(n_train=200, n_test=50)
    settings = TrainSettings(**{**QUICK, **changes})
    ckpt = RunStore(tmp_path / "runs", reference_root=None).create(settings)
    seen = []
    first = train(settings, data,
                  Hooks(on_batch=seen.append, checkpoint=ckpt), should_stop=lambda: len(seen) >= 6)
    assert first.stopped
    resumed = train(settings, data, Hooks(checkpoint=ckpt), resume=True)
    straight = train(settings, data)
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4)


def _c1_inputs(settings, data):
    """The training batches C1 saw, as (epoch-ordered) float tensors."""
    from cifar_app.core import engine

    batches = []
    real_build = engine.build_model

    def build(*a, **k):
        m = real_build(*a, **k)
        m.layers["C1"].register_forward_pre_hook(
            lambda _m, args: batches.append(args[0].detach().float()) if torch.is_grad_enabled() else None)
        return m

    engine.build_model = build
    try:
        train(settings, data)
    finally:
        engine.build_model = real_build
    return batches


@pytest.mark.parametrize("flip", ["alternate", "random"])
def test_the_alternating_flip_mirrors_each_image_every_other_epoch(flip):
    """Each image seen in training is found as itself or its mirror; under ``alternate`` its side
    swaps every epoch (airbench's derandomised flip), under ``random`` it does not always."""
    from cifar_app.core.data import channel_stats
    from cifar_app.core.engine import normalize

    data = synthetic_data(n_train=64, n_test=16)
    mean, std = channel_stats(data.train_x)
    plain = normalize(data.train_x, mean, std).flatten(1)
    mirror = normalize(data.train_x.flip(3), mean, std).flatten(1)
    sides = []  # per epoch: image index -> mirrored?
    settings = TrainSettings(flip=flip, crop_pad=0, epochs=4, batch_size=64, max_lr=0.05, device="cpu")
    for x in _c1_inputs(settings, data):
        x = x.flatten(1)
        exact = "donot_use_mm_for_euclid_dist"
        d_plain = torch.cdist(x, plain, compute_mode=exact)
        d_mirror = torch.cdist(x, mirror, compute_mode=exact)
        idx = torch.minimum(d_plain, d_mirror).argmin(1)
        assert torch.minimum(d_plain, d_mirror).min(1).values.max() < 1e-3  # each one found
        sides.append(dict(zip(idx.tolist(), (d_mirror.min(1).values < d_plain.min(1).values).tolist())))
    assert len(sides) == 4 and all(len(s) == 64 for s in sides)
    alternates = all(sides[e][i] != sides[e + 1][i] for e in range(3) for i in range(64))
    assert alternates is (flip == "alternate")
    assert 16 < sum(sides[0].values()) < 48  # about half mirrored in the first epoch


def test_norm_lr_scales_the_steps_of_the_norm_layers_only(tiny_data):
    """Two steps from the same start (the zero classifier passes no gradient down on the first):
    the norms' scale and shift move norm_lr times as far, every other parameter the same."""
    from cifar_app.core.engine import make_optimizer, set_lr
    from cifar_app.core.model import build_model

    moved = []
    for mult in (1.0, 16.0):
        torch.manual_seed(0)
        model = build_model("batch").double()  # float64: the steps are 1e-6 of weights near 1
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        opt = make_optimizer(model, TrainSettings(norm_lr=mult))
        set_lr(opt, 0.01)
        x = tiny_data.train_x[:32].double() / 255
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), tiny_data.train_y[:32]).backward()
            opt.step()
        moved.append({k: (v.detach() - before[k]) for k, v in model.named_parameters()})
    for name, step in moved[0].items():
        ratio = 16.0 if ".2." in name else 1.0  # C blocks' third layer: the norm
        assert torch.allclose(moved[1][name], ratio * step, rtol=1e-6, atol=1e-12), name
    assert any(".2." in name and step.abs().sum() > 0 for name, step in moved[0].items())


@pytest.mark.parametrize("whiten", ["init", "frozen"])
def test_whiten_starts_c1_as_patch_whitening_and_frozen_keeps_it(whiten, tmp_path):
    """C1 starts as the whitening filters of the first training images; ``frozen`` keeps them to the
    end (and no optimizer group holds them), ``init`` trains them; a stopped run resumes to the same
    weights as an uninterrupted one."""
    from cifar_app.core.data import channel_stats
    from cifar_app.core.engine import WHITEN_IMAGES, make_optimizer, normalize
    from cifar_app.core.model import ARCHITECTURES, patch_whitening

    data = synthetic_data(n_train=200, n_test=50)
    settings = TrainSettings(whiten=whiten, **QUICK)
    mean, std = channel_stats(data.train_x)
    start = patch_whitening(normalize(data.train_x[:WHITEN_IMAGES], mean, std),
                            ARCHITECTURES[settings.arch].widths["C1"])
    result = train(settings, data)
    c1 = result.model.blocks()["C1"].conv.weight.detach()
    assert torch.equal(c1, start) is (whiten == "frozen")
    assert (c1 - start).abs().max() < 0.5 * start.abs().max()  # trained from there, not elsewhere
    held = {id(p) for g in make_optimizer(result.model, settings).param_groups for p in g["params"]}
    assert (id(result.model.blocks()["C1"].conv.weight) in held) is (whiten == "init")

    ckpt = RunStore(tmp_path / "runs", reference_root=None).create(settings)
    seen = []
    assert train(settings, data,
                 Hooks(on_batch=seen.append, checkpoint=ckpt), should_stop=lambda: len(seen) >= 6).stopped
    resumed = train(settings, data, Hooks(checkpoint=ckpt), resume=True)
    for a, b in zip(resumed.model.state_dict().values(), result.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_dirac_setting_starts_the_run_from_the_identity():
    from cifar_app.core.model import build_model

    data = synthetic_data(n_train=100, n_test=20)
    start = train(TrainSettings(dirac=True, **QUICK), data, should_stop=lambda: True).model
    torch.manual_seed(0)
    expected = build_model("batch")
    expected.dirac_init()
    for (name, a), b in zip(start.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(a, b), name


def test_mixing_happens_in_its_epochs_only():
    """Without other augmentation, a batch of epochs mix_from..mix_to is not the training images
    themselves; one of the other epochs is."""
    from cifar_app.core.data import channel_stats
    from cifar_app.core.engine import normalize

    data = synthetic_data(n_train=64, n_test=16)
    mean, std = channel_stats(data.train_x)
    plain = normalize(data.train_x, mean, std).flatten(1)
    for mix in ("mixup", "cutmix"):
        settings = TrainSettings(mix=mix, mix_from=2, mix_to=3, augment=False, epochs=4, batch_size=64,
                                 max_lr=0.05, device="cpu")
        batches = _c1_inputs(settings, data)
        exact = "donot_use_mm_for_euclid_dist"
        found = [torch.cdist(b.flatten(1), plain, compute_mode=exact).min(1).values.max().item() < 1e-3
                 for b in batches]
        assert found == [True, False, False, True], mix


def test_mixed_loss_weighs_the_two_labels():
    from cifar_app.core.engine import mixed_cross_entropy

    logits = torch.randn(6, 10)
    y, y2 = torch.arange(6), torch.arange(6).flip(0)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(mixed_cross_entropy(logits, y, y2, 1.0, 0.1), ce(logits, y, label_smoothing=0.1))
    assert torch.allclose(mixed_cross_entropy(logits, y, y2, 0.0), ce(logits, y2))
    mixed = mixed_cross_entropy(logits, y, y2, 0.25)
    assert torch.allclose(mixed, 0.25 * ce(logits, y) + 0.75 * ce(logits, y2))


def test_progressive_resizing_trains_on_smaller_images_first():
    data = synthetic_data(n_train=64, n_test=16)
    settings = TrainSettings(resize_start=16, epochs=6, batch_size=64, max_lr=0.05, device="cpu")
    assert [b.shape[-1] for b in _c1_inputs(settings, data)] == [16, 24, 32, 32, 32, 32]


def test_mix_from_after_mix_to_is_refused():
    with pytest.raises(SettingsError, match="mix_from"):
        TrainSettings(mix="mixup", mix_from=5, mix_to=4).validate()


def test_train_eval_scores_the_training_images_as_the_test_images_are_scored(tiny_data):
    """With ``train_eval`` the epoch record holds the eval-mode accuracy on the first N training
    images: the model of the epoch's end, no augmentation, the same scoring as the test images."""
    s = TrainSettings(epochs=2, batch_size=32, train_eval=64, augment=False, train_limit=128, test_limit=32)
    result = train(s, tiny_data)
    model = result.model.eval()
    probs = predict_probs(model, tiny_data.train_x[:64], result.mean, result.std, torch.device("cpu"))
    expected = (probs.argmax(1) == tiny_data.train_y[:64]).float().mean().item()
    assert result.history[-1].train_eval_acc == pytest.approx(expected)
    assert train(s.replace(train_eval=0), tiny_data).history[-1].train_eval_acc is None
