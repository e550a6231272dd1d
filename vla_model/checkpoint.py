"""Checkpoints without pickle: safetensors for every tensor, JSON (pydantic) for everything else.

```
checkpoint-STEP/
  checkpoint.json          schemas.train.CheckpointMeta: config, backbone, preprocessing, names, stats, sha256s
  adapter.safetensors      the LoRA weights (by backbone parameter name)
  heads.safetensors        action query, feature norm, history head, chunk head
  resume/optimizer.safetensors, resume/rng.safetensors, resume/state.json   exact-resume state
```
A checkpoint is written into a temporary folder beside it and renamed into place, so a crash never leaves a
half-written ``checkpoint-STEP``; ``load_meta`` refuses one whose files are missing or altered.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from schemas.train import CHECKPOINT_FORMAT, READABLE_CHECKPOINTS, CheckpointMeta
from vla_data.common.files import atomic_path, write_text_atomic
from vla_data.common.refusal import Refusal

META = "checkpoint.json"
ADAPTER = "adapter.safetensors"
HEADS = "heads.safetensors"
OPTIMIZER = "resume/optimizer.safetensors"
RNG = "resume/rng.safetensors"
STATE = "resume/state.json"
PREFIX = "checkpoint-"


class CheckpointError(Refusal):
    """A checkpoint that cannot be used: missing, partial, altered or from another format."""


@dataclass
class ResumeState:
    """Where the loop stands after an optimiser step: everything besides tensors that the next step depends on."""

    step: int
    epoch: int
    batch_in_epoch: int
    best_val_loss: float | None
    best_step: int | None
    window_loss: float = 0.0  # the log window's loss sum and batches so far, so its next logged mean is the same
    window_batches: int = 0
    scaler: dict[str, Any] | None = None  # fp16's GradScaler state_dict (its scale grows over the run)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A torch optimizer state_dict split into tensors (for safetensors) and the rest (for JSON)."""
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        plain["state"][str(index)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def optimizer_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return out


def restore_rng(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, cached))
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    run_dir: Path,
    meta: CheckpointMeta,
    adapter: dict[str, torch.Tensor],
    heads: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    resume: ResumeState,
) -> Path:
    """Write ``checkpoint-STEP`` atomically (temporary folder, then rename); return its path."""
    final = run_dir / f"{PREFIX}{meta.step}"
    tmp = run_dir / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "resume").mkdir(parents=True)
    opt_tensors, opt_plain = optimizer_tensors(optimizer)
    for name, tensors in ((ADAPTER, adapter), (HEADS, heads), (OPTIMIZER, opt_tensors), (RNG, rng_tensors())):
        with atomic_path(tmp / name) as part:  # flushed, with the umask's permissions (safetensors alone: 0600)
            save_file(_contiguous(tensors), part)
    numpy_state = np.random.get_state()
    state = {
        "resume": resume.__dict__,
        "optimizer": opt_plain,
        "scheduler": scheduler,
        "rng": {
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *map(_plain, numpy_state[2:])],
            "python": list(random.getstate()),
        },
    }
    write_text_atomic(tmp / STATE, json.dumps(state))
    files = {name: _sha256(tmp / name) for name in (ADAPTER, HEADS, OPTIMIZER, RNG, STATE)}
    write_text_atomic(tmp / META, meta.model_copy(update={"files": files}).model_dump_json(indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def load_meta(path: Path) -> CheckpointMeta:
    """The metadata of a complete, unaltered checkpoint, or ``CheckpointError`` saying what is wrong."""
    if not (path / META).is_file():
        raise CheckpointError(f"{path}: not a checkpoint (no {META}); an interrupted save leaves none")
    try:
        raw = json.loads((path / META).read_text())
        version = raw.get("format_version") if isinstance(raw, dict) else None
        if version not in READABLE_CHECKPOINTS:
            raise CheckpointError(f"{path}: checkpoint format {version}, this vla-data reads formats "
                                  f"{', '.join(map(str, READABLE_CHECKPOINTS))} (writes {CHECKPOINT_FORMAT}); "
                                  "use the vla-data that trained it, or train it again with this one")
        meta = CheckpointMeta.model_validate(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path / META}: unreadable ({exc})") from exc
    missing = sorted({ADAPTER, HEADS} - set(meta.files))
    if missing:
        raise CheckpointError(f"{path}: {META} lists no {', '.join(missing)}; the checkpoint is partial")
    for name, digest in meta.files.items():
        if not (path / name).is_file():
            raise CheckpointError(f"{path}: {name} is missing; the checkpoint is partial")
        if _sha256(path / name) != digest:
            raise CheckpointError(f"{path}: {name} does not match its checksum; the checkpoint is damaged")
    return meta


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return load_file(path / ADAPTER), load_file(path / HEADS)


def load_resume(path: Path) -> tuple[dict[str, Any], dict[str, Any], ResumeState]:
    """Optimizer state_dict, scheduler state_dict and the loop position; restores the RNGs."""
    plain = json.loads((path / STATE).read_text())
    optimizer = optimizer_state(load_file(path / OPTIMIZER), plain["optimizer"])
    restore_rng(load_file(path / RNG), plain["rng"])
    return optimizer, plain["scheduler"], ResumeState(**plain["resume"])


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    found = [p for p in run_dir.glob(f"{PREFIX}*") if p.is_dir() and (p / META).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(PREFIX)))


def prune(run_dir: Path, keep_last: int, best_step: int | None) -> None:
    """Delete all but the last ``keep_last`` checkpoints and the best one."""
    kept = checkpoints(run_dir)
    for path in kept[:-keep_last]:
        if best_step is None or path.name != f"{PREFIX}{best_step}":
            shutil.rmtree(path)


class SkippedCheckpoint(UserWarning):
    """A run's newer checkpoint is incomplete or damaged, so an older one is used (the CLI prints one line)."""


def resolve(path: Path) -> Path:
    """A checkpoint folder, or a run folder (its latest complete checkpoint). A checkpoint named that is not
    complete is refused; a run's newer checkpoint that is not (a save or a copy stopped half-way) is skipped,
    with a ``SkippedCheckpoint`` warning naming it and why."""
    if (path / META).is_file():
        return path
    if path.is_dir() and re.fullmatch(rf"{PREFIX}\d+", path.name):
        raise CheckpointError(f"{path}: an incomplete checkpoint (no {META}: a save or a copy stopped half-way); "
                              f"name another checkpoint of {path.parent}, or the run folder for its latest complete one")
    steps = sorted((p for p in path.glob(f"{PREFIX}*") if p.is_dir() and re.fullmatch(rf"{PREFIX}\d+", p.name)),
                   key=lambda p: int(p.name.removeprefix(PREFIX))) if path.is_dir() else []
    skipped = []
    for candidate in reversed(steps):
        try:
            load_meta(candidate)
        except CheckpointError as exc:
            skipped.append(exc.message)
            continue
        for reason in skipped:
            warnings.warn(SkippedCheckpoint(f"skipped {reason}; using {candidate.name}"), stacklevel=2)
        return candidate
    if skipped:
        raise CheckpointError(f"{path}: no complete checkpoint ({'; '.join(skipped)})")
    raise CheckpointError(f"{path}: neither a checkpoint nor a run folder with one")
