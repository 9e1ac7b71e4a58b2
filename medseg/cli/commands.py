"""Imports every command module so its commands register on the app (one line per module)."""

from medseg.cli import (
    annotation_cmds,  # noqa: F401
    autolabel_cmds,  # noqa: F401
    detect_cmds,  # noqa: F401
    io_cmds,  # noqa: F401
    labelling_cmds,  # noqa: F401
    predict_cmds,  # noqa: F401
    train_cmds,  # noqa: F401
    workflow_cmds,  # noqa: F401
)
