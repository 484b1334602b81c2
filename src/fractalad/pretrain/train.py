"""The pre-training loop: explicit, single file, DDP-aware, resumable at any checkpointed step."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from fractalad.devices import native_bf16
from fractalad.errors import InputError
from fractalad.files import atomic_path, write_text_atomic
from fractalad.pretrain import checkpoints as ckpt
from fractalad.pretrain import data
from fractalad.pretrain.augment import BatchMix
from fractalad.pretrain.config import PretrainConfig, save_config
from fractalad.pretrain.distributed import (
    DistContext,
    barrier,
    broadcast_buffers,
    cleanup,
    gather_strings,
    init_distributed,
    parameter_digest,
)
from fractalad.pretrain.export import export_backbone
from fractalad.pretrain.meter import ZERO, EpochMeter
from fractalad.pretrain.model import Criterion, build_model, input_normalizer, make_criterion
from fractalad.pretrain.schedule import LRSchedule, ScalarLogger

SYSTEMS_FILE = "systems.npz"
FIXED_IMAGES_FILE = "fixed-images.npy"
BACKBONE_FILE = "backbone.safetensors"
SUMMARY_FILE = "summary.json"
# Keys a resumed run may change: they affect speed or bookkeeping, not the optimisation trajectory.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "workers",
        "threads",
        "device",
        "device_render",
        "compile",
        "checkpoint_every_steps",
        "log_every_steps",
        "preset",
    }
)


def log(message: str) -> None:
    """One progress line on stdout that does not break the tqdm bar (bars go to stderr)."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


@dataclasses.dataclass(frozen=True)
class Layout:
    """Per-rank batch geometry derived from the config and the world size."""

    steps_per_epoch: int
    micro_batch: int
    per_rank_step: int

    @staticmethod
    def of(config: PretrainConfig, world_size: int) -> Layout:
        per_rank = config.batch_size // world_size
        if config.batch_size % (world_size * config.accumulation_steps):
            raise InputError(
                f"batch_size={config.batch_size} is not divisible by world_size x accumulation_steps = "
                f"{world_size} x {config.accumulation_steps}; change batch_size or accumulation_steps"
            )
        return Layout(config.epoch_size // config.batch_size, per_rank // config.accumulation_steps, per_rank)


def _check_resumable(saved: dict[str, Any], config: PretrainConfig, path: Path) -> None:
    current = config.to_dict()
    # A key the saved run predates had its default value then (keys are added with the old behaviour).
    saved = {**PretrainConfig().to_dict(), **saved}
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise InputError(
            f"cannot resume {path}: the config changed ({details}); resume with the saved config "
            "(config.yaml next to it) or start a new run in another output folder"
        )


def epoch_batches(run: Run, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's micro-batches for the rest of the epoch (DataLoader workers, or on-device rendering)."""
    config, context, dataset, layout, loader_cache = (
        run.config,
        run.context,
        run.dataset,
        run.layout,
        run.loaders,
    )
    if config.device_render:
        return _device_batches(run, epoch, start_step)
    if "loader" not in loader_cache:
        used = layout.steps_per_epoch * config.batch_size
        sampler = data.ResumableSampler(len(dataset), used, config.seed, context.world_size, context.rank)
        loader_cache["sampler"] = sampler
        loader_cache["loader"] = data.make_loader(
            dataset, sampler, layout.micro_batch, config.workers, context.device.type == "cuda"
        )
    loader_cache["sampler"].set_epoch(epoch, start=start_step * layout.per_rank_step)
    return iter(loader_cache["loader"])


def _device_batches(run: Run, epoch: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Micro-batches rendered by torch on the training device; rank r takes batches r, r + W, ..."""
    from fractalad.fractals.torch_render import DeviceFractalBatches

    config, context, layout, cache = run.config, run.context, run.layout, run.loaders
    if run.systems is None:
        raise InputError("device_render=true renders fractal systems itself; it cannot use a custom dataset")
    if "device" not in cache and config.image_source == "fixed":
        used = layout.steps_per_epoch * config.batch_size
        images = data.load_fixed_images(run.output_dir / FIXED_IMAGES_FILE)
        cache["device"] = data.DeviceFixedBatches(images, config, layout.micro_batch, used, context.device)
    if "device" not in cache:
        cache["device"] = DeviceFractalBatches(
            run.systems,
            config.num_classes,
            config.samples_per_class,
            data.render_config(config),
            config.seed,
            batch_size=layout.micro_batch,
            crop=config.crop,
            device=context.device,
            rank=context.rank,
            world_size=context.world_size,
        )
    batches = cache["device"]
    batches.set_epoch(epoch)
    per_epoch = layout.steps_per_epoch * config.accumulation_steps * context.world_size
    done = start_step * config.accumulation_steps * context.world_size
    return (batches.batch(b) for b in range(done + context.rank, per_epoch, context.world_size))


@dataclasses.dataclass
class Run:
    """Everything the epoch loop touches; one per pretrain() call."""

    config: PretrainConfig
    context: DistContext
    output_dir: Path
    layout: Layout
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    logger: ScalarLogger | None
    dataset: Dataset
    systems: list[Any] | None
    normalizer: tuple[torch.Tensor, torch.Tensor] | None
    criterion: Criterion
    mix: BatchMix | None = None
    # bf16 autocast: asked for (config.amp) and native on the training device; float32 elsewhere.
    autocast: bool = False
    loaders: dict[str, Any] = dataclasses.field(default_factory=dict)

    def save(self, state: ckpt.TrainState, name: str = ckpt.LAST) -> None:
        if self.context.is_main:
            ckpt.save_checkpoint(
                self.output_dir / name,
                self.model,
                self.optimizer,
                self.scheduler,
                self.config.to_dict(),
                state,
            )


def train_step(
    run: Run, micro_batches: list[tuple[torch.Tensor, torch.Tensor]], step: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Optimiser step number `step` over `accumulation_steps` micro-batches; returns (loss sum, hits, count).

    `step` keys the MixUp/CutMix draws (with the micro-batch and the rank), so a resumed run mixes alike.
    """
    config, device, normalizer = run.config, run.context.device, run.normalizer
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for i, (images, targets) in enumerate(micro_batches):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if run.mix is not None:
            images, targets = run.mix(images, targets, (step, i, run.context.rank))
        if normalizer is not None:
            images = (images - normalizer[0]) / normalizer[1]
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        last = i == len(micro_batches) - 1
        # Skip the gradient all-reduce on all but the last micro-batch of an accumulated step.
        sync = contextlib.nullcontext() if last or not run.context.distributed else run.train_model.no_sync()
        with sync, torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.autocast):
            logits = run.train_model(images)
            loss, hit = run.criterion(logits.float(), targets)
            (loss / len(micro_batches)).backward()
        loss_sum += loss.detach() * len(targets)
        hits += hit.sum()
        count += len(targets)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, hits, count


def _train_epoch(run: Run, epoch: int, state: ckpt.TrainState) -> tuple[ckpt.TrainState, float, float]:
    """Run the rest of `epoch` from `state.step_in_epoch`; returns the end state, mean loss and accuracy."""
    config, layout, context = run.config, run.layout, run.context
    batches = epoch_batches(run, epoch, state.step_in_epoch)
    meter = EpochMeter(state.epoch_sums, state.window_sums, context)
    tick = time.perf_counter()
    bar = tqdm(
        total=layout.steps_per_epoch,
        initial=state.step_in_epoch,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="step",
        disable=not context.is_main,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for step in range(state.step_in_epoch, layout.steps_per_epoch):
        micro = [next(batches) for _ in range(config.accumulation_steps)]
        meter.add(*train_step(run, micro, state.global_step))
        state = dataclasses.replace(state, step_in_epoch=step + 1, global_step=state.global_step + 1)
        bar.update(1)
        # Rows sit at multiples of log_every_steps (and epoch ends), so a resumed run logs the same steps.
        if state.global_step % config.log_every_steps == 0 or step + 1 == layout.steps_per_epoch:
            loss, accuracy, samples = meter.close_window()
            scalars = {
                "loss": loss,
                "accuracy": accuracy,
                "lr": run.scheduler.get_last_lr()[0],
                "images_per_s": samples / (time.perf_counter() - tick),
            }
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", img_s=f"{scalars['images_per_s']:.0f}")
            if run.logger is not None:
                run.logger.log(state.global_step, epoch + (step + 1) / layout.steps_per_epoch, scalars)
            tick = time.perf_counter()
        every = config.checkpoint_every_steps
        if every and state.global_step % every == 0 and step + 1 < layout.steps_per_epoch:
            meter.sync()
            epoch_sums, window_sums = meter.saved()
            state = dataclasses.replace(state, epoch_sums=epoch_sums, window_sums=window_sums)
            run.save(state)
            if context.is_main:
                where = f"epoch {epoch + 1} step {state.step_in_epoch}"
                log(f"checkpoint: {where} (global step {state.global_step})")
    bar.close()
    return state, *meter.epoch_means()


def _reschedule(scheduler: torch.optim.lr_scheduler.LambdaLR, schedule: LRSchedule) -> None:
    """Use the current config's schedule after a restore (a resumed run may extend `epochs`)."""
    scheduler.lr_lambdas = [schedule] * len(scheduler.optimizer.param_groups)
    factor = schedule(scheduler.last_epoch)
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * factor
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def _resumable_checkpoint(config: PretrainConfig, last: Path, resume: bool) -> dict[str, Any] | None:
    """The payload of `last` when it exists and may be resumed with `config`, else None."""
    if not last.exists():
        return None
    if not resume:
        raise InputError(
            f"{last.parent} already holds a checkpoint ({last.name}); resume it (--resume) "
            "or choose another output folder"
        )
    payload = ckpt.load_checkpoint(last, arch=config.arch)
    _check_resumable(payload["config"], config, last)
    return payload


def _wrap(model: nn.Module, config: PretrainConfig, context: DistContext) -> nn.Module:
    """The module the loop calls: DDP under torchrun, then torch.compile when asked."""
    wrapped = model
    if context.distributed:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    return torch.compile(wrapped) if config.compile else wrapped


def setup_run(
    config: PretrainConfig, output_dir: Path, context: DistContext, resume: bool, dataset: Dataset | None
) -> tuple[Run, ckpt.TrainState]:
    """Output folder, systems, dataset, model, optimiser, schedule, and the state restored from last.pt."""
    last = output_dir / ckpt.LAST
    payload = _resumable_checkpoint(config, last, resume)
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / "config.yaml")
        if dataset is None:
            data.prepare_systems(config, output_dir / SYSTEMS_FILE)
            if config.image_source == "fixed":
                systems = data.load_run_systems(output_dir / SYSTEMS_FILE)
                data.prepare_fixed_images(config, systems, output_dir / FIXED_IMAGES_FILE)
    barrier(context)
    systems = None
    if dataset is None:
        systems = data.load_run_systems(output_dir / SYSTEMS_FILE)
        fixed = None
        if config.image_source == "fixed":
            fixed = data.load_fixed_images(output_dir / FIXED_IMAGES_FILE)
        dataset = data.build_dataset(config, systems, fixed)
    layout = Layout.of(config, context.world_size)
    model = build_model(config, context)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(config, layout.steps_per_epoch))
    state = ckpt.TrainState()
    if payload is not None:
        state = ckpt.restore(payload, model, optimizer, scheduler)
        _reschedule(scheduler, LRSchedule(config, layout.steps_per_epoch))
        if context.is_main:
            log(
                f"resumed from {last}: epoch {state.epoch + 1} step {state.step_in_epoch} "
                f"(global step {state.global_step})"
            )
    logger = ScalarLogger(output_dir, state.global_step) if context.is_main else None
    return Run(
        config,
        context,
        output_dir,
        layout,
        model,
        _wrap(model, config, context),
        optimizer,
        scheduler,
        logger,
        dataset,
        systems,
        input_normalizer(config, context.device),
        make_criterion(config),
        BatchMix(config) if config.mix_prob > 0 else None,
        autocast=config.amp and native_bf16(context.device),
    ), state


def _finish(run: Run, state: ckpt.TrainState, seconds: float) -> Path:
    """Check the ranks agree, export the backbone and write summary.json (rank 0)."""
    digests = gather_strings(parameter_digest(run.model), run.context)
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP ranks diverged: parameter digests {digests}")
    broadcast_buffers(run.model, run.context)
    out = run.output_dir / BACKBONE_FILE
    if run.context.is_main:
        export_backbone(run.output_dir / ckpt.LAST, out)
        summary = {
            "global_step": state.global_step,
            "epochs": state.epoch,
            "best_accuracy": state.best_accuracy,
            "world_size": run.context.world_size,
            "rank_digests": digests,
            "train_seconds": seconds,
            "precision": "bf16" if run.autocast else "fp32",
            "backbone": out.name,
        }
        write_text_atomic(run.output_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
        run.logger.close()
    barrier(run.context)
    return out


def _save_epoch_end(run: Run, state: ckpt.TrainState, best: bool) -> None:
    """last.pt, and best.pt when this epoch is the best so far.

    best.pt is written first: a run killed between the two files resumes from the previous last.pt, repeats
    the epoch and writes best.pt again, whereas the other order would record the new best accuracy in
    last.pt and never write its best.pt.
    """
    if not best:
        run.save(state)
        return
    run.save(state, ckpt.BEST)
    if run.context.is_main:
        with atomic_path(run.output_dir / ckpt.LAST) as tmp:
            shutil.copyfile(run.output_dir / ckpt.BEST, tmp)


def pretrain(
    config: PretrainConfig, output_dir: str | Path, resume: bool = True, dataset: Dataset | None = None
) -> Path:
    """Pre-train `config.arch` on fractals into `output_dir`; returns the exported backbone weights path.

    Under torchrun every rank calls this; rank 0 writes checkpoints, logs and the export. `dataset` replaces
    the fractal dataset (items: image (3, S, S) float in [0, 1], label), e.g. for tests or custom data.
    """
    output_dir = Path(output_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    context = init_distributed(config.device)
    try:
        run, state = setup_run(config, output_dir, context, resume, dataset)
        started = time.perf_counter()
        for epoch in range(state.epoch, config.epochs):
            state, loss, accuracy = _train_epoch(run, epoch, state)
            best = accuracy > state.best_accuracy
            state = dataclasses.replace(
                state,
                epoch=epoch + 1,
                step_in_epoch=0,
                best_accuracy=max(accuracy, state.best_accuracy),
                epoch_sums=ZERO,
                window_sums=ZERO,
            )
            _save_epoch_end(run, state, best)
            if context.is_main:
                log(f"epoch {epoch + 1}/{config.epochs}: loss {loss:.4f}, train accuracy {accuracy:.4f}")
        return _finish(run, state, time.perf_counter() - started)
    finally:
        cleanup(context)
