"""The top-level Python API promised in the README."""

from __future__ import annotations

from pathlib import Path

import medseg


def test_lazy_api_names_resolve() -> None:
    for name in ("Image", "load_config", "read_image", "write_image", "build_model", "load_checkpoint",
                 "Predictor", "predict"):
        assert callable(getattr(medseg, name)), name


def test_medseg_train_is_the_function_even_after_importing_the_training_package(tmp_path: Path) -> None:
    import medseg.training as training_pkg  # the package has its own name: no module/function clash

    assert medseg.train is training_pkg.train
    cfg = medseg.load_config(None, ["data.manifest=" + str(tmp_path / "missing.csv")])
    try:
        medseg.train(cfg)
    except medseg.errors.ConfigError as e:  # the call reached train(): it checks the data path
        assert "missing.csv" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected a ConfigError for the missing manifest")
