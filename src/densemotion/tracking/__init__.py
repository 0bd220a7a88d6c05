"""Point trackers: the interface (base), one package per tracker, the registry, grid geometry."""
