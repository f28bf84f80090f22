"""video2dataset 1.3.0's import names, served by v2d: ``from video2dataset import video2dataset``."""

from v2d_core.api import video2dataset

__all__ = ["video2dataset"]
