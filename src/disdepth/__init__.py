"""disdepth: small, fast CNN monocular depth estimators distilled from transformer teachers (DisDepth)."""

__version__ = "0.1.0"
