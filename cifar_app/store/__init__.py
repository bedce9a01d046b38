"""The run store: every file of a run folder (declared and validated in ``formats``, written by
``fileio``), ``Run`` and ``RunStore``, the one ``Recorder`` of a training run, runs as processes
(``jobs``), bundles, inference on a stored run, and results files. Below the lab and the web app."""
