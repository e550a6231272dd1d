"""How the CLI words a refusal's fix: each setting a lower layer names (``vla_data.common.refusal.Fix``) as the flag
that sets it. Build settings are ``BuildOptions`` fields, train settings ``TrainConfig`` paths (``FLAGS``)."""

from __future__ import annotations

from pipelines.train import FLAGS as TRAIN_FLAGS
from vla_data.common.refusal import Fix, Refusal

# setting path -> flag, where the flag is not the setting's own name with dashes
FLAG_OF: dict[str, str] = {
    "preprocessing.image_size": "--image-size",
    "mirror.negate_channels": "--negate-channels",  # inspect-sample's; train's is data.mirror.negate_channels
    **{".".join(path): "--" + flag.replace("_", "-") for flag, path in TRAIN_FLAGS.items()},
}
TURNED_OFF_BY = {"wait": "--no-wait"}  # settings on by default, whose flag turns them off


def flag_of(setting: str) -> str:
    return FLAG_OF.get(setting, "--" + setting.rsplit(".", 1)[-1].replace("_", "-"))


def as_flags(fix: Fix) -> str:
    """``pass --overwrite --action-channels 0,1,2 to ...``; ``run without --no-wait to ...``."""
    give, leave = [], []
    for name, value in fix.settings.items():
        if name in TURNED_OFF_BY:
            (leave if value is True else give).append(TURNED_OFF_BY[name])
        elif value is True:
            give.append(flag_of(name))
        elif value is False:
            leave.append(flag_of(name))
        else:
            give.append(f"{flag_of(name)} {value}")
    words = " and ".join(part for part in (f"pass {' '.join(give)}" if give else "",
                                           f"run without {', '.join(leave)}" if leave else "") if part)
    return f"{words}{' ' + fix.effect if fix.effect else ''}"


def worded(problem: Exception | str) -> str:
    """A refusal with its fixes as flags; anything else as it says itself."""
    return problem.worded(as_flags) if isinstance(problem, Refusal) else str(problem)
