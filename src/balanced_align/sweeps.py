"""Names of multirun job directories: the job number and the swept keys only.

Hydra's stock ``${hydra.job.num}_${hydra.job.override_dirname}`` puts *every* override in the
name, and a command with a dozen fixed overrides fails before its first job with
``OSError: File name too long``. ``conf/hydra/default.yaml`` uses the resolver registered
here instead::

    subdir: ${ba.sweep_subdir:${hydra.job.num},${hydra.sweep.dir},${hydra.overrides.task},...}

It names a job ``<num>_<key>=<value>,...`` from the overrides of that job whose keys the
sweep varies (the sweep overrides of the command line and ``hydra.sweeper.params``, read
from ``<sweep dir>/multirun.yaml`` which the sweeper writes before launching any job), minus
``exclude_keys`` (path-valued keys). The full overrides stay in each job's
``.hydra/overrides.yaml``. Characters other than letters, digits and ``._=,+-`` become
``_``; a name longer than :data:`MAX_NAME_BYTES` is cut and ends in a hash of the whole
name. The job number keeps names unique.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

log = logging.getLogger(__name__)

#: the resolver's name in the configs
RESOLVER = "ba.sweep_subdir"
#: longest job directory name (bytes); file systems allow 255
MAX_NAME_BYTES = 120
#: length of the hash suffix of a cut name
HASH_CHARS = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")


def _parse(lines: Iterable[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([str(line) for line in lines])


def swept_keys(sweep_dir: str | Path) -> set[str] | None:
    """Keys the multirun in ``sweep_dir`` varies, from its ``multirun.yaml``; None if absent.

    A key is swept when its command-line override or its ``hydra.sweeper.params`` entry is
    a sweep (``a,b``, ``range(…)``, ``choice(…)``, ``interval(…)``, a glob).
    """
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    master = OmegaConf.load(path)
    task = OmegaConf.select(master, "hydra.overrides.task", default=None) or []
    params = OmegaConf.select(master, "hydra.sweeper.params", default=None) or {}
    lines = [*task, *(f"{key}={value}" for key, value in params.items())]
    return {o.key_or_group for o in _parse(lines) if o.is_sweep_override()}


def job_dirname(
    num: int,
    overrides: Iterable[str],
    swept: set[str] | None,
    exclude_keys: Iterable[str] = (),
    max_bytes: int = MAX_NAME_BYTES,
) -> str:
    """``<num>`` or ``<num>_<k>=<v>,…`` for one job.

    Args:
        num: the job number (``hydra.job.num``).
        overrides: the job's own overrides (``hydra.overrides.task``: one value per key).
        swept: keys the sweep varies; None names the job by all its overrides (Hydra's
            ``override_dirname``), still cut to ``max_bytes``.
        exclude_keys: keys never in the name (paths).
        max_bytes: longest name in UTF-8 bytes; longer names are cut and end in
            ``-<hash of the full name>``.
    """
    exclude = set(exclude_keys)
    parts = sorted(
        f"{o.key_or_group}={o.get_value_element_as_str()}"
        for o in _parse(overrides)
        if not o.is_delete()
        and o.key_or_group not in exclude
        and (swept is None or o.key_or_group in swept)
    )
    name = f"{int(num)}" + (f"_{','.join(parts)}" if parts else "")
    name = _UNSAFE.sub("_", name)  # ASCII only from here on: bytes == characters
    if len(name) <= max_bytes:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:HASH_CHARS]
    return f"{name[: max_bytes - HASH_CHARS - 1]}-{digest}"


def _plain_list(node) -> list:
    """A ListConfig's items as written (``${…}`` in an override's value stays text)."""
    if isinstance(node, ListConfig):
        return OmegaConf.to_container(node, resolve=False)
    return list(node or [])


def _sweep_subdir(num, sweep_dir, overrides, exclude_keys) -> str:
    swept = swept_keys(sweep_dir)
    if swept is None:
        log.warning("%s/multirun.yaml not found: job dirs are named by all overrides", sweep_dir)
    return job_dirname(num, _plain_list(overrides), swept, _plain_list(exclude_keys))


def register_resolvers() -> None:
    """Register :data:`RESOLVER` with OmegaConf (again: no-op). Call before ``hydra.main``."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _sweep_subdir)
