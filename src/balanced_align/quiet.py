"""Known noise of a training run, silenced so that the lines worth reading stand out.

- :func:`silence_known_noise` drops Lightning's info lines that ask nothing of the user (the
  litlogger tip, the notes on callbacks this library configures on purpose) and filters the
  known deprecation warnings of the installed Lightning and torch (``KNOWN_WARNINGS``), each
  raised inside those libraries, not by this code;
- :class:`ModelSummary` prints Lightning's rich model summary without the FLOPs column and
  "Total FLOPs: 0" (FLOPs are only counted with an ``example_input_array``, which the module
  does not set: a landmark-aligned model cannot run on images alone);
- every line once: Lightning gives its ``lightning`` logger a console handler of its own
  at import; where the root logger has handlers already (Hydra's: the console and
  ``train.log``), :func:`silence_known_noise` removes it, so lines reach Hydra's handlers only.
"""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.callbacks import RichModelSummary

#: starts of Lightning info messages dropped from the logs
KNOWN_INFO = (
    "💡 Tip: ",  # litlogger, litmodels
    "Trainer already configured with model summary callbacks",
    "The following callbacks returned in `LightningModule.configure_callbacks` will override",
)
#: message patterns (regular expressions) of deprecation warnings raised inside dependencies
KNOWN_WARNINGS = (r".*`isinstance\(treespec, LeafSpec\)` is deprecated",)
#: the loggers Lightning's info messages come from
LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class _DropKnownInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(KNOWN_INFO)


#: loggers to which Lightning adds a console handler of its own
LIGHTNING_ROOTS = ("lightning", "lightning.pytorch", "lightning.fabric")


def silence_known_noise() -> None:
    """Install the filters; drop Lightning's console handlers where the root logger has
    handlers (idempotent)."""
    if logging.getLogger().handlers:
        for name in LIGHTNING_ROOTS:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)
            logger.propagate = True
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownInfo) for f in logger.filters):
            logger.addFilter(_DropKnownInfo())
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


class ModelSummary(RichModelSummary):
    """Lightning's :class:`~lightning.pytorch.callbacks.RichModelSummary` without FLOPs."""

    @staticmethod
    def summarize(
        summary_data,
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict,
        total_flops: int = 0,
        **summarize_kwargs,
    ) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for index, (name, _) in enumerate(columns):
            justify = "right" if name.startswith("Params") else "left"
            table.add_column(name, style="dim" if index == 0 else None, justify=justify)
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)

        def count(n: int) -> str:
            return get_human_readable_count(int(n)).strip()

        console.print(
            f"Trainable params: {count(trainable_parameters)}, "
            f"non-trainable: {count(total_parameters - trainable_parameters)}, "
            f"size {model_size:.2f} MB, modules in train/eval mode: "
            f"{total_training_modes.get('train', 0)}/{total_training_modes.get('eval', 0)}"
            + (f", FLOPs {count(total_flops)}" if total_flops else "")
        )
