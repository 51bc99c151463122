"""Where in a measured hold bracket a replay holds the lock (:mod:`ztrace.replay.holds`).

Kept apart, with no imports, so that the CLI can offer the choice without loading numpy.
"""

from __future__ import annotations

from typing import Final

#: "low": the measured hold less the lock probes' in-window cost (the default); "mid":
#: halfway; "high": the raw measured hold, the probes' dispatch inside the window kept
ENDS: Final = ("low", "mid", "high")
#: the end every replay uses unless told (``--hold-end``; docs/validation.md, session 24)
DEFAULT_END: Final = "low"
