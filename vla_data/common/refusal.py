"""Refusals that name their fix by setting, not by flag: the lower layers say *which setting* resolves a
refusal (a field of ``BuildOptions``, ``TrainConfig`` or ``RecorderSettings``, by its dotted path), and each
front end words it: the CLI as its flag (``pipelines.cli.flags``), the Python API as the setting itself. ``Fix``
and ``Refusal`` are defined in ``schemas.fixes``, beside validation findings, which carry fixes too.

```python
raise StoreError("dataset.zarr keeps channels [0, 1]", Fix({"overwrite": True}, "to change them"))
str(exc)              # 'dataset.zarr keeps channels [0, 1]; set overwrite=True to change them'
exc.worded(as_flag)   # 'dataset.zarr keeps channels [0, 1]; pass --overwrite to change them'
```
"""

from __future__ import annotations

from schemas.fixes import Fix, Refusal, as_setting

__all__ = ["Fix", "Refusal", "as_setting"]
