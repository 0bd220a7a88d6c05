"""The ``alltracker`` tracker (work in progress: the model and its checkpoint loading)."""
