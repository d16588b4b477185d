"""Datasets (``base``, one module per source) and the device-resident loader (``loader``).

Typical use::

    ds = load_dataset(cfg.dataset)                       # CPU uint8 arrays + constants
    train = DeviceData.from_arrays(ds.train_x, ds.train_y, ds.mean, ds.std, device)
    w_idx, a_idx = search_split(ds.num_train, cfg.train_portion, device)
    w_stream = BatchStream(train, w_idx, 64, padding=ds.crop_padding, generator=g)
"""

from nas_cli.data.base import DATASETS, ArrayDataset, channel_stats, load_dataset
from nas_cli.data.loader import BatchStream, DeviceData, augment, normalize, search_split

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "BatchStream",
    "DeviceData",
    "augment",
    "channel_stats",
    "load_dataset",
    "normalize",
    "search_split",
]
