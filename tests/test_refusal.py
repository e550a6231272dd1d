"""A refusal names its fix by setting; the CLI words the same fix as the flags that give it."""

from __future__ import annotations

from pipelines.cli.flags import as_flags, worded
from vla_data.common.refusal import Fix
from vla_data.store.reader import StoreError
from vla_data.store.writer_lock import StoreBusy


def test_the_python_api_names_settings_and_the_cli_names_flags() -> None:
    refused = StoreError("x.zarr keeps channels [0, 1]", Fix({"overwrite": True, "action_channels": "0,1,2"},
                                                              "to rebuild it"), Fix({"action_channels": "0,1"}))
    assert str(refused) == ("x.zarr keeps channels [0, 1]; set overwrite=True, action_channels=0,1,2 to rebuild it, "
                            "or set action_channels=0,1")
    assert worded(refused) == ("x.zarr keeps channels [0, 1]; pass --overwrite --action-channels 0,1,2 to rebuild it, "
                               "or pass --action-channels 0,1")
    assert worded(StoreError("plain")) == str(StoreError("plain")) == "plain"


def test_flags_that_turn_a_setting_off_or_leave_it_out() -> None:
    assert as_flags(Fix({"wait": True}, "to wait for it")) == "run without --no-wait to wait for it"
    assert as_flags(Fix({"wait": False})) == "pass --no-wait"
    assert as_flags(Fix({"split_file": False})) == "run without --split-file"
    assert as_flags(Fix({"data.window.chunk": "4", "model.resize_on_device": True})) == "pass --chunk 4 --resize-on-device"
    assert as_flags(Fix({"preprocessing.image_size": "56"})) == "pass --image-size 56"
    busy = StoreBusy("d.zarr is being written by pid 1", Fix({"wait": True}, "to wait for it"))
    assert worded(busy).endswith("; run without --no-wait to wait for it")
