"""The DisDepth pipeline as a library: stages (teacher, baseline, acclimate, distill), one ``run_stages`` API, and
the scoring and report of the models it produced. The ``pipeline`` and ``demo`` commands and the benchmarks call it."""
