"""The one place that names the objects inside a store. Every other module asks here; nothing outside
``vla_data.store`` spells a path inside a store.

```
dataset.zarr/                 a local folder, or a URL prefix on object storage (vla_data.store.location)
  vla-data-store.json         MARKER: schemas.store.StoreMarker, written before anything else: vla-data made it
  current.json                POINTER: schemas.store.StorePointer, written last: the version readers open
  writer.json                 LEASE: on object storage, the writer's lease while a build runs
  tags/<name>.json            schemas.history.TagRecord: a name for one version, create-only (tag_key)
  segments/<v000002-1f0c9a3e>/ frames and actions one build wrote (segment_prefix), never written again;
    zarr.json                 the zarr v3 group      referenced by every version holding its episodes
    data/<camera>             (n, S, S, 3) uint8 per camera, sharded (array_path)
    data/action               (n, A) float32
    segment.json              SEGMENT: schemas.segments.SegmentRecord, its episodes and every object's sha256; last
  versions/<v000002-1f0c9a3e>/ one version (version_prefix): small tables only, never written again once committed
    episodes.csv              EPISODES: the episode table (schemas.store.EpisodeRecord: each episode's segment and
                              first frame there), pandas.read_csv reads it
    build_log.json            BUILD_LOG: what each build added and left out
    history.json              HISTORY: schemas.history.History, the record of every version up to this one
    manifest.json             MANIFEST: schemas.store.StoreManifest, what the version holds, the sha256 of its objects
                              and of each segment's segment.json
```
A version of formats 1 and 2 holds its own arrays (``zarr.json``, ``data/``, ``meta/episode_ends``) and is read
as it is. A store built before versions holds one version's objects at its top, without a pointer
(SINGLE_LAYOUT_*).
"""

from __future__ import annotations

MARKER = "vla-data-store.json"
POINTER = "current.json"
LEASE = "writer.json"
VERSIONS = "versions"
MANIFEST = "manifest.json"
EPISODES = "episodes.csv"
BUILD_LOG = "build_log.json"
HISTORY = "history.json"
TAGS = "tags"
SEGMENTS = "segments"
SEGMENT = "segment.json"
DATA = "data"
EPISODE_ENDS = "meta/episode_ends"
SINGLE_LAYOUT_FOLDERS = (DATA, "meta")
SINGLE_LAYOUT_OBJECTS = ("zarr.json", EPISODES, BUILD_LOG, MANIFEST)  # the manifest last


def version_prefix(version: str) -> str:
    """Where version ``version``'s objects lie inside the store."""
    return f"{VERSIONS}/{version}"


def segment_prefix(segment: str) -> str:
    """Where segment ``segment``'s objects lie inside the store."""
    return f"{SEGMENTS}/{segment}"


def tag_key(name: str) -> str:
    return f"{TAGS}/{name}.json"


def array_path(name: str) -> str:
    """Where feature ``name``'s (N, *shape) array lives inside a version."""
    return f"{DATA}/{name}"


def split_array_location(location: str) -> tuple[str, str]:
    """A camera or action array's location (``STORE/versions/ID/data/NAME``, or ``STORE/data/NAME`` before
    versions) -> (STORE, the array's path inside its version)."""
    head, _, name = location.rpartition(f"/{DATA}/")
    store, _, version = head.rpartition(f"/{VERSIONS}/")
    return (store if store and version else head), array_path(name)
