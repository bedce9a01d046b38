"""Knowledge distillation: the loss, the teacher (finished runs, each in its own units), the engine
learning from it, and the run store path that loads it (the local worker's and the Ray driver's)."""

import pytest
import torch

from cifar_app.core.distill import Teacher, distill_loss
from cifar_app.core.engine import model_record, train
from cifar_app.core.model import build_model
from cifar_app.core.settings import SettingsError, TrainSettings
from cifar_app.store.inference import teacher_from_records
from cifar_app.store.jobs import execute_run
from cifar_app.store.recorder import TeacherUnavailable, teacher_records
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data

QUICK = dict(epochs=3, batch_size=50, max_lr=0.05, label_smoothing=0.0, device="cpu")


def test_the_loss_is_t_squared_times_the_kl_divergence_and_zero_at_the_teacher():
    g = torch.Generator().manual_seed(0)
    logits, t = torch.randn(8, 10, generator=g), 3.0
    teacher = torch.randn(8, 10, generator=g).softmax(1)
    manual = (teacher * (teacher.log() - (logits / t).log_softmax(1))).sum(1).mean() * t ** 2
    assert distill_loss(logits, teacher, t) == pytest.approx(manual.item(), rel=1e-5)
    assert distill_loss(logits, (logits / t).softmax(1), t).abs() < 1e-6


def test_the_teacher_averages_its_models_each_seeing_the_batch_in_its_own_units():
    models, means, stds = [], [torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.1, 0.2, 0.3])], \
        [torch.tensor([0.2, 0.25, 0.3]), torch.tensor([0.5, 0.5, 0.5])]
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = build_model("layer")
        torch.nn.init.normal_(m.layers["c10"].weight)  # not the zero start: the models differ
        models.append(m.eval())
    teacher = Teacher(models, means, stds)
    raw = torch.rand(4, 3, 32, 32)
    mean, std = torch.tensor([0.45, 0.45, 0.45]), torch.tensor([0.25, 0.25, 0.25])
    x = (raw - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        want = sum((m((raw - mu.view(1, 3, 1, 1)) / s.view(1, 3, 1, 1)) / 2.0).softmax(1)
                   for m, mu, s in zip(models, means, stds)) / 2
    assert torch.allclose(teacher.probs(x, mean, std, 2.0), want, atol=1e-5)


def one_class_teacher(cls: int = 3) -> Teacher:
    model = build_model("batch").eval()
    with torch.no_grad():
        model.layers["c10"].bias[cls] = 10.0  # the zero classifier: the same answer for every image
    return Teacher([model], [torch.zeros(3)], [torch.ones(3)])


def test_a_student_that_learns_only_from_the_teacher_takes_its_answers():
    data = synthetic_data(n_train=400, n_test=100)
    assert len(set(data.test_y.tolist())) > 1
    student = train(TrainSettings(teacher="ref-batch", distill=1.0, **QUICK), data,
                    teacher=one_class_teacher(3))
    assert (student.test_probs.argmax(1) == 3).all()
    plain = train(TrainSettings(**QUICK), data)
    assert not (plain.test_probs.argmax(1) == 3).all()


def test_the_engine_refuses_a_teacher_without_distill_and_distill_without_teacher():
    data = synthetic_data(n_train=100, n_test=20)
    with pytest.raises(ValueError, match="teacher"):
        train(TrainSettings(**QUICK), data, teacher=one_class_teacher())
    with pytest.raises(ValueError, match="teacher"):
        train(TrainSettings(teacher="ref-batch", distill=0.5, **QUICK), data)


@pytest.mark.parametrize("changes, field", [
    (dict(distill=0.5), "distill"),
    (dict(teacher="ref-batch"), "teacher"),
    (dict(teacher="é" * 10_000, distill=0.5), "teacher"),
    (dict(teacher="ref batch", distill=0.5), "teacher"),
    (dict(teacher="../../etc", distill=0.5), "teacher"),
    (dict(teacher=",".join(["ref-batch"] * 9), distill=0.5), "teacher"),
    (dict(teacher="ref-batch", distill=1.5), "distill"),
])
def test_bad_teacher_settings_are_refused_naming_the_field(changes, field):
    with pytest.raises(SettingsError) as e:
        TrainSettings(**changes).validate()
    assert e.value.field == field and len(str(e.value)) < 300


def test_a_run_distils_from_runs_in_the_store_and_a_missing_teacher_fails_the_run_in_one_line(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    data = synthetic_data(n_train=200, n_test=50)
    teacher_run = store.create(TrainSettings(**QUICK))
    execute_run(store, teacher_run.id, data=data)
    settings = TrainSettings(teacher=teacher_run.id, distill=0.5, **QUICK)
    [rec] = teacher_records(store, settings)
    assert rec["settings"] == teacher_run.load_model_record()["settings"]
    student = store.create(settings)
    execute_run(store, student.id, data=data)
    assert student.state() == "completed" and student.settings().teacher == teacher_run.id

    orphan = store.create(TrainSettings(teacher="no-such-run", distill=0.5, **QUICK))
    with pytest.raises(TeacherUnavailable, match="teacher no-such-run"):
        execute_run(store, orphan.id, data=data)
    status = orphan.raw_status()
    assert status["state"] == "failed" and status["error"].startswith("teacher no-such-run")
    unfinished = store.create(TrainSettings(**QUICK))
    with pytest.raises(TeacherUnavailable, match="no trained model"):
        teacher_records(store, TrainSettings(teacher=unfinished.id, distill=0.5, **QUICK))


def test_the_teacher_from_records_is_the_models_the_runs_saved():
    data = synthetic_data(n_train=100, n_test=20)
    result = train(TrainSettings(**QUICK), data)
    record = model_record(result, TrainSettings(**QUICK), data.classes)
    teacher = teacher_from_records([record])
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = (result.model.eval()(x) / 4.0).softmax(1)
    assert torch.allclose(teacher.probs(x, result.mean, result.std, 4.0), want, atol=1e-5)
