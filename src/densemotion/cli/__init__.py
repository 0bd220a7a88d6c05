"""Thin command-line entry points, one module per stage (see ``densemotion.__main__``)."""
