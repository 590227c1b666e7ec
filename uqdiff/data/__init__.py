"""Real data sets that install offline (Debian packages), loaded without downloads."""

from uqdiff.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

__all__ = ["FASHION_MNIST_CLASSES", "load_fashion_mnist"]
