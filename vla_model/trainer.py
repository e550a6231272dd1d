"""The training loop, through accelerate: the same code on CPU, one GPU, several GPUs or nodes
(`accelerate launch` / `torchrun`), with mixed precision and gradient accumulation.

Before the first step ``preflight`` checks one real batch. Only the main process writes logs and
checkpoints; at the end every process's trained weights are compared (``TrainSummary.ranks_identical``).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from pydantic import BaseModel, Field
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from schemas.sample import SampleField
from schemas.history import DataPin
from schemas.store import StoreManifest
from schemas.train import CONFIG_FILE, LOG_FILE, SUMMARY_FILE, ActionHead, BackboneSpec, CheckpointMeta, Precision, Schedule, TrainConfig
from vla_data import __version__
from vla_data.samples.dataset import WindowDataset
from vla_data.samples.loader import make_loader
from vla_data.store.reader import open_store, pin
from vla_data.common.files import write_text_atomic
from vla_data.common.refusal import Fix
from vla_model import checkpoint as ckpt
from vla_model.backbone import load_backbone, locate
from vla_model.loading import load_trained
from vla_model.heads import Levels, action_levels
from vla_model.policy import ConfigError, VLAPolicy, batch_inputs, policy_for
from vla_model.preflight import PreflightError, preflight



class TrainSummary(BaseModel):
    steps: int
    processes: int
    device: str
    final_train_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    last_checkpoint: str | None
    samples_per_s: float
    ranks_identical: bool
    trainable_parameters: dict[str, int]
    unmirrored_episodes: list[int] = Field(
        default_factory=list, description="Train episodes augment=mirror left out: their instruction names no side word."
    )


def build_policy(config: TrainConfig, manifest: StoreManifest, levels: Levels | None = None) -> VLAPolicy:
    """The policy to train on a store; a store whose image size is not the backbone's input size is refused
    unless resizing on the device was asked for (it costs a resize of every frame on every step)."""
    backbone = load_backbone(config.model.source)
    stored = manifest.preprocessing.image_size
    if stored != backbone.image_size and not config.model.resize_on_device:
        raise ConfigError(
            f"the store's frames are {stored}x{stored}, the backbone {backbone.source} reads "
            f"{backbone.image_size}x{backbone.image_size}: each frame would be resized again on every step",
            Fix({"preprocessing.image_size": str(backbone.image_size)}, "to build-splits (the store at the backbone's size)"),
            Fix({"model.resize_on_device": True}, "to resize on the device knowingly"),
        )
    return policy_for(backbone, config, len(manifest.actions.names), manifest.camera_names, levels=levels)


def head_levels(config: TrainConfig, train: WindowDataset) -> Levels | None:
    """A discrete head's levels, from the train split's actions (those the mirror negates made symmetric)."""
    if config.model.head != ActionHead.discrete:
        return None
    mirrored = np.flatnonzero(train.mirror_sign < 0).tolist()  # none without the mirror augmentation
    physical = action_levels(np.concatenate(train.actions), config.model.bins, mirrored)
    return Levels(physical, train.normalizer, config.model.readout)


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    warmup, total, schedule = config.optim.warmup_steps, config.optim.max_steps, config.optim.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == Schedule.constant:
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def evaluate(policy: VLAPolicy, loader: torch.utils.data.DataLoader, delta: float, max_batches: int | None) -> float:
    """Masked Huber loss over the val split (entry-weighted), in eval mode, without gradients."""
    was_training = policy.training
    policy.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            outputs = policy(*batch_inputs(batch))
            mask = batch[SampleField.chunk_mask].to(outputs.device)
            n = float(mask.sum()) * batch[SampleField.actions].shape[-1]
            total += float(policy.loss(outputs, batch[SampleField.actions], mask, delta)) * n
            count += n
    policy.train(was_training)
    return total / max(count, 1.0)


def window_mae(policy: VLAPolicy, dataset: WindowDataset, train_mean: np.ndarray, batch_size: int = 64) -> tuple[float, float]:
    """Val MAE in physical units over every unmasked action of every window step, and the same MAE of always
    predicting the train-mean action (the baseline the learning test and ``benchmarks/learning.py`` compare to)."""
    errors, baseline = [], []
    with torch.no_grad():
        for batch in make_loader(dataset, batch_size, shuffle=False):
            pred = dataset.denormalize(policy.readout(policy(batch[SampleField.rgb], batch[SampleField.instruction])))
            true, mask = dataset.denormalize(batch[SampleField.actions]), batch[SampleField.chunk_mask].numpy()
            errors.append(np.abs(pred - true)[mask])
            baseline.append(np.abs(train_mean - true)[mask])
    return float(np.concatenate(errors).mean()), float(np.concatenate(baseline).mean())


def weights_digest(policy: VLAPolicy) -> torch.Tensor:
    """A digest of every trained tensor, as 8 int32s (so processes can gather and compare it)."""
    h = hashlib.sha256()
    for name, t in sorted((policy.adapter_state() | policy.head_state()).items()):
        h.update(name.encode())
        h.update(t.float().cpu().numpy().tobytes())
    return torch.frombuffer(bytearray(h.digest()), dtype=torch.int32).clone()


def _accelerator(config: TrainConfig) -> Accelerator:
    cuda = torch.cuda.is_available()
    if config.optim.precision == Precision.fp16 and not cuda:
        raise ConfigError("precision fp16 needs a CUDA GPU (its gradient scaler is CUDA-only)",
                          Fix({"optim.precision": "bf16"}), Fix({"optim.precision": "fp32"}))
    mixed = {Precision.bf16: "bf16", Precision.fp16: "fp16", Precision.fp32: "no"}[config.optim.precision]
    return Accelerator(cpu=not cuda, mixed_precision=mixed, gradient_accumulation_steps=config.optim.accumulation)


def _pinned_once(accelerator: Accelerator, store: str) -> DataPin:
    """The data every process trains on: the main process pins the store's version and the others take its pin,
    so a build committing while the processes start cannot give two ranks two versions."""
    if accelerator.num_processes == 1:
        return pin(open_store(store))
    pinned = [pin(open_store(store)) if accelerator.is_main_process else None]
    broadcast_object_list(pinned, from_process=0)
    assert pinned[0] is not None
    return pinned[0]


def train(config: TrainConfig, run_dir: Path, resume: bool = False, stop_after: int | None = None) -> TrainSummary:
    """Train as ``config`` says into ``run_dir`` (or continue its latest checkpoint exactly).

    ``stop_after`` ends the loop after that step as if the job were stopped there (tests of resume use it).
    """
    accelerator = _accelerator(config)
    main = accelerator.is_main_process
    # the config and every checkpoint record what finds the backbone from any directory (not "models/tiny")
    config = config.model_copy(update={"model": config.model.model_copy(update={"source": locate(config.model.source)})})
    # the exact data: the store's absolute location at the version it is now; the saved config (and so --resume,
    # wherever it runs and whatever the store became) reads that version, and every checkpoint records it
    data = _pinned_once(accelerator, config.data.store)
    config = config.model_copy(update={"data": config.data.model_copy(update={"store": data.address})})
    set_seed(config.optim.seed)
    train_ds = WindowDataset(config.data.store, config.data.train_split, spec=config.data.window, augment=config.data.augment,
                             mirror=config.data.mirror, memory_budget=config.data.memory_budget)
    unmirrored = train_ds.unmirrored_episodes
    if main and unmirrored:
        tqdm.write(f"augment=mirror: {len(unmirrored)} of {len(train_ds.episode_ids)} train episodes are not mirrored, "
                   f"their instruction names no side word (data.mirror.side_words): episodes "
                   f"{', '.join(map(str, unmirrored[:10]))}{', ...' if len(unmirrored) > 10 else ''} (all in {SUMMARY_FILE})")
    val_ds = WindowDataset(config.data.store, config.data.val_split, spec=config.data.window,
                           memory_budget=config.data.memory_budget)
    manifest = train_ds.manifest
    policy = build_policy(config, manifest, head_levels(config, train_ds)).to(accelerator.device)
    if config.optim.precision == Precision.bf16 and not config.model.frozen_fp32:
        policy.hold_frozen_in(torch.bfloat16)  # autocast would cast them on every forward; LoRA and heads stay fp32
    batching = config.data.batching
    loader = make_loader(train_ds, config.optim.batch_size, workers=config.data.workers, seed=config.optim.seed,
                         batching=batching, progress=main)
    val_loader = make_loader(val_ds, config.optim.batch_size, shuffle=False, workers=0, batching=batching, progress=main)

    groups = policy.parameter_groups()
    optimizer = torch.optim.AdamW(
        [{"params": groups["lora"], "lr": config.optim.lr},
         {"params": groups["heads"], "lr": config.optim.head_lr or config.optim.lr}],
        weight_decay=config.optim.weight_decay,
    )
    scheduler = LambdaLR(optimizer, [lr_lambda(config)] * 2)
    position = ckpt.ResumeState(step=0, epoch=0, batch_in_epoch=0, best_val_loss=None, best_step=None)
    if resume:
        position = _resume(run_dir, policy, optimizer, scheduler, data)
        if position.scaler and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(position.scaler)
    policy, optimizer, loader = accelerator.prepare(policy, optimizer, loader)
    model = accelerator.unwrap_model(policy)  # its forward runs in accelerate's autocast, as the steps' do
    # on the prepared model: the training precision and checkpointing, so it needs no more memory than a step
    counts = preflight(model, next(iter(make_loader(train_ds, config.optim.batch_size, seed=config.optim.seed,
                                                    batching=batching))), manifest, config.data.window.window, config.optim.huber_delta)

    writer = _Writers(run_dir, config, position.step) if main else None
    bar = tqdm(total=config.optim.max_steps, initial=position.step, desc="train", unit="step", disable=not main or None)
    step, epoch, batch_in_epoch = position.step, position.epoch, position.batch_in_epoch
    # the loss is summed on the device and reduced only when logged or saved: no host sync in a step
    window_loss = torch.tensor(position.window_loss, device=accelerator.device)
    window_batches, window_samples, window_start = position.window_batches, 0, time.perf_counter()
    seen_samples, started = 0, time.perf_counter()
    last_loss, last_checkpoint = None, None
    while step < config.optim.max_steps and step != stop_after:
        # on the prepared loader, not its sampler: accelerate's loader sets the sampler's epoch from its own
        # iteration counter at every pass, and a new process (a resumed run) starts that counter at 0
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, batch_in_epoch) if batch_in_epoch else loader
        for batch in batches:
            batch_in_epoch += 1
            with accelerator.accumulate(policy):
                loss = model.loss(policy(*batch_inputs(batch)), batch[SampleField.actions],
                                  batch[SampleField.chunk_mask], config.optim.huber_delta)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if not any(p.grad is not None for p in model.parameters() if p.requires_grad):
                        # fp16's scaler would crash ("No inf checks were recorded"); say why instead
                        raise PreflightError(f"no parameter received a gradient at step {step + 1}")
                    accelerator.clip_grad_norm_(policy.parameters(), config.optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            n = len(batch[SampleField.t]) * accelerator.num_processes
            window_loss += loss.detach().float()
            window_batches += 1
            window_samples += n
            seen_samples += n
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            bar.update(1)
            record: dict[str, float | int] = {}
            if step % config.log.log_every == 0 or step == config.optim.max_steps:
                elapsed = time.perf_counter() - window_start
                last_loss = float(accelerator.reduce(window_loss, reduction="mean")) / window_batches
                record = {"loss": last_loss, "lr": scheduler.get_last_lr()[0], "samples_per_s": window_samples / elapsed,
                          "samples": seen_samples, "elapsed_s": time.perf_counter() - started}  # since this process began
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{record['lr']:.2e}", sps=f"{record['samples_per_s']:.1f}")
                window_loss.zero_()
                window_batches, window_samples, window_start = 0, 0, time.perf_counter()
            improved, pause = False, time.perf_counter()
            if step % config.log.val_every == 0 or step == config.optim.max_steps:
                val_loss = evaluate(model, val_loader, config.optim.huber_delta, config.log.val_batches)
                record["val_loss"] = val_loss
                if position.best_val_loss is None or val_loss < position.best_val_loss:
                    position.best_val_loss, position.best_step, improved = val_loss, step, True
            if record and writer is not None:
                writer.log(step, epoch, record)
            if improved or step % config.log.save_every == 0 or step in (config.optim.max_steps, stop_after):
                position.step, position.epoch, position.batch_in_epoch = step, epoch, batch_in_epoch
                position.window_loss = float(accelerator.reduce(window_loss, reduction="mean"))
                position.window_batches = window_batches
                position.scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
                if main:
                    last_checkpoint = _save(run_dir, config, manifest, data, model, optimizer, scheduler, position,
                                            record)
                accelerator.wait_for_everyone()
            window_start += time.perf_counter() - pause  # samples/s counts training: not validation and saving
            if step >= config.optim.max_steps or step == stop_after:
                break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()

    digests = accelerator.gather(weights_digest(model).to(accelerator.device)).view(accelerator.num_processes, -1)
    summary = TrainSummary(
        steps=step,
        processes=accelerator.num_processes,
        device=str(accelerator.device),
        final_train_loss=last_loss,
        best_val_loss=position.best_val_loss,
        best_step=position.best_step,
        last_checkpoint=str(last_checkpoint) if last_checkpoint else None,
        samples_per_s=seen_samples / max(time.perf_counter() - started, 1e-9),
        ranks_identical=bool((digests == digests[0]).all()),
        trainable_parameters=counts,
        unmirrored_episodes=unmirrored,
    )
    if writer is not None:
        write_text_atomic(run_dir / SUMMARY_FILE, summary.model_dump_json(indent=2) + "\n")
        writer.close()
    accelerator.wait_for_everyone()
    # Several processes: the DDP wrapper's gradient reducer holds the process group. Freed here, while every
    # rank is still in the group, rather than at garbage collection after the group is gone, where Gloo's
    # destructor can wait forever for a peer that has exited (a hang seen in the 2-process test under load).
    del policy, model, optimizer, loader
    accelerator.free_memory()
    gc.collect()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _resume(run_dir: Path, policy: VLAPolicy, optimizer: torch.optim.Optimizer, scheduler: LambdaLR,
            data: DataPin) -> ckpt.ResumeState:
    path = ckpt.resolve(run_dir)
    meta = ckpt.load_meta(path)
    if meta.data is not None and meta.data.manifest_sha256 != data.manifest_sha256:
        raise ckpt.CheckpointError(f"{path} trained on {meta.data.address} (manifest {meta.data.manifest_sha256[:12]}); "
                                   f"{data.address} now holds another manifest ({data.manifest_sha256[:12]}): the "
                                   "data changed under the same name, so the run cannot continue exactly")
    adapter, heads = ckpt.load_weights(path)
    load_trained(policy, adapter, heads)
    opt_state, sched_state, position = ckpt.load_resume(path)
    optimizer.load_state_dict(opt_state)
    scheduler.load_state_dict(sched_state)
    if position.step != meta.step:
        raise ckpt.CheckpointError(f"{path}: resume state is for step {position.step}, the checkpoint for {meta.step}")
    return position


def _save(run_dir: Path, config: TrainConfig, manifest: StoreManifest, data: DataPin, model: VLAPolicy,
          optimizer: torch.optim.Optimizer, scheduler: LambdaLR, position: ckpt.ResumeState, record: dict) -> Path:
    meta = CheckpointMeta(
        tool_version=__version__,
        step=position.step,
        val_loss=record.get("val_loss"),
        train_config=config,
        backbone=BackboneSpec(source=config.model.source, config=model.backbone.config.to_dict()),
        preprocessing=manifest.preprocessing,
        actions=manifest.actions,
        cameras=manifest.cameras,
        stats=manifest.stats,
        source_frame_sizes=manifest.source_frame_sizes,
        files={},
        data=data,
        action_levels=None if model.levels is None else model.levels.physical,
    )
    path = ckpt.save_checkpoint(run_dir, meta, model.adapter_state(), model.head_state(), optimizer.state_dict(),
                                scheduler.state_dict(), position)
    ckpt.prune(run_dir, config.log.keep_last, position.best_step)
    return path


class _Writers:
    """The main process's logs: JSONL of every logged step and TensorBoard scalars.

    A run resumed from step N drops what a killed process logged after N (those steps are run again), so
    each step is logged once, with the values of the steps the weights went through.
    """

    def __init__(self, run_dir: Path, config: TrainConfig, start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / CONFIG_FILE, config.model_dump_json(indent=2) + "\n")
        log = run_dir / LOG_FILE
        if start_step and log.exists():
            write_text_atomic(log, "".join(line + "\n" for line in log.read_text().splitlines()
                                           if _logged_step(line) <= start_step))
        self.jsonl = open(log, "a")  # noqa: SIM115 - closed in close()
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def log(self, step: int, epoch: int, record: dict[str, float | int]) -> None:
        line = {"step": step, "epoch": epoch, "time": datetime.now(UTC).isoformat(timespec="seconds")} | record
        self.jsonl.write(json.dumps(line) + "\n")
        self.jsonl.flush()
        for key, value in record.items():
            self.tensorboard.add_scalar(f"{'val' if key.startswith('val') else 'train'}/{key}", value, step)

    def close(self) -> None:
        self.jsonl.close()
        self.tensorboard.close()


def _logged_step(line: str) -> float:
    """The step of one log.jsonl line; infinity for a line a killed process left half-written."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
