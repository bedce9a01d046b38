"""The lab: experiments (presets, grids, the local and Ray backends), the claims and their verdicts,
and analyses of stored runs (test-set analysis, batch dependence, attributions)."""
