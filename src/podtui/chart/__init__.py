"""The loss chart's drawing, apart from any widget: raster.py (braille cells, min/max per pixel column), axes.py
(ticks), series.py (growable numpy columns with cached summaries), smoothing.py (the debiased EMA), draw.py (the
chart as rich Text). widgets/loss_chart.py imports it with a run's first metrics (numpy is most of its cost)."""
