"""`vla-data train`, `eval` and `predict`: a policy fine-tuned on a store, scored on a split, and replayed on one
recorded episode as a robot loop would."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from pipelines.cli.flags import EVAL_FLAGS, TRAIN_FLAGS
from pipelines.cli.options import (
    DEVICE_HELP,
    backbone_option,
    build_model,
    episode_path,
    load_settings_file,
    model_flags,
    recorder_settings,
    replay_recorder_options,
    rrd_path,
)
from schemas.evaluation import EvalOptions
from schemas.train import CONFIG_FILE, Precision, TrainConfig


def assemble_config(config_file: Path | None, given: dict[str, Any]) -> TrainConfig:
    """``--config`` file values, overridden by the flags actually given (each sets the TrainConfig field
    ``TRAIN_FLAGS`` maps it onto), validated as one TrainConfig; unset fields take the model's defaults."""
    values = load_settings_file(config_file)
    for flag, value in given.items():
        node = values
        *parents, leaf = TRAIN_FLAGS[flag]
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{'.'.join(parents)} in {config_file} must be a mapping")
        node[leaf] = str(value) if isinstance(value, Path) else value
    return build_model(TrainConfig, values, "train config")


@click.command("train")
@click.argument("store", required=False, metavar="[STORE]")
@click.option("-o", "--out", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The run folder: config, logs, TensorBoard, checkpoint-STEP/.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML or JSON TrainConfig (data/model/optim/log sections); flags override it.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue this run exactly from its latest checkpoint (its saved config; only --max-steps may change).")
@model_flags(TrainConfig, {flag: path for flag, path in TRAIN_FLAGS.items() if flag != "store"})
def train_cmd(store: str | None, run_dir: Path | None, config_file: Path | None, resume_dir: Path | None,
              **flags: object) -> None:
    """Fine-tune the Kosmos-2 + LoRA policy on a store's train split, validating on its val split.

    Every setting is a field of one config (saved as RUN/train_config.json): flags, a --config file, or
    both. Before the first step a preflight on a real batch refuses a run that cannot learn (no
    trainable parameters, no gradient, all-padding targets, shape or action-dimension mismatches).
    The same command runs on several GPUs or nodes under `accelerate launch` or `torchrun`.
    --model tiny-random builds a small random Kosmos-2 in code (tests, demo); a hub id must already be
    in the local Hugging Face cache, or pass a local directory: nothing is downloaded.

    \b
    Examples:
      vla-data train dataset.zarr -o runs/tiny --model tiny-random --max-steps 200
      vla-data train dataset.zarr -o runs/k2 --model microsoft/kosmos-2-patch14-224 --precision bf16 \\
          --window 4 --batch-size 1 --accumulation 8 --gradient-checkpointing
      torchrun --nproc_per_node 4 -m pipelines.cli train dataset.zarr -o runs/k2 --config train.yaml
      vla-data train --resume runs/k2 --max-steps 4000
    """
    from vla_data.store.reader import open_store

    ctx = click.get_current_context()
    given = {k: v for k, v in flags.items() if v is not None and ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    if resume_dir is not None:
        extra = sorted(set(given) - {"max_steps"}) + (["STORE"] if store else []) + (["--config"] if config_file else [])
        if extra or (run_dir is not None and run_dir != resume_dir):
            raise click.UsageError(f"a resumed run keeps its config; only --max-steps may change (got {extra or '--out'})")
        if not (resume_dir / CONFIG_FILE).is_file():
            raise click.UsageError(f"{resume_dir} holds no {CONFIG_FILE}; is it a run folder?")
        config = assemble_config(resume_dir / CONFIG_FILE, given)
        run_dir = resume_dir
    else:
        if run_dir is None:
            raise click.UsageError("give the run folder with -o/--out (or --resume RUN)")
        if (run_dir / CONFIG_FILE).exists():
            raise click.UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another -o")
        if store is not None:
            given["store"] = store
        config = assemble_config(config_file, given)
    open_store(config.data.store)  # a wrong path, bucket or credentials is said before torch loads (seconds)
    from vla_model.trainer import train

    summary = train(config, run_dir, resume=resume_dir is not None)
    if summary.processes == 1 or int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"trained {summary.steps} steps on {summary.device} x{summary.processes}; best val loss "
                   f"{summary.best_val_loss} at step {summary.best_step}; checkpoint {summary.last_checkpoint}")


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("store", metavar="STORE")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.json, per_episode.csv and the PNGs (created; files in it are replaced).")
@model_flags(EvalOptions, EVAL_FLAGS)
@click.option("--rrd", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.rrd",
              callback=rrd_path,
              help="Also write the worst episodes (first-action MAE) with the predictions as a Rerun recording "
              "(as `vla-data view --run` shows them).")
@click.option("--rrd-episodes", type=click.IntRange(1), default=5, show_default=True,
              help="--rrd: how many of the worst episodes.")
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
def eval_cmd(checkpoint: Path, store: str, out: Path, rrd: Path | None, rrd_episodes: int, device: str | None,
             model: str | None, **flags: object) -> None:
    """Score a trained policy on every anchor of a store split, beside three baselines.

    CHECKPOINT is a checkpoint folder or a run folder (its latest checkpoint). All figures are in physical
    units and count only real actions (never the padding past an episode's end): per-channel MAE, MSE,
    RMSE and direction accuracy (sign agreement, values inside --dead-band count as 0), and success@tol
    (every channel within --tolerance). Each is given for the first action of each chunk (what the robot
    executes next) and for the whole chunk, beside the same figure for predicting the train split's mean
    action, its most common action (a teleop recorder's most held key) and standing still; then per scenario. The checkpoint must fit the store: same
    preprocessing and action channels (refused otherwise, saying which differ).

    \b
    Writes OUT/metrics.json (schemas.evaluation.EvalReport), OUT/per_episode.csv,
    OUT/trajectories.png, OUT/errors.png, OUT/scenarios.png, and prints the table.

    \b
    Example:
      vla-data eval runs/tiny dataset.zarr --split val -o runs/tiny/eval
      vla-data eval runs/k2 dataset.zarr -o eval --model /data/models/kosmos-2   # the backbone moved
      vla-data eval runs/tiny dataset.zarr -o eval --rrd eval/worst.rrd   # the 5 worst episodes, in Rerun
    """
    from pipelines.evaluate import evaluate_checkpoint, render_report, write_outputs

    options = build_model(EvalOptions, {k: v for k, v in flags.items() if v is not None}, "eval options")
    report, results = evaluate_checkpoint(checkpoint, store, options, device, model=model)
    written = write_outputs(report, results, out)
    if rrd is not None:
        from pipelines.view import record_worst
        from vla_model.runtime import Policy
        from vla_data.store.reader import open_store

        record_worst(results, open_store(store), Policy.from_checkpoint(checkpoint, device, model), rrd,
                     rrd_episodes)
        written.append(rrd)
    click.echo(render_report(report))
    click.echo(f"\nwrote {', '.join(str(p) for p in written)}")


@click.command("predict")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("episode", type=click.Path(path_type=Path), callback=episode_path)
@click.option("--json", "as_json", is_flag=True, help="Print every frame's whole chunk and recorded action as JSON.")
@click.option("--instruction", default=None, help="Use this instruction instead of the one found for the episode.")
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default=None,
              help="The backbone's precision: fp32, bf16, or fp16 on CUDA [default: fp32].")
@click.option("--compile", is_flag=True, default=None, help="Compile the backbone with CUDA graphs (CUDA only; else eager).")
@replay_recorder_options
def predict_cmd(checkpoint: Path, episode: Path, as_json: bool, instruction: str | None, device: str | None,
                model: str | None, precision: str | None, compile: bool | None, **recorder: object) -> None:
    """Replay one recorded episode (an HDF5 file, a ROS 2 bag, or BAG#k of a cut bag) through the policy, one
    frame at a time, as a robot loop would.

    A PolicyRunner (vla_model.PolicyRunner) is reset with the episode's instruction and stepped with each
    raw frame; per frame it prints the predicted first action beside the action recorded after that
    frame (row t + action offset), then the first-action MAE. Episodes shorter than the window work: the
    first frame stands in for the frames before it, as in training. Frames are read in --color-order (or
    the --recorder-config's) when given, else in the checkpoint's source colour order, then made RGB.

    \b
    Examples:
      vla-data predict runs/tiny episodes/1box_hori_left_core_medium_0001.h5
      vla-data predict runs/tiny/checkpoint-300 ep.h5 --json > ep_predictions.json
      vla-data predict runs/tiny bags/episode_20251106_123136_1box_hori_left_core_medium
      vla-data predict runs/tiny bags/shift_0930#3 --cut gap   # the 3rd episode of a bag cut at pauses
    """
    from pipelines.predict import predict_episode, render_predictions
    from vla_model.runtime import Policy

    settings = recorder_settings(**recorder)  # type: ignore[arg-type]
    policy = Policy.from_checkpoint(checkpoint, device, model, precision or "fp32", bool(compile),
                                    lambda line: click.echo(line, err=True))
    report = predict_episode(policy, episode, settings, instruction, progress=not as_json)
    for warning in report.warnings:
        click.echo(click.style(f"warning: {warning}", fg="yellow"), err=True)
    click.echo(report.model_dump_json(indent=2) if as_json else render_predictions(report))
