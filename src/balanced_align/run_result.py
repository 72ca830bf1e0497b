"""``results.json``: what one training run leaves behind, written by the training job and read
by the report through the one :class:`RunResult` schema.

The file is a JSON object::

    {"schema_version": 2, "run": "tps@fmap λ=3.0 seed=0", "method": "tps",
     "tps_grid_size": 8, "location": "fmap", "lambda": 3.0, "seed": 0,
     "val": {"rank1": 0.51, "anme": null, …}, "val_best": {…}, "test": {…},
     "tested": "best_checkpoint" | "last" | null,
     "best_checkpoint": ".../checkpoints/best-epoch05.ckpt" | null,
     "epochs": 6, "global_step": 240, "wall_time_s": 246.1,
     "config": {"loss.lambda": 3.0, …}, "results_path": ".../results.json"}

Three sets of metrics, from two points in time:

- ``val``: the *last* validation of the run (the final weights);
- ``val_best``: the validation of the weights in ``best_checkpoint`` (empty without one);
- ``test``: the test of the weights named by ``tested``: ``best_checkpoint``'s, or ``last``
  (the final weights, when no best checkpoint was kept); null when nothing was tested.

So ``val_best`` and ``test`` describe the same weights. Metrics are numbers or null (NaN and
±inf are written as null). ``config`` is the run's flat config (``{"loss.lambda": 3.0, …}``).
Older files are read too: version 1 had no ``val_best`` and ``tested`` (read as empty / null);
files without ``schema_version`` were written before this schema existed (version 0): only
method, location, lambda and seed are required there (each also found in ``config``), the rest
takes defaults.

:meth:`RunResult.to_json` writes atomically (a temporary file in the same directory, then
``os.replace``): a reader sees the old file or the whole new one, never a truncated one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the version :meth:`RunResult.to_json` writes and the newest :meth:`RunResult.from_json` reads
SCHEMA_VERSION = 2
#: the file name of a run's result inside its output directory
RESULTS_FILE = "results.json"
#: version-0 keys that may be taken from the flat config
_CONFIG_KEYS = {
    "method": "align.method",
    "location": "align.location",
    "lambda": "loss.lambda",
    "seed": "seed",
    "tps_grid_size": "align.tps_grid_size",
}
#: keys that a file of version >= 1 must hold but may set to null
_NULLABLE = {
    "tested",
    "tps_grid_size",
    "best_checkpoint",
    "epochs",
    "global_step",
    "wall_time_s",
    "results_path",
}


#: keys added by version 2 (absent from version-1 files)
_SINCE_VERSION_2 = ("val_best", "tested")
#: what ``tested`` may say: whose weights the test metrics are of
TESTED = ("best_checkpoint", "last")


class RunResultError(ValueError):
    """A results.json that cannot be read as a :class:`RunResult`; the message names it."""


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in its directory and
    ``os.replace``: readers (and a kill mid-write) never see a partial file."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _finite_metrics(metrics: dict) -> dict[str, float | None]:
    return {k: None if v is None else _finite_or_none(v) for k, v in metrics.items()}


@dataclass
class RunResult:
    """One training run's outcome (see the module docstring for the file).

    ``lambda_`` is the JSON key ``lambda`` (a Python keyword).
    """

    method: str
    location: str
    lambda_: float
    seed: int
    val: dict[str, float | None] = field(default_factory=dict)
    test: dict[str, float | None] = field(default_factory=dict)
    val_best: dict[str, float | None] = field(default_factory=dict)
    tested: str | None = None
    run: str = ""
    tps_grid_size: int | None = None
    best_checkpoint: str | None = None
    epochs: int | None = None
    global_step: int | None = None
    wall_time_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    results_path: str | None = None
    schema_version: int = SCHEMA_VERSION

    # -- writing ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON object (non-finite metrics as None), keys in the file's order."""
        return {
            "schema_version": self.schema_version,
            "run": self.run,
            "method": self.method,
            "tps_grid_size": self.tps_grid_size,
            "location": self.location,
            "lambda": self.lambda_,
            "seed": self.seed,
            "val": _finite_metrics(self.val),
            "val_best": _finite_metrics(self.val_best),
            "test": _finite_metrics(self.test),
            "tested": self.tested,
            "best_checkpoint": self.best_checkpoint,
            "epochs": self.epochs,
            "global_step": self.global_step,
            "wall_time_s": self.wall_time_s,
            "config": self.config,
            "results_path": self.results_path,
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write ``path`` atomically (see :func:`atomic_write_text`); returns it.

        Config values JSON cannot hold are written as their text.
        """
        text = json.dumps(self.to_dict(), indent=2, default=str)
        return atomic_write_text(path, text)

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls, path: str | os.PathLike) -> RunResult:
        """Read and check ``path``; :class:`RunResultError` names the file and the problem
        (unreadable, not JSON, e.g. a truncated file, a missing or mistyped key, a newer
        schema)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise RunResultError(f"{path}: cannot be read ({err})") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise RunResultError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "results.json") -> RunResult:
        """Check a loaded JSON object (``source`` names it in errors)."""
        if not isinstance(data, dict):
            raise RunResultError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise RunResultError(f"{source}: schema_version must be an integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise RunResultError(
                f"{source}: schema_version {version} is newer than this balanced-align reads "
                f"({SCHEMA_VERSION}); update balanced-align"
            )
        config = data.get("config", {})
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise RunResultError(f"{source}: 'config' must be a JSON object of flat keys")
        values = dict(data)
        if version == 0:  # before RunResult: keys may live in the flat config only
            for key, flat in _CONFIG_KEYS.items():
                if values.get(key) is None and config.get(flat) is not None:
                    values[key] = config[flat]
            required = ("method", "location", "lambda", "seed")
        else:
            unknown = sorted(set(values) - set(cls._json_keys()))
            if unknown:
                raise RunResultError(f"{source}: unknown key(s) {unknown}")
            required = cls._json_keys()
            if version == 1:  # before val_best and tested
                required = tuple(k for k in required if k not in _SINCE_VERSION_2)
        missing = [k for k in required if values.get(k) is None and k not in _NULLABLE]
        missing += [k for k in required if k in _NULLABLE and k not in values]
        if missing:
            raise RunResultError(
                f"{source}: missing key(s) {missing} (expected a training results.json)"
            )
        return cls(
            method=_typed(values, "method", str, source),
            location=_typed(values, "location", str, source),
            lambda_=float(_typed(values, "lambda", (int, float), source)),
            seed=int(_typed(values, "seed", int, source)),
            val=_metrics(values, "val", source),
            test=_metrics(values, "test", source),
            val_best=_metrics(values, "val_best", source),
            tested=_tested(values, source),
            run=_typed(values, "run", str, source) or "",
            tps_grid_size=_typed(values, "tps_grid_size", int, source),
            best_checkpoint=_typed(values, "best_checkpoint", str, source),
            epochs=_typed(values, "epochs", int, source),
            global_step=_typed(values, "global_step", int, source),
            wall_time_s=_typed(values, "wall_time_s", (int, float), source),
            config=config,
            results_path=_typed(values, "results_path", str, source),
            schema_version=version,
        )

    @staticmethod
    def _json_keys() -> tuple[str, ...]:
        return (
            "schema_version",
            "run",
            "method",
            "tps_grid_size",
            "location",
            "lambda",
            "seed",
            "val",
            "val_best",
            "test",
            "tested",
            "best_checkpoint",
            "epochs",
            "global_step",
            "wall_time_s",
            "config",
            "results_path",
        )


def _typed(values: dict, key: str, kinds, source):
    """``values[key]`` (None when null or absent) checked against ``kinds``; bool is never a
    number."""
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__ for k in kinds)
        raise RunResultError(f"{source}: '{key}' must be {names}, got {value!r}")
    return value


def _metrics(values: dict, stage: str, source) -> dict[str, float | None]:
    """``values[stage]``: a JSON object of metric name → number or null."""
    metrics = values.get(stage)
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise RunResultError(f"{source}: '{stage}' must be a dict of metrics")
    checked = {}
    for name, value in metrics.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RunResultError(f"{source}: {stage} metric {name!r} must be a number or null")
        checked[name] = None if value is None else float(value)
    return checked


def _tested(values: dict, source) -> str | None:
    tested = _typed(values, "tested", str, source)
    if tested is not None and tested not in TESTED:
        raise RunResultError(f"{source}: 'tested' must be one of {list(TESTED)}, got {tested!r}")
    return tested
