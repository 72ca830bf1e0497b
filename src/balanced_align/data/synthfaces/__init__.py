"""SynthFaces: the built-in synthetic face data set (docs/design.md §4, docs/synthfaces.md).

    from balanced_align.data.synthfaces import SynthFaces
    ds = SynthFaces(num_identities=100, images_per_identity=20, image_size=112, seed=0)
    rec = ds[0]  # FaceRecord: image (112, 112, 3) uint8, landmarks (84, 2), label, pose

Modules: ``shape`` (3D 84-point model, identity and expression modes), ``mesh`` (fixed
triangulation), ``texture`` (canonical identity textures), ``params`` (knobs and random
streams), ``render`` (projection, rasterisation, warp, light, background), ``dataset``
(the :class:`SynthFaces` class), ``preview`` (preview grids, layout figure, CLI).
"""

from .dataset import Identity, SynthFaces
from .params import Knobs
from .texture import REGION, REGION_NAMES

__all__ = ["REGION", "REGION_NAMES", "Identity", "Knobs", "SynthFaces"]
