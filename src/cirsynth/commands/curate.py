from __future__ import annotations

import json
from pathlib import Path


def curate(root: Path) -> int:
    """Apply the human decisions in ROOT/decisions.json (made in `cirsynth gallery --serve`) to the manifest.

    Every row and score stays; each row records the filter's status and reason, the human decision and its
    time, and its status becomes the curated one, which exports and training read. Applying twice changes
    nothing; a malformed decisions file is an error and nothing is written.

    Args:
        root: TripletDataset root.
    """
    from cirsynth.report import apply_decisions

    print(json.dumps(apply_decisions(root).as_dict()))
    return 0
