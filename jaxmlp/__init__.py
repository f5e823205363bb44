"""jaxmlp: a small, fast, honest laboratory for training MLPs on MNIST-style data with JAX."""

__version__ = "0.1.0"
