"""The one base of densemotion's expected failures.

An expected failure is about the user's input or set-up: a bad params key, an unreadable video,
missing weights, a store from another version. Every such error class derives from
:class:`DensemotionError`, which the CLI prints as one line naming the file or key and exits 1
(``--debug`` shows the traceback too). Anything else that escapes a command is a bug in
densemotion and keeps its traceback. It derives from ValueError, so code that caught ValueError
around our functions still does.
"""

from __future__ import annotations


class DensemotionError(ValueError):
    """An expected failure: bad input or a missing prerequisite; printed as one line by the CLI."""
