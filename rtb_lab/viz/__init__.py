"""Visualisation for notebooks (needs the `notebooks` extra: matplotlib, plotly, ipywidgets).

* `rtb_lab.viz.plots`: static matplotlib panels (exact densities, samples, mode
  weights, training curves, method comparisons).
* `rtb_lab.viz.animate`: plotly figures of whole trajectories (animated particles,
  per-step log-ratios).
* `rtb_lab.viz.widgets`: ipywidgets (live training dashboard, beta panel, mode picker).

Nothing is imported here, so `import rtb_lab` and training never need these extras.
"""
