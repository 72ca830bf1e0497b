"""Hydra composition helpers and tiny settings for end-to-end runs."""

import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from balanced_align.config_store import register_configs

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

#: overrides that make a run take seconds on 2 CPU cores
TINY = [
    "model.width=0.125",
    "model.input_size=48",
    "model.embedding_dim=32",
    "align.locnet_input_size=24",
    "align.locnet_width=0.5",
    "data.source.num_train_identities=8",
    "data.source.train_images_per_identity=4",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.persistent_workers=false",
    "data.source.val_identities=4",
    "data.source.test_identities=4",
    "data.source.eval_images_per_identity=3",
    "data.source.val_distractor_identities=4",
    "data.source.test_distractor_identities=4",
    "data.source.val_num_pairs=20",
    "data.source.test_num_pairs=20",
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_model_summary=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.rich_model_summary",
    "logger=none",
]


def compose_train(overrides=(), output_dir: Path | None = None, with_hydra: bool = False):
    """Compose conf/train.yaml with ``overrides`` and a concrete output dir (no Hydra run).

    ``with_hydra`` keeps the ``hydra`` node (e.g. to read an experiment's sweeper params).
    """
    GlobalHydra.instance().clear()
    register_configs()  # train_schema, the typed base of train.yaml (as train.py does)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=list(overrides), return_hydra_config=with_hydra
        )
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def multirun(repo_root: Path, cwd: Path, *overrides: str, timeout: int = 900):
    """``python train.py -m <overrides>`` in a subprocess (as a user runs it), from ``cwd``;
    the completed process, its output captured as text."""
    command = [sys.executable, str(repo_root / "train.py"), "-m", *overrides]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout)
