"""Procedural ray-cast RGB-D world behind :mod:`disdepth.data.synthetic` (NumPy only, no OpenGL).

Modules: ``camera`` (intrinsics, poses, ray grids), ``primitives`` (analytic ray intersections and the
nearest-hit tracer), ``textures`` (procedural materials), ``render`` (shading, shadows, sky, sensor
effects, LiDAR-like sparsity), ``indoor`` / ``outdoor`` (random scene layouts), ``preview`` (depth
colour map and contact sheets). The public API is :mod:`disdepth.data.synthetic`.
"""
