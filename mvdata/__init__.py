"""mvdata: raw 3D/4D face datasets -> rendered multiview WebDataset shards -> loaders."""

__version__ = "0.1.0"
