"""balanced-align: Balanced Alignment for Face Recognition (Wei, Lu, Wei).

``from balanced_align import BalancedAlignModule, FaceEmbedder`` works, but the two load on
first access. This is not a cycle workaround: Python runs this file before every
``balanced_align.X`` import, so an eager import here would make ``import
balanced_align.geometry`` load Lightning, the models, the data and every other layer above
it (docs/design.md §6). ``tests/test_layers.py`` checks that this file imports the project
only inside functions.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    #: the installed distribution's version (pyproject.toml; releases are tagged vX.Y.Z)
    __version__ = version("balanced-align")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    if name == "BalancedAlignModule":
        from balanced_align.module import BalancedAlignModule

        return BalancedAlignModule
    if name == "FaceEmbedder":
        from balanced_align.inference import FaceEmbedder

        return FaceEmbedder
    raise AttributeError(f"module 'balanced_align' has no attribute {name!r}")
