"""balanced-align: Balanced Alignment for Face Recognition (Wei, Lu, Wei)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `import balanced_align.geometry` does not import Lightning.
    if name == "BalancedAlignModule":
        from balanced_align.module import BalancedAlignModule

        return BalancedAlignModule
    if name == "FaceEmbedder":
        from balanced_align.inference import FaceEmbedder

        return FaceEmbedder
    raise AttributeError(name)
