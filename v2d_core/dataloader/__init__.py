"""Load a dataset v2d (or video2dataset) wrote, for training: ``get_video_dataset``.

Modules, in pipeline order: ``shards`` (which tars, opened over fsspec), ``samples`` (one
sample's members decoded), ``sampling`` (which frames: fps, windows, scenes), ``decoding``
(PyAV, one pass with seeks), ``batching`` (samples into numpy batches), ``settings`` (the
validated options) and ``dataset`` (the webdataset pipeline that joins them).

Without torch, iterate the dataset for numpy batches; with torch, hand it to
``torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=...)`` (it batches itself;
shards are split between workers).
"""

from v2d_core.dataloader.dataset import VideoDataset, get_video_dataset
from v2d_core.dataloader.settings import DecoderArgs, Geometry

__all__ = ["DecoderArgs", "Geometry", "VideoDataset", "get_video_dataset"]
