"""The training core: data, augmentation, the normalization registry, the model, the training loop,
its arithmetic, and the probes it runs. Knows nothing of the run store, the lab or the web app."""
