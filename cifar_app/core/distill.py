"""Knowledge distillation (Hinton et al. 2015): a teacher made of finished runs, and the loss that
teaches a student from it.

The teacher is the average of the softened predictions of one or more trained models (an ensemble
of the lab's own runs, e.g. the three reference runs: each within the budget, and together a
better classifier than any one). The student's loss is ``(1 - distill) * cross-entropy(labels)
+ distill * T² * KL(teacher ‖ student)`` at temperature ``T`` (``distill_temp``), on the same
augmented batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Teacher(nn.Module):
    """Trained models, each with the mean and std it normalizes by, averaged as one teacher."""

    def __init__(self, models: list[nn.Module], means: list[torch.Tensor], stds: list[torch.Tensor]) -> None:
        super().__init__()
        if not models:
            raise ValueError("a teacher needs at least one model")
        self.models = nn.ModuleList(models).eval().requires_grad_(False)
        self.register_buffer("means", torch.stack([m.float().reshape(3) for m in means]))
        self.register_buffer("stds", torch.stack([s.float().reshape(3) for s in stds]))

    @torch.no_grad()
    def probs(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              temperature: float) -> torch.Tensor:
        """The averaged ``softmax(logits / temperature)`` (float32 (N, 10)) for a batch ``x`` that is
        standardized by the student's ``mean`` and ``std``: each model sees it in its own units."""
        self.eval()
        raw = x.float() * std.view(1, 3, 1, 1).to(x.device) + mean.view(1, 3, 1, 1).to(x.device)
        out = torch.zeros(x.shape[0], 10, device=x.device)
        for model, m, s in zip(self.models, self.means, self.stds):
            xi = ((raw - m.view(1, 3, 1, 1)) / s.view(1, 3, 1, 1)).contiguous(
                memory_format=torch.channels_last)
            out += (model(xi).float() / temperature).softmax(1)
        return out / len(self.models)


def distill_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(teacher ‖ softmax(logits / T))``, averaged over the batch (the T² keeps the
    gradient's scale as T changes)."""
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    return temperature ** 2 * F.kl_div(log_student, teacher_probs, reduction="batchmean")

