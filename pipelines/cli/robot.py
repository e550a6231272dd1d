"""`vla-data view`, `serve` and `drive`: episodes shown in Rerun, a policy served to robots over a websocket, and
one recorded episode driven through a server as the robot would."""

from __future__ import annotations

import time
from pathlib import Path

import click
from tqdm import tqdm

from pipelines.cli.errors import fail, reported
from pipelines.cli.flags import SERVE_FLAGS, VIEW_FLAGS
from pipelines.ports import busy_port, viewer_ports
from pipelines.cli.options import (
    DEVICE_HELP,
    backbone_option,
    build_model,
    episode_path,
    model_flags,
    recorder_options,
    recorder_settings,
    replay_recorder_options,
    rrd_path,
)
from schemas.serve import ServeConfig
from schemas.view import ViewOptions


def _check_source(source: str) -> None:
    """A local SOURCE (or STORE@REF) that is not there is refused before anything heavy is imported."""
    from vla_data.sources.formats import source_exists
    from vla_data.store.history import parse_address

    where = parse_address(source).location
    if "://" not in where and not Path(where).exists() and not source_exists(source):
        fail(f"{source} does not exist: give a store, a folder of episodes, an HDF5 episode or a bag")


@click.command("view")
@click.argument("source", metavar="SOURCE")
@click.option("--episode", "episodes", multiple=True, metavar="ID|NAME",
              help=ViewOptions.model_fields["episodes"].description + " Repeatable.")
@model_flags(ViewOptions, VIEW_FLAGS)
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.rrd",
              callback=rrd_path, help="Write the recording to FILE.rrd (complete or not at all); `rerun FILE.rrd` opens it.")
@click.option("--serve", is_flag=True, help="Serve the recording on 127.0.0.1 with Rerun's web viewer (its page listens on every interface, "
              "the data only on 127.0.0.1) and print the URL; Ctrl-C stops it.")
@click.option("--web-port", type=click.IntRange(1, 65535), default=9090, show_default=True,
              help="--serve: the web viewer's port.")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=9876, show_default=True,
              help="--serve: the port on 127.0.0.1 that serves the recording to the viewer.")
@click.option("--run", "run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="RUN_OR_CHECKPOINT", help="Add what this policy predicts at every frame beside the recording.")
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
@recorder_options
def view_cmd(source: str, episodes: tuple[str, ...], save: Path | None, serve: bool, web_port: int, grpc_port: int,
             run: Path | None, device: str | None, model: str | None, **flags: object) -> None:
    """Look at episodes in Rerun: every camera, every action channel as a curve, frame by frame.

    SOURCE is a store (a folder or a URL), a folder of recorder episodes, one HDF5 episode, or a ROS 2 bag.
    On a `frame` timeline (and a `time` one where a bag stamps its frames) each episode shows each camera as
    the model sees it (after preprocessing, RGB) and, for raw sources, as recorded (its colour order
    applied: a red bottle is red); each action channel in physical units, named; the instruction and its
    source; scenario, split, frame count and (raw sources) validate's findings. With --run, each frame adds
    the predicted first action, its error against the recorded row t+offset, and the whole predicted chunk as
    a short curve into the future.

    Without --save or --serve a native viewer is started where there is a display.

    \b
    Examples:
      vla-data view dataset.zarr --split val --max-episodes 4 --save val.rrd
      vla-data view dataset.zarr --episode 3 --run runs/tiny --serve
      vla-data view data/raw/episode_20251106_123136_1box_hori_left_core_medium.h5
      vla-data view s3://fleet-data/datasets/v1.zarr --episode 12 --images raw --save e12.rrd
    """
    if save is not None and serve:
        raise click.UsageError("--save and --serve: choose one (open the saved file with `rerun FILE.rrd`)")
    view_flags = {k: flags.pop(k) for k in list(flags) if k in VIEW_FLAGS}
    options = build_model(ViewOptions, {k: v for k, v in view_flags.items() if v is not None}
                          | ({"episodes": list(episodes)} if episodes else {}), "view options")
    settings = recorder_settings(**flags)  # type: ignore[arg-type]
    _check_source(source)  # before torch and rerun load (seconds): a mistyped path is said at once
    if serve and (busy := busy_port(viewer_ports(web_port, grpc_port))):
        fail(busy)

    from pipelines.trained_data import trained_data_line
    from pipelines.view import Sink, ViewError, episodes_into, raw_views, record, resolve_source, store_views
    from vla_model.runtime import Policy

    sink = Sink(save=save, serve=serve, web_port=web_port, grpc_port=grpc_port)
    policy = None if run is None else Policy.from_checkpoint(run, device, model)
    found = resolve_source(source)
    if found.store is not None:
        views = store_views(found.store, options, policy)
        if policy is not None:
            click.echo(trained_data_line(policy.meta, found.store, options.split), err=True)
    else:
        if options.split is not None:
            raise ViewError(f"--split {options.split.value}: {source} holds recorder episodes, not a store")
        views = raw_views(found.episodes, settings, options, policy,
                          lambda line: click.echo(click.style(f"warning: {line}", fg="yellow"), err=True))
    with tqdm(desc="view", unit="episode", disable=None) as bar:
        n_episodes, n_frames = record(sink, Path(source.rstrip("/")).name, episodes_into(views, options, bar.update))
    logged = f"{n_episodes} episode(s), {n_frames} frames"
    if save is not None:
        click.echo(f"wrote {save} ({logged}); open it with `rerun {save}`")
    elif serve:
        click.echo(f"serving {logged}: open {sink.viewer_url()}  (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")
    else:
        click.echo(f"sent {logged} to the Rerun viewer")


@click.command("serve")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
@model_flags(ServeConfig, SERVE_FLAGS)
def serve_cmd(checkpoint: Path, device: str | None, model: str | None, **flags: object) -> None:
    """Serve a trained policy (a checkpoint, or a run: its latest) to robots over a websocket.

    The robot side is the torch-free client in client/ (pip install ./client): PolicyClient(url) sends
    hello, reset(instruction) and step(frames) and gets (K, A) chunks in physical units; msgpack with
    numpy arrays, raw uint8 frames or JPEG/PNG bytes. One PolicyRunner per connection: each step runs the
    backbone on the new frame only. Listens on 127.0.0.1 unless --host says otherwise; another host needs
    --token-file (the secret every robot sends) or --insecure. Ctrl-C stops it (exit 0).

    \b
    Examples:
      vla-data serve runs/k2 --device cuda --precision bf16
      vla-data serve runs/k2 --host 0.0.0.0 --port 8765 --token-file /etc/vla/token
    """
    import logging

    from pipelines.serve import load_token, run_server
    from vla_model.runtime import Policy

    config = build_model(ServeConfig, {k: v for k, v in flags.items() if v is not None} | {"device": device},
                         "serve options")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with reported(after_os_error=" (is the port in use? pick another with --port)"):
        token = load_token(config.token_file)
        policy = Policy.from_checkpoint(checkpoint, config.device, model, config.precision, config.compile,
                                        lambda line: click.echo(line, err=True))
        run_server(policy, config, token, lambda line: click.echo(line, err=True))


def local_policy(folder: Path) -> object:
    """An exported policy run here (``vla_client.local.LocalPolicy``); the onnx extra's packages are needed."""
    try:
        from vla_client.local import LocalPolicy
    except ImportError as exc:
        fail(f"running an exported policy needs onnxruntime and tokenizers ({exc}): pip install 'vla-data[onnx]'")
    return LocalPolicy(folder)


@click.command("drive")
@click.argument("episode", type=click.Path(path_type=Path), callback=episode_path)
@click.option("--url", default=None, help="The policy server to drive, e.g. ws://gpu-box:8765.")
@click.option("--serve", "checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Instead of --url: serve this checkpoint (or run) on 127.0.0.1 for the drive, over a real websocket.")
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path), default=None,
              help="Instead of a server: a folder `vla-data export` wrote, run here with onnxruntime (LocalPolicy).")
@click.option("--execution", default="ensemble", show_default=True,
              help="How chunks become commands: first, chunk:N, ensemble or async[:N].")
@click.option("--instruction", default=None, help="Use this instruction instead of the one found for the episode.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The shared secret, for a server started with --token-file.")
@click.option("--deadline", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Seconds a chunk's frame may be old before the command is zero velocity (the safety stop).")
@click.option("--snap", is_flag=True, help="Snap each command to the teleop levels (e.g. -1.15, 0, +1.15).")
@click.option("--rate", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Control ticks per second (0: as fast as the server answers).")
@click.option("--json", "as_json", is_flag=True, help="Print the report (every command, the latencies) as JSON.")
@replay_recorder_options
def drive_cmd(episode: Path, url: str | None, checkpoint: Path | None, policy_dir: Path | None, execution: str,
              instruction: str | None,
              token_file: Path | None, deadline: float, snap: bool, rate: float, as_json: bool,
              **recorder: object) -> None:
    """Drive one recorded episode (an HDF5 file, a ROS 2 bag, or BAG#k) through a policy server as the robot
    would: its client, its executor.

    Each frame is sent to the server (vla-data serve) with the robot-side client, the chunks become one
    command per tick by --execution, and the commands are compared with the recorded actions; the round
    trip and the server's time are reported. Checks a deployment end to end before the robot moves.

    \b
    Examples:
      vla-data drive ep.h5 --url ws://gpu-box:8765 --execution ensemble
      vla-data drive ep.h5 --serve runs/tiny --execution chunk:4 --json
      vla-data drive ep.h5 --policy policy/ --execution ensemble
    """
    from contextlib import nullcontext

    from pipelines.drive import drive_episode, render_drive

    if sum(x is not None for x in (url, checkpoint, policy_dir)) != 1:
        raise click.UsageError("give the server with --url ws://HOST:PORT, --serve CHECKPOINT to serve one here, or "
                               "--policy DIR to run an exported policy here")
    settings = recorder_settings(**recorder)  # type: ignore[arg-type]
    drive = {"execution": execution, "instruction": instruction, "deadline": deadline, "snap": snap, "rate": rate}
    if policy_dir is not None:
        report = drive_episode(local_policy(policy_dir), episode, settings, **drive)  # type: ignore[arg-type]
    else:
        from pipelines.serve import load_token, serving
        from vla_client.client import PolicyClient
        from vla_model.runtime import Policy

        token = load_token(str(token_file) if token_file else None)

        local = (serving(Policy.from_checkpoint(checkpoint), ServeConfig(port=0), token)
                 if checkpoint is not None else nullcontext())
        with local as server:
            report = drive_episode(PolicyClient(url or server.url, token=token), episode, settings,
                                   **drive)  # type: ignore[arg-type]
    for warning in report.warnings:
        click.echo(click.style(f"warning: {warning}", fg="yellow"), err=True)
    click.echo(report.model_dump_json(indent=2) if as_json else render_drive(report))
