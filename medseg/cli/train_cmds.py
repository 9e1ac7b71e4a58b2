"""``medseg train`` and ``medseg manifest``."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app
from medseg.cli.helpers import console


@app.command("train")
def train_cli(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/cxr_lung.yaml."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set optim.lr=3e-4 (repeatable)."),
    resume: str | None = typer.Option(None, "--resume", help="Run folder to continue (or 'auto': continue train.out_dir if it holds a run)."),
) -> None:
    """Fine-tune a U-Net. Exit codes: 0 done, 2 bad config/data, 75 pre-empted (state saved; resume)."""
    from medseg.config import load_config
    from medseg.training import train

    result = train(load_config(config, set_), resume=resume)
    best = "n/a" if result.best_metric is None else f"{result.best_metric:.4f}"
    console().print(f"{result.stop_reason}: {result.epochs} epochs, {result.steps} steps; best {result.monitor} {best}; "
               f"checkpoints in {result.run_dir / 'checkpoints'}")


@app.command("manifest")
def manifest_cli(
    folder: Path = typer.Argument(..., help="Data folder: images/ + masks/ (X-rays) or <case>/ct.nii.gz + label."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest to write (.csv or .json)."),
    image_glob: str | None = typer.Option(None, "--images", help="Glob of the images, e.g. 'images/*.png'."),
    label_glob: str | None = typer.Option(None, "--labels", help="Glob of each label with {stem}/{case}, e.g. 'masks/{stem}.png'."),
) -> None:
    """Pair images with their label maps and write a manifest (image,label,split,patient_id)."""
    from medseg.data.manifest import build_manifest

    entries = build_manifest(folder, out, image_glob=image_glob, label_glob=label_glob)
    patients = len({e.patient for e in entries})
    console().print(f"{len(entries)} image/label pairs ({patients} patients) written to {out}")
