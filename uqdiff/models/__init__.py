"""Real pretrained models wrapped as uqdiff generators, all loading offline.

Imports are lazy so that using one model never requires another's runtime:
``from uqdiff.models.terrain import TerrainGenerator`` (onnxruntime),
``from uqdiff.models.fashion import FashionMNISTGenerator`` (diffusers),
``from uqdiff.models.classifier import load_fashion_classifier``.
"""
