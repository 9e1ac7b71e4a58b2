"""Imports every command module so its commands register on the app."""

from medseg.cli import io_cmds  # noqa: F401
