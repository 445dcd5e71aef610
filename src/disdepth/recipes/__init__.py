"""Recipes that ship inside the package (``configs/`` is not installed): ``demo.yaml`` for ``disdepth demo``."""
