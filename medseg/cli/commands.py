"""Imports every command module so its commands register on the app (one line per module)."""

from medseg.cli import io_cmds  # noqa: F401
from medseg.cli import predict_cmds  # noqa: F401
from medseg.cli import labelling_cmds  # noqa: F401
from medseg.cli import detect_cmds  # noqa: F401
from medseg.cli import train_cmds  # noqa: F401
from medseg.cli import autolabel_cmds  # noqa: F401
