"""The resolved config of a run as a rich tree: printed at the start, saved in the run dir.

One branch per top-level group (``data``, ``model``, ``align``, ``loss``, ``optim``, …, in
the order of :data:`ORDER`, the others after), its keys as YAML below it.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

#: groups shown first, in this order
ORDER = ("data", "model", "align", "loss", "optim", "trainer", "callbacks", "logger", "paths")
#: the saved tree's file name in the run dir
TREE_FILE = "config_tree.log"


def config_tree(cfg: DictConfig):
    """A :class:`rich.tree.Tree` of ``cfg`` (resolved)."""
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", style="dim", guide_style="dim")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER]
    plain = [k for k in keys if not isinstance(cfg[k], DictConfig)]
    for key in [k for k in keys if k not in plain]:
        text = OmegaConf.to_yaml(cfg[key], resolve=True) or "{}\n"
        tree.add(key, style="bold").add(Syntax(text, "yaml", theme="ansi_dark"))
    if plain:
        text = OmegaConf.to_yaml({k: cfg[k] for k in plain}, resolve=True)
        tree.add("(top level)", style="bold").add(Syntax(text, "yaml", theme="ansi_dark"))
    return tree


def print_config_tree(cfg: DictConfig, save_dir: str | Path | None = None) -> Path | None:
    """Print the tree; also write it, as plain text, to ``save_dir/config_tree.log``."""
    from rich import get_console
    from rich.console import Console

    tree = config_tree(cfg)
    get_console().print(tree)
    if save_dir is None:
        return None
    path = Path(save_dir) / TREE_FILE
    with path.open("w", encoding="utf-8") as file:
        Console(file=file, width=120, color_system=None).print(tree)
    return path
