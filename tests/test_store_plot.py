"""info --plot: the store overview PNG is valid, complete, reproducible, and written atomically."""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vla_data.build.job import build_store
from pipelines.figures import MissingGlyphs, save_png
from pipelines.store_plot import EPISODE_LENGTH, plot_store, sample_frames, store_figure
from schemas import RecorderSettings
from schemas.store import BuildOptions, Preprocessing, SplitConfig
from vla_data.store.reader import DatasetStore, open_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(clean_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DatasetStore:
    out = tmp_path_factory.mktemp("plot_store") / "dataset.zarr"
    options = BuildOptions(
        preprocessing=Preprocessing(image_size=16), splits=SplitConfig(val_ratio=0.25, test_ratio=0.125)
    )
    build_store([clean_dir], out, options, RecorderSettings())
    return open_store(out)


def test_plot_is_a_png_and_leaves_no_temporary_file(store: DatasetStore, tmp_path: Path, umask_022: int) -> None:
    out = tmp_path / "overview.png"
    assert plot_store(store, out) == out
    assert stat.S_IMODE(out.stat().st_mode) == umask_022
    assert out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == "PNG"
        width, height = img.size
    assert 600 <= width <= 4000 and 400 <= height <= 4000
    assert [p.name for p in tmp_path.iterdir()] == ["overview.png"]


def test_figure_has_a_panel_per_channel_lengths_and_frames(store: DatasetStore) -> None:
    names = store.manifest.actions.names
    table = store.episodes
    splits = [s for s in ("train", "val", "test") if s in set(table["split"])]
    assert len(splits) >= 2
    fig = store_figure(store, n_sample_frames=5, seed=1)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == len(names) + 1 + 5
    assert titles[: len(names) + 1] == [*names, EPISODE_LENGTH]
    for ax in fig.axes[: len(names) + 1]:
        assert len(ax.patches) == len(splits)  # one step histogram per split
        assert [t.get_text() for t in ax.get_legend().get_texts()] == splits
    samples = sample_frames(store, 5, seed=1)
    for ax, (episode, index) in zip(fig.axes[len(names) + 1 :], samples, strict=True):
        split = table.loc[table["episode"] == episode, "split"].item()
        assert ax.get_title().startswith(f"ep {episode} ({split})\n")
        assert np.array_equal(np.asarray(ax.images[0].get_array()), store.camera("rgb")[index])


def test_samples_are_reproducible_and_from_distinct_episodes(store: DatasetStore) -> None:
    n_episodes = len(store.episodes)
    first = sample_frames(store, 4, seed=7)
    assert first == sample_frames(store, 4, seed=7)
    assert first != sample_frames(store, 4, seed=8)
    assert len({e for e, _ in first}) == 4
    for episode, index in first:
        start, stop = store.episode_range(episode)
        assert start <= index < stop
    assert sorted(e for e, _ in sample_frames(store, 100)) == list(range(n_episodes))
    fig = store_figure(store, n_sample_frames=0)
    assert len(fig.axes) == len(store.manifest.actions.names) + 1


@pytest.mark.parametrize("name", ["overview.jpg", "overview", "overview.png.svg"])
def test_non_png_path_is_refused(store: DatasetStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"\.png"):
        plot_store(store, tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_failed_render_keeps_the_previous_file(
    store: DatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "overview.png"
    out.write_bytes(b"previous")

    def broken(self: object, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_store(store, out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["overview.png"]


def test_info_says_the_store_size_as_a_share_of_the_sources(store: DatasetStore) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main

    result = CliRunner().invoke(main, ["info", str(store.location)])
    assert result.exit_code == 0, result.output
    assert store.objects.path is not None  # the current version and the segments it reads: what info sizes
    roots = [store.objects.path, *(store.location.path / "segments" / s for s in store.manifest.segments)]
    store_mb = sum(p.stat().st_size for root in roots for p in root.rglob("*") if p.is_file()) / 1e6
    source_mb = sum(Path(p).stat().st_size for p in store.episodes["source_path"]) / 1e6
    line = next(line for line in result.output.splitlines() if line.startswith("size on disk"))
    assert line == f"size on disk: {store_mb:.1f} MB, {100 * store_mb / source_mb:.1f}% of the {source_mb:.1f} MB of sources"


def _installed_font_has(char: str) -> bool:
    """Whether a real installed font (not matplotlib's placeholder Last Resort) has a glyph for ``char``."""
    from matplotlib.font_manager import fontManager
    from matplotlib.ft2font import FT2Font

    return any(ord(char) in FT2Font(f.fname, face_index=f.index).get_charmap()
               for f in fontManager.ttflist if "LastResort" not in f.fname)


def test_korean_instructions_give_one_warning_naming_the_font_to_install(worded_store: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_store(open_store(worded_store), tmp_path / "overview.png", n_sample_frames=4)  # every episode's title
    messages = [str(w.message) for w in caught]
    if _installed_font_has("왼"):
        assert messages == []  # drawn with that font
    else:
        assert len(messages) == 1 and "fonts-noto-cjk" in messages[0] and "왼" in messages[0], messages
        assert caught[0].category is MissingGlyphs
    assert (tmp_path / "overview.png").read_bytes()[:8] == PNG_MAGIC


def test_text_a_default_font_lacks_is_drawn_with_an_installed_font_that_has_it(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    watch = "\N{WATCH}"  # in matplotlib's own STIX fonts, not in DejaVu Sans
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_title(f"wait {watch}")
    ax.set_xlabel("frame")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_png(fig, tmp_path / "f.png", dpi=50)
    assert [str(w.message) for w in caught] == []
    own, *fallbacks = ax.title.get_fontfamily()
    assert own == "sans-serif" and fallbacks
    assert any(ord(watch) in FT2Font(findfont(FontProperties(family=f))).get_charmap() for f in fallbacks)
    assert ax.xaxis.label.get_fontfamily() == ["sans-serif"]  # text the default font has keeps it alone
