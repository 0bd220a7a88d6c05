"""Getting a published clip list (TaiChi-HD's metadata) as videos, reproducibly.

``metadata`` reads the clip rows, ``sources`` obtains each source video once (yt-dlp, or a
local folder), ``clips`` cuts, crops and resizes the clips of one source in one decoding pass,
``manifest`` records every clip's outcome and hash, ``run`` ties them together (parallel across
source ids, resumable). The command is ``densemotion acquire``.
"""
