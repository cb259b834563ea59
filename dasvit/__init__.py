"""dasvit: Differentiable Architecture Search for Vision Transformers (DASViT, Wu, Neri & Feng, IJCNN 2025)."""

__version__ = "0.1.0"
