"""Running loss and accuracy of an epoch, summed over ranks, that a mid-epoch checkpoint carries over.

A resumed epoch therefore reports (and ranks best.pt by) the accuracy of all its steps, as an uninterrupted
epoch does, not only of the steps after the restart.
"""

from __future__ import annotations

import torch

from fractalad.pretrain.distributed import DistContext, all_reduce_sum

Sums = tuple[float, float, float]  # loss sum, correct predictions, samples
ZERO: Sums = (0.0, 0.0, 0.0)


class EpochMeter:
    """Sums of the epoch's closed log windows, of the open window (reduced) and of this rank's recent steps."""

    def __init__(self, epoch_sums: Sums, window_sums: Sums, context: DistContext) -> None:
        self.context = context
        self.closed = torch.tensor(epoch_sums, dtype=torch.float64, device=context.device)
        self.window = torch.tensor(window_sums, dtype=torch.float64, device=context.device)
        self.local = torch.zeros(3, dtype=torch.float64, device=context.device)
        # Samples of the open window that were counted before a restart: not part of this process's speed.
        self.carried_samples = window_sums[2]

    def add(self, loss_sum: torch.Tensor, hits: torch.Tensor, count: int) -> None:
        """One step of this rank: the summed loss and hits over `count` samples."""
        self.local[0] += loss_sum.double()
        self.local[1] += hits.double()
        self.local[2] += count

    def sync(self) -> None:
        """Fold every rank's recent steps into the open window (a collective: all ranks call it together)."""
        self.window += all_reduce_sum(self.local, self.context)
        self.local.zero_()

    def close_window(self) -> tuple[float, float, float]:
        """End a log window: (mean loss, accuracy, samples this process trained) over all ranks."""
        self.sync()
        loss, hits, count = self.window.tolist()
        fresh = count - self.carried_samples
        self.carried_samples = 0.0
        self.closed += self.window
        self.window.zero_()
        return loss / count, hits / count, fresh

    def saved(self) -> tuple[Sums, Sums]:
        """(epoch_sums, window_sums) for a checkpoint; call sync() first so no rank's steps are missing."""
        closed, window = self.closed.tolist(), self.window.tolist()
        return (closed[0], closed[1], closed[2]), (window[0], window[1], window[2])

    def epoch_means(self) -> tuple[float, float]:
        """(mean loss, accuracy) over the epoch's closed windows."""
        loss, hits, count = self.closed.tolist()
        return loss / count, hits / count
