"""The stage cache: rows come back equal, with their locations; entries appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

from dataprep.cache import Cache, RecordsFile, key, read_records
from dataprep.io import Batch


def test_rows_and_locations_round_trip(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "tab\there\nnewline", "meta": {"n": 1.5, "big": 2**70, "x": None}},
            {"id": "b", "response": "中文 🎉", "history": [["q", "a"]], "small": -1e-300}]
    out = RecordsFile(tmp_path / "rows.jsonl.zst")
    out.write(Batch("data\tfile.jsonl", rows, [3, 0], [0, 7]))
    out.close(ok=True)
    (batch,) = read_records(tmp_path / "rows.jsonl.zst", split="train")
    assert batch.records == rows and batch.split == "train"
    assert [batch.location(i) for i in range(2)] == ["data\tfile.jsonl:3", "data\tfile.jsonl[7]"]


def test_an_entry_appears_only_when_committed(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    digest = key("filter", input="x", options={"min": 1})
    assert digest == key("filter", options={"min": 1}, input="x") != key("filter", input="x", options={"min": 2})
    entry = cache.new("filter", digest)
    entry.file("rows.jsonl.zst").write_bytes(b"")
    assert not cache.has("filter", digest)
    entry.meta["report"] = {"rows_in": 0}
    entry.commit()
    assert cache.has("filter", digest) and cache.meta("filter", digest)["report"] == {"rows_in": 0}
    again = cache.new("filter", digest)  # a second run committing the same key keeps the first entry
    again.commit()
    aborted = cache.new("filter", key("filter", input="y"))
    aborted.abort()
    assert [p.name for p in (tmp_path / "c" / "filter").iterdir()] == [digest]


def test_a_throw_away_cache_leaves_nothing() -> None:
    cache = Cache(None)
    root = cache.root
    cache.new("split", "k").commit()
    assert root.is_dir() and not cache.persistent
    cache.close()
    assert not root.exists()


def test_split_rows_derived_from_the_entry_they_came_from(tmp_path: Path) -> None:
    """A derived rows file stores split's two fields per row and rebuilds each row from the upstream row it
    stands for, as split makes it; a row whose line does not end in those fields is stored whole."""
    from dataprep.io import dumps
    from dataprep.split import derive

    upstream = [{"id": "a", "prompt": "p", "meta": {"k": 1}}, {"id": "b", "prompt": "q", "split": "old"},
                {"id": "c", "prompt": "r", "zz": 1}]
    emitted = [derive(upstream[0], 0, "train"), derive(upstream[1], 3, "validation"), derive(upstream[2], 1, "test")]
    assert list(emitted[1]) == ["id", "prompt", "len_bucket", "split"] and list(emitted[2])[-1] == "zz"
    stored = RecordsFile(tmp_path / "up.jsonl.zst")
    stored.write(Batch("in.jsonl", upstream, [1, 2, 3], [0, 1, 2]))
    stored.close(ok=True)
    out = RecordsFile(tmp_path / "rows.jsonl.zst", derived=True)
    out.write(Batch("", emitted, locs=["in.jsonl:1", "in.jsonl:2", "in.jsonl:3"],
                    encoded=[dumps(r) for r in emitted]))
    out.close(ok=True)
    import pyarrow as pa

    with pa.CompressedInputStream(pa.OSFile(str(tmp_path / "rows.jsonl.zst")), "zstd") as raw:
        text = raw.read().decode()
    assert text.splitlines()[:2] == ["+0\ttrain", "+3\tvalidation"] and text.splitlines()[2].startswith('"in.jsonl:3"')
    (batch,) = read_records(tmp_path / "rows.jsonl.zst", upstream=read_records(tmp_path / "up.jsonl.zst"),
                            lockstep=True)
    assert batch.records == emitted and [list(r) for r in batch.records] == [list(r) for r in emitted]
    assert batch.locs == ["in.jsonl:1", "in.jsonl:2", "in.jsonl:3"]
