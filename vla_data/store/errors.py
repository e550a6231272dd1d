"""The refusal every store reader and writer raises."""

from __future__ import annotations

from vla_data.common.refusal import Refusal


class StoreError(Refusal):
    """A store that cannot be used as it is; the message says why and what to do."""
