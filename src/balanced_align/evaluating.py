"""The evaluation job behind ``eval.py``: load a checkpoint safely, embed, run, write.

``run(cfg)`` reads every selected benchmark's files first (so a bad path fails before any
embedding), loads the checkpoint with ``torch.load(weights_only=True)`` only, embeds with
flip TTA in batches on ``cuda`` when available, runs the protocols of
:mod:`balanced_align.evaluation.benchmarks`, and writes ``results.json`` and ``results.md``
to Hydra's run dir (``paths.output_dir``), prints a table and logs the metrics to the
configured loggers.

Config (``conf/eval.yaml``): ``ckpt_path``, ``benchmark`` (one key per selected benchmark,
each with its ``kind``: lfw | bin | ytf | megaface | multipie | ijb), ``device``, ``batch_size``,
``precision`` (32 | bf16 | 16), ``flip``, ``num_workers``, ``logger``, ``annotate``.

Landmarks: a checkpoint aligned by each image's own landmarks (``align=affine2d|fullalign``)
needs them for every benchmark image: ``benchmark.<name>.landmarks`` (MegaFace also
``distractor_landmarks``) names a table ``path,x0,y0,…`` keyed by path relative to the
benchmark's image root (``.bin``: ``<file stem>/<index>``), or is ``annotate``: the
``annotate`` backend (``annotate.backend``) annotates exactly the benchmark's images first,
into a table kept under ``annotate.cache_dir`` and reused by later runs
(:mod:`balanced_align.annotate.cache`). Images without a detected face get the fallback box
(``annotate.fallback``, counted in ``results.json`` under ``landmarks``) or, with
``annotate.fallback=null``, stop the run with an error listing them. Other checkpoints
ignore the landmark keys. IJB-B/C (``kind: ijb``) bring their own five points per face:
every face is aligned by them (Affine2D onto the model's input size), and a checkpoint
aligned by landmarks gets those five points (it must have been trained with five).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from balanced_align.checkpoints import (  # noqa: F401  (re-exported: the job's public API)
    UnsafeCheckpointError,
    load_checkpoint,
    module_from_checkpoint,
    read_checkpoint,
)
from balanced_align.data.formats import (
    read_bin,
    read_distractor_list,
    read_ijb,
    read_lfw_pairs,
    read_pose_list,
    read_probe_list,
    read_video_pairs,
)
from balanced_align.data.sources import read_landmark_table, to_corner
from balanced_align.devices import resolve_device, resolve_precision
from balanced_align.evaluation import benchmarks as bm
from balanced_align.evaluation.ijb import ijb_benchmark
from balanced_align.input_errors import InputError, report
from balanced_align.module import BalancedAlignModule
from balanced_align.preprocess.affine2d import affine2d_align
from balanced_align.run_result import atomic_write_text
from balanced_align.safe_paths import resolve_inside

log = logging.getLogger(__name__)

KINDS = ("lfw", "bin", "ytf", "megaface", "multipie", "ijb")
#: metrics shown first in the printed table (then the rest in their order)
HEADLINE = ("verif_acc", "rank1", "rank1_mean", "tar@far=1e-4")


def hparams_summary(model: BalancedAlignModule) -> dict:
    """method, location, λ and the model size of a loaded module (plain values)."""
    hp = model.hparams
    return {
        "method": hp.align["method"],
        "tps_grid_size": hp.align["tps_grid_size"] if hp.align["method"] == "tps" else None,
        "location": hp.align["location"],
        "lambda": float(hp.loss["lambda"]),
        "head": hp.loss["head"],
        "backbone": hp.model["backbone"],
        "width": hp.model["width"],
        "input_size": hp.model["input_size"],
        "embedding_dim": hp.model["embedding_dim"],
        "num_classes": hp.num_classes,
    }


def make_embed(
    model: BalancedAlignModule, device: torch.device, dtype: torch.dtype | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """images (B, 3, H, W) in [−1, 1] (any device) -> (B, D) float32 embeddings on
    ``device``, under autocast to ``dtype`` when given (the geometry stays float32).
    ``landmarks`` (B, S, 2), normalised: each image's own landmarks, for a model aligned by
    them (Affine2D, FullAlign)."""
    channels_last = bool(model.hparams.model["channels_last"])

    def embed(images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
        with torch.inference_mode(), autocast:
            if landmarks is None:
                return model(images).float()
            landmarks = landmarks.to(device, torch.float32)
            return model.recognizer(images, landmarks).embedding.float()

    return embed


# -- benchmarks --------------------------------------------------------------------------------
@dataclass
class Job:
    """One benchmark to run: results key, kind, and the call on (embed, options)."""

    name: str
    kind: str
    call: Callable[[Callable, bm.EmbedOptions], dict]


#: ``benchmark.<name>.landmarks=annotate``: annotate the benchmark's images on the fly
ANNOTATE = "annotate"
#: the landmark keys of each kind (MegaFace: probes, then distractors)
LANDMARK_KEYS = {"megaface": ("landmarks", "distractor_landmarks"), "ijb": ()}


def landmark_keys(kind: str) -> tuple[str, ...]:
    """The config keys naming the landmark tables of a benchmark of ``kind``."""
    return LANDMARK_KEYS.get(kind, ("landmarks",))


@dataclass
class LandmarkNeed:
    """What a checkpoint aligned by each image's landmarks asks of the benchmarks.

    num_landmarks: points per image the checkpoint was trained with; ckpt_path: for errors;
    annotate: ``conf/eval.yaml``'s ``annotate`` node; reports: filled per table read
    (``"<benchmark>.<key>"`` -> where the landmarks came from, counts), for results.json.
    """

    num_landmarks: int
    ckpt_path: str
    annotate: Mapping = field(default_factory=dict)
    reports: dict = field(default_factory=dict)


def _path(conf: Mapping, key: str, where: str) -> str:
    value = conf.get(key)
    if value is None or value == "???" or str(value).strip() == "":
        raise ValueError(f"{where}.{key} is required (a path)")
    return str(value)


def _table_key(path: str | Path) -> str:
    """A key as landmark tables store it (``/``-separated, ``./`` dropped)."""
    return str(PurePosixPath(str(path).replace("\\", "/")))


def _checked_keys(root: Path, paths: Sequence[Path], what: str) -> list[str]:
    """Table keys (paths relative to ``root``) of ``paths`` (``root`` joined with a name from
    a benchmark file), each refused unless it stays inside ``root``
    (``safe_paths.resolve_inside``; the error names ``what`` and the key)."""
    keys = []
    for path in paths:
        key = _table_key(os.path.relpath(path, root))
        resolve_inside(root, key, what=what)
        keys.append(key)
    return keys


def _table_value(conf: Mapping, key: str):
    value = conf.get(key)
    if key == "distractor_landmarks" and value in (None, "") and conf.get("landmarks") == ANNOTATE:
        return ANNOTATE  # annotating the probes annotates the distractors too
    return None if value in (None, "") else value


def _schema_of(need: LandmarkNeed, where: str) -> str:
    if need.num_landmarks == 68:
        return "ibug68"
    if need.num_landmarks == 5:
        return "five"
    raise ValueError(
        f"{where}=annotate: the annotate backends write 68 or 5 points per image; checkpoint "
        f"{need.ckpt_path!r} was trained with {need.num_landmarks}: pass a table instead"
    )


def _annotated_table(
    where: str, label: str, keys: list[str], need: LandmarkNeed, root=None, read=None, source=None
) -> Path:
    """Annotate ``keys`` on the fly (``annotate`` node) and return the cached table; images
    left without landmarks stop the run, listed."""
    from balanced_align.annotate import failures_path
    from balanced_align.annotate.cache import annotate_cached

    options = dict(need.annotate or {})
    fallback = options.get("fallback", "auto")
    result = annotate_cached(
        keys,
        options.get("cache_dir") or "outputs/eval/landmarks",
        label,
        root=root,
        read=read,
        source=source,
        backend=options.get("backend", "dlib"),
        schema=_schema_of(need, where),
        fallback=None if fallback in (None, "", "none") else fallback,
        workers=int(options.get("workers", 1)),
        progress=bool(options.get("progress", True)),
    )
    need.reports[label] = {"source": ANNOTATE, **result.report()}
    if result.failed:
        shown = "; ".join(f"{k} ({reason})" for k, reason in result.failed[:10])
        raise ValueError(
            f"{where}=annotate: no landmarks for {len(result.failed)} of {len(keys)} images: "
            f"{shown}{' …' if len(result.failed) > 10 else ''} (all listed in "
            f"{str(failures_path(result.table))!r}); fix or "
            f"remove them, pass a table, or set annotate.fallback=auto to place their points "
            f"in the fallback box"
        )
    if result.fallback:
        log.warning(
            "%s=annotate: no face detected in %d of %d images; their landmarks were placed in "
            "the fallback box (e.g. %s)",
            where,
            len(result.fallback),
            len(keys),
            result.fallback[:3],
        )
    return result.table


def _image_landmarks(
    conf: Mapping,
    key: str,
    where: str,
    keys: list[str],
    need: LandmarkNeed | None,
    root=None,
    read=None,
    source=None,
    label: str | None = None,
) -> np.ndarray | None:
    """(len(keys), S, 2) corner-pixel landmarks of the images ``keys`` from the table (or
    ``annotate``) ``<where>.<key>``; None when the checkpoint does not use landmarks.
    ``label``: the name of this table in ``results.json``'s ``landmarks`` (default
    ``<benchmark>.<key>``)."""
    if need is None:
        return None
    where_key = f"{where}.{key}"
    label = label or where_key.removeprefix("benchmark.")
    value = _table_value(conf, key)
    if value is None:
        raise ValueError(f"{where_key} is required for checkpoint {need.ckpt_path!r}")
    if value == ANNOTATE:
        table_path = _annotated_table(where_key, label, keys, need, root, read, source)
        convention = "corner"
    else:
        table_path = value
        convention = conf.get("landmark_convention", "corner")
        need.reports[label] = {"source": str(table_path)}
    table = read_landmark_table(table_path)
    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(
            f"{where_key}: table {str(table_path)!r} has no row for {len(missing)} of the "
            f"{len(keys)} benchmark images, e.g. {missing[:3]} (keys are paths relative to "
            f"the benchmark's image root; annotate them with python -m balanced_align.annotate, "
            f"or pass {where_key}=annotate)"
        )
    points = np.stack([to_corner(table[k], convention) for k in keys])
    bad = [k for k, p in zip(keys, points) if not np.isfinite(p).all()]
    if bad:
        raise ValueError(f"{where_key}: empty or non-numeric cells for {bad[:3]}")
    if points.shape[1] != need.num_landmarks:
        raise ValueError(
            f"{where_key}: the table has {points.shape[1]} points per image; checkpoint "
            f"{need.ckpt_path!r} was trained with {need.num_landmarks}"
        )
    return points


def prepare(
    name: str, conf: Mapping, run_dir: Path, device="cpu", landmarks: LandmarkNeed | None = None
) -> list[Job]:
    """Read benchmark ``name``'s files now (errors name the key or file); return its jobs.

    ``run_dir`` holds files a benchmark writes (MegaFace features); ``device`` runs the
    MegaFace search (builtin backend). ``landmarks``: given for a checkpoint aligned by each
    image's landmarks; every image then gets its landmarks now (module docstring).
    Paths taken from the benchmark's lists must stay inside their image root.
    """
    where = f"benchmark.{name}"
    kind = conf.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}.kind must be one of {KINDS}, got {kind!r}")
    if kind == "lfw":
        pairs = read_lfw_pairs(
            _path(conf, "pairs", where), _path(conf, "root", where), ext=conf.get("ext", "jpg")
        )
        keys = _checked_keys(pairs.root, pairs.paths, f"{where}.pairs {str(pairs.source)!r}")
        n_folds = int(conf.get("n_folds", 10))
        points = _image_landmarks(conf, "landmarks", where, keys, landmarks, root=pairs.root)
        return [
            Job(name, kind, lambda e, o: bm.lfw_benchmark(e, pairs, o, n_folds, landmarks=points))
        ]
    if kind == "bin":
        paths = conf.get("path")
        paths = [paths] if isinstance(paths, str) else list(paths or [])
        if not paths:
            raise ValueError(f"{where}.path is required (one .bin file or a list)")
        if len({Path(path).stem for path in paths}) != len(paths):
            raise ValueError(f"{where}.path: two files share a name: {paths}")
        n_folds = int(conf.get("n_folds", 10))
        jobs = []
        for path in paths:
            data = read_bin(path)
            points = None
            if landmarks is not None:
                stem, images = Path(path).stem, data.images
                keys = [f"{stem}/{i}" for i in range(len(images))]
                stat = Path(path).stat()
                points = _image_landmarks(
                    conf,
                    "landmarks",
                    where,
                    keys,
                    landmarks,
                    read=lambda key, images=images: images[int(key.rpartition("/")[2])],
                    source=f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}",
                    label=f"{name}/{stem}.landmarks",
                )
            jobs.append(
                Job(
                    f"{name}/{Path(path).stem}",
                    kind,
                    lambda e, o, data=data, points=points: bm.bin_benchmark(
                        e, data, o, n_folds, landmarks=points
                    ),
                )
            )
        return jobs
    if kind == "ijb":
        return [_ijb_job(name, conf, run_dir, landmarks)]
    if kind == "ytf":
        max_frames = conf.get("max_frames")
        root = _path(conf, "root", where)
        videos = read_video_pairs(
            _path(conf, "splits", where),
            root,
            max_frames=None if max_frames is None else int(max_frames),
        )
        keys = _checked_keys(videos.root, videos.frame_paths, f"{where}.splits video frame")
        points = _image_landmarks(conf, "landmarks", where, keys, landmarks, root=videos.root)
        return [Job(name, kind, lambda e, o: bm.video_benchmark(e, videos, o, landmarks=points))]
    if kind == "megaface":
        probes = read_probe_list(_path(conf, "probes", where))
        distractors = read_distractor_list(_path(conf, "distractors", where))
        probe_root = _path(conf, "probe_root", where)
        distractor_root = _path(conf, "distractor_root", where)
        bm.check_files(probes.paths, probe_root, f"{where}.probes {str(probes.source)!r}")
        distractor_list = str(conf.get("distractors"))
        bm.check_files(distractors, distractor_root, f"{where}.distractors {distractor_list!r}")
        backend = conf.get("backend", "builtin")
        if backend not in bm.BACKENDS:
            raise ValueError(f"{where}.backend must be one of {bm.BACKENDS}, got {backend!r}")
        features = Path(conf.get("features") or f"{name}_distractors.npy")
        features = features if features.is_absolute() else run_dir / features
        options = {
            "features_path": features,
            "probe_root": probe_root,
            "distractor_root": distractor_root,
            "ranks": [int(r) for r in conf.get("ranks", (1, 5, 10))],
            "chunk_size": int(conf.get("chunk_size", 16384)),
            "backend": backend,
            "search_device": device,
            "probe_landmarks": _image_landmarks(
                conf,
                "landmarks",
                where,
                [_table_key(p) for p in probes.paths],
                landmarks,
                root=probe_root,
            ),
            "distractor_landmarks": _image_landmarks(
                conf,
                "distractor_landmarks",
                where,
                [_table_key(p) for p in distractors],
                landmarks,
                root=distractor_root,
            ),
        }

        def megaface(e, o):
            out = bm.megaface_benchmark(e, probes, distractors, o, **options)
            if not conf.get("keep_features", True):
                features.unlink(missing_ok=True)
            return out

        return [Job(name, kind, megaface)]
    poses = read_pose_list(_path(conf, "poses", where))
    root = _path(conf, "root", where)
    bm.check_files(poses.paths, root, f"{where}.poses {str(poses.source)!r}")
    kwargs = {
        "root": root,
        "bins": [float(b) for b in conf.get("bins", bm.DEFAULT_YAW_BINS)],
        "tolerance": float(conf.get("tolerance", 7.5)),
        "include_frontal": bool(conf.get("include_frontal", False)),
        "landmarks": _image_landmarks(
            conf, "landmarks", where, [_table_key(p) for p in poses.paths], landmarks, root=root
        ),
    }
    return [Job(name, kind, lambda e, o: bm.pose_benchmark(e, poses, o, **kwargs))]


def _ijb_job(name: str, conf: Mapping, run_dir: Path, landmarks: LandmarkNeed | None) -> Job:
    """IJB-B/C 1:1 verification: read the meta files now, check the images, and align each
    face by its five points onto the model's (square) input at run time."""
    where = f"benchmark.{name}"
    data = read_ijb(
        _path(conf, "root", where),
        str(conf.get("name") or name),
        conf.get("landmark_convention", "zero_based_centre"),
    )
    bm.check_files(data.names, data.image_root, f"{where}.root {str(data.image_root)!r}")
    if landmarks is not None and landmarks.num_landmarks != 5:
        raise ValueError(
            f"{where}: IJB provides five points per face; checkpoint {landmarks.ckpt_path!r} "
            f"is aligned by {landmarks.num_landmarks} landmarks per image"
        )
    roc = Path(conf.get("roc") or f"{name}_roc.csv")
    roc = roc if roc.is_absolute() else run_dir / roc

    def call(embed, options: bm.EmbedOptions) -> dict:
        height, width = options.image_size
        if height != width:
            raise ValueError(f"{where}: faces are aligned to a square crop; input {height}x{width}")

        def align(image, points):
            crop, aligned, _ = affine2d_align(image, points, schema="five", size=height)
            return crop, aligned

        return ijb_benchmark(
            embed, data, options, align, with_landmarks=landmarks is not None, roc_path=roc
        )

    return Job(name, "ijb", call)


# -- the job -------------------------------------------------------------------------------------
def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _benchmarks(cfg: DictConfig) -> dict:
    selected = cfg.get("benchmark")
    if not selected:
        raise ValueError(
            "no benchmark selected: pass benchmark=<lfw|bin|ytf|megaface|multipie|ijbb|ijbc> "
            "or a list like benchmark=[lfw,megaface]"
        )
    return OmegaConf.to_container(selected, resolve=True)


def _require_landmarks(ckpt_path, method: str, selected: Mapping) -> None:
    """A model aligned by each image's landmarks needs a table (or ``annotate``) for the
    images of every selected benchmark (checked before any file is read)."""
    for name, conf in selected.items():
        for key in landmark_keys(conf.get("kind")):
            if _table_value(conf, key) is not None:
                continue
            where = f"benchmark.{name}.{key}"
            raise ValueError(
                f"checkpoint {ckpt_path!r} uses align.method={method}, which aligns each image "
                f"by its own landmarks; benchmark {name!r} provides no landmarks: pass "
                f"{where}=TABLE.csv (python -m balanced_align.annotate ROOT --out TABLE.csv) or "
                f"{where}=annotate (annotated now with annotate.backend, cached)"
            )


def run(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt_path`` on the selected benchmarks; return the results dict.

    A bad input (config key, checkpoint, benchmark file) found before embedding is an
    :class:`~balanced_align.input_errors.InputError`: one line in a single run."""
    try:
        return _run(cfg)
    except Exception as error:
        report(error, log)
        raise


def _run(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    if not cfg.get("ckpt_path"):
        raise ValueError("ckpt_path is required (a Lightning checkpoint from train.py)")
    batch_size = cfg.get("batch_size", 128)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    device = resolve_device(cfg.get("device"))
    dtype = resolve_precision(cfg.get("precision", 32), device)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    selected = _benchmarks(cfg)

    model = load_checkpoint(cfg.ckpt_path, map_location="cpu")
    summary = hparams_summary(model)
    need = None
    if model.landmark_aligned:
        _require_landmarks(cfg.ckpt_path, summary["method"], selected)
        need = LandmarkNeed(
            int(model.hparams.num_landmarks),
            str(cfg.ckpt_path),
            OmegaConf.to_container(cfg.get("annotate") or {}, resolve=True),
        )
    try:
        jobs = [
            job
            for name, conf in selected.items()
            for job in prepare(name, conf, output_dir, device, landmarks=need)
        ]
    except ValueError as error:  # the readers' errors name the key or the file and line
        raise (InputError(str(error)) if type(error) is ValueError else error) from None

    model.to(device)
    embed = make_embed(model, device, dtype)
    options = bm.EmbedOptions(
        image_size=model.image_size,
        batch_size=batch_size,
        flip=bool(cfg.get("flip", True)),
        num_workers=int(cfg.get("num_workers", 0)),
        flip_permutation=tuple(model.schema.flip_permutation),
    )
    metrics, timing = {}, {}
    for job in jobs:
        log.info("benchmark %s (%s)", job.name, job.kind)
        t0 = time.perf_counter()
        metrics[job.name] = {k: _finite(v) for k, v in job.call(embed, options).items()}
        timing[job.name] = time.perf_counter() - t0

    results = {
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "model": summary,
        "device": str(device),
        "precision": str(cfg.get("precision", 32)),
        "flip": options.flip,
        "batch_size": batch_size,
        "benchmarks": metrics,
        "landmarks": None if need is None else need.reports,
        "time_s": timing,
        "wall_time_s": time.perf_counter() - start,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    results_path = output_dir / "results.json"
    results["results_path"] = str(results_path)
    # atomic: a job killed mid-write leaves the previous file or none, never a truncated one
    atomic_write_text(results_path, json.dumps(results, indent=2, default=str))
    atomic_write_text(output_dir / "results.md", markdown_table(results))
    _print_table(results)
    _log(cfg, results)
    return results


# -- reports --------------------------------------------------------------------------------------
def _ordered(metrics: dict) -> list[str]:
    head = [k for k in HEADLINE if k in metrics]
    return head + [k for k in metrics if k not in head]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.4f}"


def _title(results: dict) -> str:
    m = results["model"]
    method = m["method"] + (f"-{m['tps_grid_size']}" if m["tps_grid_size"] else "")
    return f"{method}@{m['location']} λ={m['lambda']:g}"


def markdown_table(results: dict) -> str:
    """``results.md``: checkpoint, model summary, and one row per (benchmark, metric)."""
    lines = [
        f"# Evaluation: {_title(results)}",
        "",
        f"checkpoint: `{results['checkpoint']}`  ",
        f"device: {results['device']}, precision: {results['precision']}, "
        f"flip TTA: {results['flip']}",
        "",
        "| benchmark | metric | value |",
        "|---|---|---:|",
    ]
    for name, metrics in results["benchmarks"].items():
        for key in _ordered(metrics):
            lines.append(f"| {name} | {key} | {_fmt(metrics[key])} |")
    return "\n".join(lines) + "\n"


def _print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"balanced-align eval: {_title(results)}")
    table.add_column("benchmark")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, metrics in results["benchmarks"].items():
        for key in _ordered(metrics):
            table.add_row(name, key, _fmt(metrics[key]))
    Console().print(table)
    print(f"wall time {results['wall_time_s']:.1f} s; results in {results['results_path']}")


def _log(cfg: DictConfig, results: dict) -> None:
    """Send the metrics to the configured loggers (``logger=csv|tensorboard|wandb``)."""
    if not cfg.get("logger"):
        return
    from balanced_align.loggers import build_loggers
    from balanced_align.training import flatten

    loggers = build_loggers(cfg)
    flat = {
        f"{name}/{key}": float(value)
        for name, metrics in results["benchmarks"].items()
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    params = flatten({"model": results["model"], "checkpoint": results["checkpoint"]})
    for logger in loggers:
        logger.log_hyperparams(params)
        logger.log_metrics(flat, step=0)
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":
            for key, value in flat.items():
                logger.experiment.summary[key] = value
            import wandb

            wandb.finish()
