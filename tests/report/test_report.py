"""The gallery's server, decisions, curation and plots, without a browser."""

from __future__ import annotations

import http.client
import json
import os

import pyarrow.parquet as pq
import pytest

from cirsynth.cli import main
from cirsynth.data import TripletDataset
from cirsynth.data.errors import DataError
from cirsynth.report import Gallery, ManifestView, apply_decisions, make_plots, read_decisions, serve_in_thread
from cirsynth.report.decisions import write_decisions
from tests.report.conftest import SCRIPT_CAPTION


@pytest.fixture
def served(gallery_ds):
    server, url = serve_in_thread(Gallery(gallery_ds.root))
    yield gallery_ds, server
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    h = {"Host": f"127.0.0.1:{port}"} | (headers or {})
    conn.request(method, path, body=body, headers=h)  # the path goes out exactly as written (no normalising)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), data


def post_decision(server, obj, headers=None):
    return request(server, "POST", "/api/decision", json.dumps(obj).encode(),
                   {"Content-Type": "application/json"} | (headers or {}))


def test_binds_localhost_by_default(served):
    _, server = served
    assert server.server_address[0] == "127.0.0.1"


def test_serves_files_under_root_and_404s_everything_else(served, tmp_path):
    ds, server = served
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", ds.root / "link.txt")  # a link inside ROOT pointing out of it
    ref = next(ds.triplets()).reference
    status, ctype, data = request(server, "GET", f"/files/{ref}")
    assert status == 200 and ctype == "image/png" and data[:4] == b"\x89PNG"
    for path in ("/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/images/../../secret.txt",
                 f"/files/{tmp_path}/secret.txt", f"/files/%2F{str(tmp_path).lstrip('/')}/secret.txt", "/files//etc/passwd",
                 "/files/link.txt", "/files/images", "/static/../dataset.json", "/static/secret.txt", "/../secret.txt",
                 "/files/nope.png"):
        status, _, data = request(server, "GET", path)
        assert status == 404, path
        assert b"outside" not in data
    status, ctype, _ = request(server, "GET", "/files/dataset.json")
    assert status == 200 and ctype.startswith("text/plain")  # a file under ROOT is never served as HTML or script


def test_page_and_assets_come_from_the_package(served):
    _, server = served
    status, ctype, page = request(server, "GET", "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b"/static/gallery.js" in page and b"http" not in page  # no CDN: nothing loads from elsewhere
    status, ctype, js = request(server, "GET", "/static/gallery.js")
    assert status == 200 and ctype.startswith("text/javascript")
    assert b"innerHTML" not in js and b"insertAdjacentHTML" not in js  # texts go in as text nodes


def test_api_returns_markup_as_plain_json_text(served):
    _, server = served
    status, ctype, data = request(server, "GET", "/api/rows?limit=5")
    assert status == 200 and ctype.startswith("application/json")
    rows = json.loads(data)["rows"]
    assert rows[2]["reference_caption"] == SCRIPT_CAPTION


def test_filter_sort_and_page(served):
    _, server = served
    page = lambda q: json.loads(request(server, "GET", "/api/rows?" + q)[2])  # noqa: E731
    assert page("limit=200")["total"] == 12
    rej = page("status=rejected")
    assert rej["total"] == 4 and {r["id"] for r in rej["rows"]} == {"t00", "t03", "t06", "t09"}
    assert [r["id"] for r in page("rule=failed:edit")["rows"]] == ["t01"]
    assert page("rule=clip_dir")["total"] == 4
    assert all(r["edit_type"] == "size" for r in page("edit_type=size&limit=50")["rows"])
    desc = page("sort=clip_i2i&order=desc&limit=3")["rows"]
    assert [r["id"] for r in desc] == ["t11", "t10", "t09"]
    asc = page("sort=clip_dir&order=asc&limit=2&offset=1")
    assert [r["id"] for r in asc["rows"]] == ["t10", "t09"] and asc["offset"] == 1
    # a failed row has no scores: last whatever the order
    assert page("sort=clip_dir&order=asc&limit=200")["rows"][-1]["id"] == "t01"
    assert page("sort=clip_dir&order=desc&limit=200")["rows"][-1]["id"] == "t01"
    for bad in ("sort=nope", "limit=0", "limit=x", "offset=-1", "order=sideways"):
        assert request(server, "GET", "/api/rows?" + bad)[0] == 400, bad


def test_decisions_are_saved_atomically_and_checked(served):
    ds, server = served
    status, _, data = post_decision(server, {"id": "t03", "decision": "accept"})
    assert status == 200 and json.loads(data)["decision"] == "accept"
    assert read_decisions(ds.root)["t03"]["decision"] == "accept"
    assert not [p for p in os.listdir(ds.root) if p.endswith(".tmp")]
    before = (ds.root / "decisions.json").read_bytes()
    assert post_decision(server, {"id": "nope", "decision": "accept"})[0] == 400
    assert post_decision(server, {"id": "t03", "decision": "maybe"})[0] == 400
    assert post_decision(server, {"id": "t01", "decision": "accept"})[0] == 400  # failed, no target image
    assert post_decision(server, {"id": "t03", "decision": "reject"}, {"Host": "evil.example:80"})[0] == 403
    assert request(server, "POST", "/api/decision", b'{"id": "t03", "decision": "reject"}',
                   {"Content-Type": "text/plain"})[0] == 415  # what a cross-site form could send
    assert (ds.root / "decisions.json").read_bytes() == before
    assert json.loads(request(server, "GET", "/api/rows?decision=accept")[2])["total"] == 1
    assert post_decision(server, {"id": "t03", "decision": None})[0] == 200
    assert read_decisions(ds.root) == {}


@pytest.mark.parametrize("content, message", [
    ("{not json", "malformed or truncated JSON"),
    ('{"format": "other"}', "not a decisions file"),
    ('{"format": "cirsynth-decisions", "version": 1, "decisions": {"t00": {"decision": "yes", "time": "2026-12-01T00:00:00Z"}}}', "decision must be one of"),
    ('{"format": "cirsynth-decisions", "version": 1, "decisions": {"t00": {"decision": "accept", "time": "yesterday"}}}', "ISO 8601"),
    ('{"format": "cirsynth-decisions", "version": 1, "decisions": {"zz": {"decision": "accept", "time": "2026-12-01T00:00:00Z"}}}', "does not hold"),
])
def test_malformed_decisions_file_is_a_clear_error_and_changes_nothing(gallery_ds, content, message, capsys):
    (gallery_ds.root / "decisions.json").write_text(content)
    shards = {p: p.read_bytes() for p in gallery_ds.shard_paths()}
    with pytest.raises(DataError, match=message):
        apply_decisions(gallery_ds.root)
    assert main(["curate", str(gallery_ds.root)]) == 2
    assert message.split()[0] in capsys.readouterr().err
    assert {p: p.read_bytes() for p in gallery_ds.shard_paths()} == shards
    assert (gallery_ds.root / "decisions.json").read_text() == content
    if message != "does not hold":  # the gallery refuses to start on a file it cannot read
        with pytest.raises(DataError, match=message):
            Gallery(gallery_ds.root)


def test_curate_keeps_rows_records_decisions_and_is_idempotent(gallery_ds, tmp_path, capsys):
    root = gallery_ds.root
    before = gallery_ds.table().to_pylist()
    write_decisions(root, {"t03": {"decision": "accept", "time": "2026-12-01T10:00:00Z"},
                           "t04": {"decision": "reject", "time": "2026-12-01T10:01:00Z"},
                           "t05": {"decision": "flag", "time": "2026-12-01T10:02:00Z"}})
    assert main(["curate", str(root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status_changed_from_filter"] == {"accepted->rejected": 1, "rejected->accepted": 1} and out["flagged"] == 1
    rows = {r["id"]: r for p in TripletDataset(root).shard_paths() for r in pq.read_table(p).to_pylist()}
    assert len(rows) == len(before)
    for b in before:  # every original row and score kept
        r = rows[b["id"]]
        assert r["scores"] == b["scores"] and r["filter_status"] == b["status"] and r["filter_reason"] == b["reason"]
    assert (rows["t03"]["status"], rows["t03"]["human_decision"], rows["t03"]["decided_at"]) == ("accepted", "accept", "2026-12-01T10:00:00Z")
    assert rows["t04"]["status"] == "rejected" and rows["t04"]["reason"].startswith("human")
    assert rows["t05"]["status"] == "accepted" and rows["t05"]["human_decision"] == "flag"
    assert rows["t06"]["human_decision"] is None and rows["t06"]["status"] == "rejected"
    accepted = {t.id for t in TripletDataset(root).triplets(status="accepted")}
    assert "t03" in accepted and "t04" not in accepted
    # applying twice changes nothing
    shards = {p: p.read_bytes() for p in gallery_ds.shard_paths()}
    assert apply_decisions(root).shards_rewritten == 0
    assert {p: p.read_bytes() for p in gallery_ds.shard_paths()} == shards
    # undoing a decision gives the filter's verdict back, original reason included
    write_decisions(root, {"t04": {"decision": "reject", "time": "2026-12-01T10:01:00Z"}})
    apply_decisions(root)
    t03 = next(t for t in TripletDataset(root).triplets() if t.id == "t03")
    assert t03.status == "rejected" and t03.reason == next(b["reason"] for b in before if b["id"] == "t03")


def test_curated_status_changes_the_export(gallery_ds, tmp_path, capsys):
    root = gallery_ds.root

    def exported(dst):
        assert main(["export", "--format", "webdataset", str(root), str(dst)]) == 0
        import tarfile

        names = [m.name for p in sorted(dst.glob("*.tar")) for m in tarfile.open(p)]
        metas = [json.load(tarfile.open(p).extractfile(n)) for p in sorted(dst.glob("*.tar")) for n in tarfile.open(p).getnames() if n.endswith(".json")]
        return names, {m["id"] for m in metas}

    n_before, ids_before = exported(tmp_path / "e1")
    write_decisions(root, {"t03": {"decision": "accept", "time": "2026-12-01T10:00:00Z"},
                           "t04": {"decision": "reject", "time": "2026-12-01T10:01:00Z"}})
    assert main(["curate", str(root)]) == 0
    n_after, ids_after = exported(tmp_path / "e2")
    assert "t03" not in ids_before and "t04" in ids_before
    assert ids_after == (ids_before - {"t04"}) | {"t03"} and len(n_after) == len(n_before)


def test_plots_written_with_thresholds_and_notes(gallery_ds):
    view = ManifestView(gallery_ds.root)
    assert view.thresholds()["clip_dir"] == 0.25  # the run's own setting, from dataset.json
    res = make_plots(view)
    names = {p.split("/")[-1] for p in res["plots"]}
    assert names == {"score_clip_i2i.png", "score_clip_dir.png", "score_psnr_outside.png", "acceptance_by_edit_type.png", "failures.png"}
    for p in res["plots"]:
        assert (gallery_ds.root / p).read_bytes()[:4] == b"\x89PNG"
    assert any("precision" in n and "skipped" in n for n in res["notes"])
    # with ground-truth verdicts (as a world run has) the precision plot is made
    (gallery_ds.root / "ground_truth.jsonl").write_text("\n".join(json.dumps({"id": f"t{i:02d}", "success": i % 4 == 0}) for i in range(12)))
    assert "report/precision_by_edit_type.png" in make_plots(view)["plots"]
    (gallery_ds.root / "ground_truth.jsonl").write_text('{"id": "t00"}\n')
    with pytest.raises(DataError, match="success"):
        make_plots(view)


def test_gallery_command_writes_plots_and_serves(gallery_ds, capsys):
    import subprocess
    import sys
    import urllib.request

    assert main(["gallery", str(gallery_ds.root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == 12 and out["counts"] == {"accepted": 7, "rejected": 4, "failed": 1}
    assert all(os.path.isfile(p) for p in out["plots"]) and len(out["plots"]) == 5
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "cirsynth", "gallery", str(gallery_ds.root), "--serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while "gallery at" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        url = line.split()[2]
        assert url.startswith("http://127.0.0.1:")
        meta = json.load(urllib.request.urlopen(url + "api/meta", timeout=10))
        assert meta["total"] == 12 and len(meta["plots"]) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)
