"""The benchmark layer: run identity, grid expansion, one run, the results store and the runner."""
