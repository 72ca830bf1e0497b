"""The training job behind ``train.py``: validate, seed, instantiate, fit, test, report.

Hydra is used only here and in the entry point; everything it builds comes from ``_target_``
configs or plain values.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from balanced_align.checkpoints import module_from_checkpoint, read_checkpoint
from balanced_align.config_schema import ModuleConfig
from balanced_align.config_tree import print_config_tree
from balanced_align.data.source_kinds import require_options
from balanced_align.data.transforms import JitterConfig
from balanced_align.data.validation import BAD_SAMPLE_POLICIES
from balanced_align.input_errors import InputError, report
from balanced_align.loggers import build_loggers, log_config, log_final
from balanced_align.models import LANDMARK_METHODS
from balanced_align.models.safe_load import check_file
from balanced_align.module import BalancedAlignModule
from balanced_align.quiet import silence_known_noise
from balanced_align.run_result import RESULTS_FILE, RunResult, RunResultError

log = logging.getLogger(__name__)

#: exit status of a job stopped by SIGTERM (128 + 15, as a shell reports it)
SIGTERM_STATUS = 143

#: metrics shown in the summary table, in this order (when present)
SUMMARY_METRICS = ("rank1", "verif_acc", "anme", "cmc@5", "verif_auc")


def plain(cfg: DictConfig | None) -> dict:
    """Plain values (closed choices as their strings) of a composed config node."""
    return {} if cfg is None else OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"loss": {"lambda": 3}} -> {"loss.lambda": 3} (lists and scalars are leaves)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def validate(cfg: DictConfig) -> ModuleConfig:
    """:func:`check_config`, whose ValueErrors (each naming a config key) become
    :class:`~balanced_align.input_errors.InputError`: one line in a single run."""
    try:
        return check_config(cfg)
    except InputError:
        raise
    except ValueError as error:
        raise InputError(str(error)) from None


def check_config(cfg: DictConfig) -> ModuleConfig:
    """Check the config before anything heavy runs; errors name the offending key.

    Composition (``train_schema``, :mod:`balanced_align.config_store`) has typed the groups
    already; this runs the same checks as the module (:func:`~balanced_align.config_schema.
    validate_config`, on a config composed without the schema too), refuses keys added with
    ``+``, and checks what spans groups.
    """
    for group in ("model", "align", "loss", "optim", "data", "trainer"):
        if group not in cfg:
            raise ValueError(f"config group '{group}' is missing")
    groups = {group: plain(cfg[group]) for group in ("model", "align", "loss", "optim")}
    config = ModuleConfig.from_mappings(**groups)
    data_batch = cfg.data.get("batch_size")
    if data_batch is not None and config.optim.batch_size != data_batch:
        raise ValueError(
            f"optim.batch_size={config.optim.batch_size} must equal data.batch_size="
            f"{data_batch}: the learning rate is scaled by the per-device batch × devices × "
            "accumulation (conf/optim sets optim.batch_size: ${data.batch_size})"
        )
    if not isinstance(cfg.get("seed"), int):
        raise ValueError(f"seed must be an integer, got {cfg.get('seed')!r}")
    _validate_trainer_and_data(cfg)
    if cfg.model.get("pretrained"):  # read when the module is built, after the data
        check_file(cfg.model.pretrained, "model.pretrained")
    return config


def _validate_trainer_and_data(cfg: DictConfig) -> None:
    """Values that Lightning or a data source would accept and then train nothing with."""
    max_epochs = cfg.trainer.get("max_epochs")
    max_steps = cfg.trainer.get("max_steps")
    for key, value in (("max_epochs", max_epochs), ("max_steps", max_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"trainer.{key} must be an integer, got {value!r}")
        if value is not None and value != -1 and value < 1:
            raise ValueError(
                f"trainer.{key} must be >= 1 (or -1: no limit), got {value}: nothing would train"
            )
    policy = cfg.data.get("on_bad_sample")
    if policy is not None and policy not in BAD_SAMPLE_POLICIES:
        raise ValueError(
            f"data.on_bad_sample must be one of {list(BAD_SAMPLE_POLICIES)}, got {policy!r}"
        )
    if str(cfg.data.get("_target_", "")).endswith(".FaceDataModule"):
        _validate_data_keys(cfg.data)


def _validate_data_keys(data: DictConfig) -> None:
    """The data module's keys are its loader options; a source's options live under
    ``data.source`` (a flat ``+data.root=…`` fails here, naming today's key)."""
    cls = get_class(data._target_)
    options = set(inspect.signature(cls).parameters)
    for name in data:
        if not str(name).startswith("_") and name not in options:
            raise ValueError(
                f"data.{name}: not an option of {cls.__name__}; a source's options are under "
                f"data.source (data.source.{name})"
            )
    _validate_source_keys(data.get("source"), "data.source")
    if isinstance(data.get("jitter"), DictConfig):
        require_options(JitterConfig, data.jitter, "data.jitter")


def _validate_source_keys(node, key: str) -> None:
    """Each key of ``node`` (a ``_target_`` node) is an option of its class, recursively: a
    misspelt source option (``+data.source.rooot=…``) fails here, naming it."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ValueError(
            f"{key} is missing or has no _target_: a conf/data file names its source kind "
            "there (e.g. data.source.root, not data.root)"
        )
    cls = get_class(node._target_)
    if not dataclasses.is_dataclass(cls):
        return
    require_options(cls, [name for name in node if not str(name).startswith("_")], key)
    for name in node:
        child = node._get_node(name)
        if isinstance(child, DictConfig) and "_target_" in child:
            _validate_source_keys(child, f"{key}.{name}")


def needs_landmarks(cfg: DictConfig) -> str | None:
    """Why this run needs landmarks (None if it does not)."""
    if cfg.loss["lambda"] > 0:
        return f"loss.lambda={float(cfg.loss['lambda'])} > 0 (the alignment loss)"
    if cfg.align.method in LANDMARK_METHODS:
        return f"align.method={cfg.align.method} (aligns each image by its landmarks)"
    return None


def _callbacks(cfg: DictConfig) -> list:
    return [
        instantiate(conf)
        for conf in (cfg.get("callbacks") or {}).values()
        if conf is not None and "_target_" in conf
    ]


def _own_best_checkpoint(trainer: L.Trainer) -> Path | None:
    """The best checkpoint of the monitored ``ModelCheckpoint``, if it lies inside that
    callback's own ``dirpath`` (this run's ``checkpoints/``); else None.

    The path comes from the checkpoint state, which a resumed ``ckpt_path`` restores: a file
    anywhere else (another run's, or one an attacker named) is never opened; a warning names
    it and the in-memory model is tested instead.
    """
    callback = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = getattr(callback, "best_model_path", "") or None
    if best is None:
        return None
    path = Path(best).resolve()
    folder = Path(callback.dirpath).resolve() if callback.dirpath else None
    if folder is None or folder not in path.parents or not path.is_file():
        log.warning(
            "best checkpoint %r (from the checkpoint state) is not a file in this run's "
            "checkpoint folder %s; testing the model in memory instead",
            best,
            folder,
        )
        return None
    return path


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _print_summary(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"balanced-align: {results['run']}")
    table.add_column("metric")
    stages = [s for s in ("val", "val_best", "test") if results.get(s)]
    for stage in stages:
        table.add_column(stage, justify="right")
    names = list(SUMMARY_METRICS) + sorted(
        {k for s in stages for k in results.get(s, {})} - set(SUMMARY_METRICS)
    )
    for name in names:
        cells = []
        for stage in stages:
            value = results.get(stage, {}).get(name)
            cells.append("-" if value is None else f"{value:.4f}")
        if any(c != "-" for c in cells):
            table.add_row(name, *cells)
    Console().print(table)
    if results.get("tested"):
        print(f"val: the last validation; val_best, test: the {results['tested']} weights")


@rank_zero_only
def _print_config(cfg: DictConfig, output_dir: Path) -> None:
    """The config tree, printed and saved by global rank 0 only: under ``ddp`` every rank runs
    the job, in the same run dir."""
    print_config_tree(cfg, output_dir)


def _print_paths(result: RunResult, output_dir: Path) -> None:
    """Where the run's files are (rank 0, at the end)."""
    lines = [f"wall time {result.wall_time_s:.1f} s", f"results      {result.results_path}"]
    for label, path in (
        ("best ckpt   ", result.best_checkpoint),
        ("checkpoints ", output_dir / "checkpoints"),
        ("figures     ", output_dir / "figures"),
        ("config tree ", output_dir / "config_tree.log"),
        ("log         ", output_dir / "train.log"),
    ):
        if path is not None and Path(path).exists():
            lines.append(f"{label} {path}")
    print("\n".join(lines))


def run(cfg: DictConfig) -> float | None:
    """Train, test the best checkpoint, write ``results.json``; return ``optimized_metric``.

    A failure is logged with its traceback before it propagates: Hydra's multirun finishes
    the other jobs of a sweep first and only then raises the first failure. A SIGTERM
    (Lightning stops at the next batch with a ``SystemExit`` of status 0) exits with status
    143 instead, so a stopped job never looks like a finished one.
    """
    try:
        return _run(cfg)
    except SIGTERMException:
        log.error(
            "the job was stopped by SIGTERM; resume it with ckpt_path=%s",
            Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
        )
        raise SystemExit(SIGTERM_STATUS) from None
    except Exception as error:
        report(error, log)  # an input error in a single run: one line, exit status 1
        raise


def _run(cfg: DictConfig) -> float | None:
    start = time.perf_counter()
    config = validate(cfg)
    silence_known_noise()
    if cfg.get("dry_run"):  # build and measure on the CPU, no data, no training
        _dry_run(cfg, config)
        return None
    # Denormal floats (tiny gradients late in backward) slow CPU kernels by up to 10×.
    torch.set_flush_denormal(True)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results_path = output_dir / RESULTS_FILE
    if cfg.get("resume_sweep"):
        done = completed_result(results_path, flatten(plain(cfg)))
        if done is not None:
            log.info("resume_sweep: %s is complete; this job is skipped", results_path)
            return _optimized_metric(cfg, done.val_best or done.val, done.test)
    if cfg.get("print_config", True):  # a job that runs: its config, also in the run dir
        _print_config(cfg, output_dir)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    reason = needs_landmarks(cfg)
    if reason is not None and not datamodule.has_landmarks:
        raise ValueError(
            f"data source {(cfg.data.get('source') or cfg.data)._target_} has no landmarks, "
            f"but {reason} needs them"
        )
    template_init = None
    if cfg.align.method != "none" and datamodule.has_landmarks:
        template_init = torch.as_tensor(datamodule.mean_frontal_landmarks()).tolist()

    model = BalancedAlignModule(
        num_classes=datamodule.num_classes,
        model=plain(cfg.model),
        align=plain(cfg.align),
        loss=plain(cfg.loss),
        optim=plain(cfg.optim),
        template_init=template_init,
        num_landmarks=datamodule.schema.num_points if datamodule.schema else 84,
        schema=datamodule.schema.name if datamodule.schema else "lmk84",
    )
    loggers = build_loggers(cfg)
    flat_config = flatten(plain(cfg))
    log_config(loggers, flat_config)
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=_callbacks(cfg)
    )

    # a resumed checkpoint is read with torch.load(weights_only=True): nothing in it runs
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    if trainer.is_global_zero and cfg.get("figures", True):
        # aligned faces, warp grid, α and template of the trained model (also to the loggers)
        from balanced_align.viz import save_module_figures

        batch = next(iter(datamodule.val_dataloader()))
        save_module_figures(
            model, batch, output_dir / "figures", loggers=loggers, step=trainer.global_step
        )
    val_metrics = {
        k.removeprefix("val/"): _finite(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith("val/")
    }
    test_metrics, val_best = {}, {}
    best_path = _own_best_checkpoint(trainer)
    best = None if best_path is None else read_checkpoint(best_path)
    if best is not None:  # the validation of the best weights (module.on_save_checkpoint)
        val_best = {
            k.removeprefix("val/"): _finite(v) for k, v in best.get("val_metrics", {}).items()
        }
    if cfg.get("test"):
        tested = model if best is None else module_from_checkpoint(best, best_path)
        results = trainer.test(tested, datamodule=datamodule)
        if results:
            test_metrics = {k.removeprefix("test/"): _finite(v) for k, v in results[0].items()}

    result = RunResult(
        run=f"{cfg.align.method}@{cfg.align.location} λ={cfg.loss['lambda']} seed={cfg.seed}",
        method=str(cfg.align.method),
        tps_grid_size=cfg.align.tps_grid_size if cfg.align.method == "tps" else None,
        location=str(cfg.align.location),
        lambda_=float(cfg.loss["lambda"]),
        seed=int(cfg.seed),
        val=val_metrics,
        val_best=val_best,
        test=test_metrics,
        tested=None if not test_metrics else ("last" if best is None else "best_checkpoint"),
        best_checkpoint=None if best_path is None else str(best_path),
        epochs=trainer.current_epoch,
        global_step=trainer.global_step,
        wall_time_s=time.perf_counter() - start,
        config=flat_config,
        results_path=str(results_path),
    )
    if trainer.is_global_zero:
        result.to_json(results_path)  # atomic: a kill mid-write leaves no truncated file
        _print_summary(result.to_dict())
        _print_paths(result, output_dir)
    log_final(loggers, flat_config, result)

    return _optimized_metric(cfg, val_best or val_metrics, test_metrics)


def _dry_run(cfg: DictConfig, config: ModuleConfig) -> None:
    """``+dry_run=true``: the memory table per card (balanced_align.dry_run); raises
    DoesNotFitError when the paper's batch would not fit its 11 GB cards."""
    from balanced_align.dry_run import dry_run

    num_classes = (cfg.get("paper") or {}).get("num_classes")
    if num_classes is None:  # data.* keys are the data module's options: none counts these
        raise ValueError(
            "+dry_run=true needs the number of identities: set paper.num_classes (the "
            "experiments paper_* do; elsewhere +paper.num_classes=N)"
        )
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    if not isinstance(devices, int):
        raise ValueError(f"+dry_run=true needs trainer.devices as a number, got {devices!r}")
    precision = str(cfg.trainer.get("precision", "32"))
    amp = precision in ("16-mixed", "bf16-mixed", "16", "bf16")
    dry_run(config, int(num_classes), devices * nodes, amp, where=f"experiment {cfg.task_name}")


def _optimized_metric(cfg: DictConfig, val_metrics: dict, test_metrics: dict) -> float | None:
    """The value of ``cfg.optimized_metric`` (``"val/rank1"``-style), for sweepers.

    ``val_metrics``: the best checkpoint's validation where there is one (the model the run
    delivers and tests), else the last validation.
    """
    metric = cfg.get("optimized_metric")
    if metric:
        stage, _, name = metric.partition("/")
        return {"val": val_metrics, "test": test_metrics}.get(stage, {}).get(name)
    return None


#: flat config keys that may differ between a sweep and its re-launch with resume_sweep=true
RESUME_IGNORED = (
    "resume_sweep",
    "paths.",
    "logger.",
    "trainer.default_root_dir",
    "callbacks.model_checkpoint.dirpath",
    # what a run prints, not what it computes
    "print_config",
    "callbacks.run_watcher.",
    "callbacks.rich_model_summary.",
)


def completed_result(results_path: Path, flat_config: dict) -> RunResult | None:
    """The run's complete ``results.json``, or None when the job must run (again).

    A missing or unreadable file (e.g. truncated by a kill) means the job did not finish.
    A complete file written by a different config (the job number now names other
    overrides) raises ValueError naming the file and the keys: running the job would
    overwrite another experiment's result. Keys of :data:`RESUME_IGNORED` (output paths,
    loggers) are not compared.
    """
    if not results_path.exists():
        return None
    try:
        done = RunResult.from_json(results_path)
    except RunResultError as err:
        log.warning("resume_sweep: %s; running the job again", err)
        return None

    def compared(config: dict) -> dict:
        return {k: v for k, v in config.items() if not k.startswith(RESUME_IGNORED)}

    before, now = compared(done.config), compared(json.loads(json.dumps(flat_config, default=str)))
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if differ:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in differ[:5])
        raise ValueError(
            f"resume_sweep: {results_path} was written by another config ({shown}"
            f"{', …' if len(differ) > 5 else ''}); use a new hydra.sweep.dir or move it away"
        )
    return done
