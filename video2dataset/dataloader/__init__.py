"""video2dataset 1.3.0's loader import: ``from video2dataset.dataloader import get_video_dataset``."""

from v2d_core.dataloader import get_video_dataset

__all__ = ["get_video_dataset"]
