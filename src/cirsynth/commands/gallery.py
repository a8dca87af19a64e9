from __future__ import annotations

import json
from pathlib import Path


def gallery(root: Path, serve: bool = False, port: int = 8765, host: str = "127.0.0.1") -> int:
    """Look at a TripletDataset: plots of the run, and with --serve a browsable gallery where you accept or reject.

    Writes ROOT/report/*.png (score histograms with thresholds, acceptance by edit type, failures by stage and
    reason, filter precision by edit type for a world run) and prints a summary. With --serve, opens a local web
    page (no CDN, every asset from the package) over the manifest: reference | target with a comparing slider,
    texts, scores and failing rules, filters and sorting; decisions (keys a / r / f) are saved to
    ROOT/decisions.json. Apply them with `cirsynth curate ROOT`.

    Args:
        root: TripletDataset root (holds dataset.json and manifest/).
        serve: start the local web server (until Ctrl-C).
        port: port to listen on (0: a free one).
        host: address to bind; the default 127.0.0.1 keeps the gallery on this machine.
    """
    from cirsynth.report import Gallery, make_plots, make_server

    g = Gallery(root)  # a malformed decisions file stops here with a clear error
    g.plots = make_plots(g.view, g.store.decisions)
    print(json.dumps({k: v for k, v in g.meta().items() if k in ("root", "total", "counts", "decisions", "plot_notes")}
                     | {"plots": [str(g.root / p) for p in g.plots["plots"]]}, indent=1))
    if not serve:
        return 0
    server = make_server(g, host, port)
    print(f"gallery at http://{host}:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
