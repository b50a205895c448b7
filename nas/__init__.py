"""hwnas: hardware-aware neural architecture search over once-for-all supernets."""

__version__ = "0.1.0"
