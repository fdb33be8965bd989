"""The columns each trainer reads from a tokenized folder, so that it trains on exactly dataprep's labels.

A consumer that reads the ``labels`` column gets dataprep's labels token for token. The trouble is consumers that
read something else, or choke on a column they did not expect:

- ``dataprep`` (the default): ``id``, ``input_ids``, ``attention_mask``, ``labels``, ``length``. ``dataprep train``,
  transformers' ``Trainer`` with ``DataCollatorForSeq2Seq`` (``length`` feeds length grouping), plain torch and
  TRL >= 1.7 train on it exactly. It stays the default because it is the one layout every row id travels in and
  every other layout is a projection of it.
- ``trl``: the default plus ``assistant_masks`` and ``completion_mask`` (1 where ``labels`` is not -100). Read
  from TRL's source at each tag, and run with 0.18.2, 0.24, 1.6 and 1.16: TRL 0.20-1.6 drop ``labels`` when
  packing (0.22-1.6 also under liger) and rebuild them from ``input_ids`` masked by ``assistant_masks``/
  ``completion_mask``; 0.20-0.21 under liger keep only ``completion_mask``, applied with
  ``completion_only_loss=True``; 0.19 honours ``assistant_masks`` unpacked and packs ``input_ids`` alone;
  0.17-0.18 drop ``labels`` always and honour only ``completion_mask``, with ``completion_only_loss=True``.
  TRL >= 1.7 uses ``labels`` as they are (the masks then change nothing).
- ``llamafactory``, ``axolotl``, ``plain``: only ``input_ids``/``attention_mask``/``labels``. LLaMA-Factory's
  collator breaks on the string ``id`` column; axolotl asks for exactly these three columns; ``plain`` is the same
  for a hand-written loop (``with_format("torch")`` on every column). The row ids are kept beside the splits in
  ``ids/<split>.jsonl`` (line i = row i), so no row becomes anonymous. The first two also get a ready config
  (:func:`dataprep.consumers.config_files`).

Everything here is pyarrow: no torch, no datasets import, nothing per token in Python.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataprep.errors import UsageProblem

IGNORE_INDEX = -100
IDS_DIR = "ids"
MASK_TYPE = pa.int8()


@dataclass(frozen=True)
class Layout:
    """One consumer's view of a causal dataset: the columns its splits hold, in order, and what goes beside them."""

    name: str
    columns: tuple[str, ...]
    ids_beside: bool
    summary: str


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("dataprep", ("id", "input_ids", "attention_mask", "labels", "length"), False,
               "every column: dataprep train, transformers Trainer, plain torch, TRL >= 1.7"),
        Layout("trl", ("id", "input_ids", "attention_mask", "labels", "assistant_masks", "completion_mask", "length"),
               False, "adds assistant_masks and completion_mask, which TRL 0.17-1.6 read instead of labels"),
        Layout("llamafactory", ("input_ids", "attention_mask", "labels"), True,
               "the three columns LLaMA-Factory's tokenized_path takes; ids beside; llamafactory.yaml"),
        Layout("axolotl", ("input_ids", "attention_mask", "labels"), True,
               "the three columns of axolotl's pre-tokenized path; ids beside; axolotl.yaml"),
        Layout("plain", ("input_ids", "attention_mask", "labels"), True,
               "model inputs only, for a hand-written loop; ids beside"),
    )
}
TARGETS = tuple(LAYOUTS)
DEFAULT_TARGET = "dataprep"


def layout(target: str) -> Layout:
    try:
        return LAYOUTS[target]
    except KeyError:
        raise UsageProblem(f"--emit-for must be one of {', '.join(TARGETS)}, not {target!r}") from None


def check_task(target: str, task: str) -> None:
    """Only causal datasets have per-consumer layouts; a classification dataset is the same for every trainer."""
    layout(target)
    if task != "causal" and target != DEFAULT_TARGET:
        raise UsageProblem(f"--emit-for {target} applies to causal datasets; a {task} dataset has one layout")


PACKED_TARGETS = ("dataprep", "trl")


def check_packed(target: str) -> None:
    """Only layouts that keep packed examples apart: the others would hand a trainer rows whose examples attend to
    each other (an all-ones mask over a pack), so they are refused with what to do instead."""
    layout(target)
    if target not in PACKED_TARGETS:
        raise UsageProblem(f"--emit-for {target} does not apply to packed rows: its three columns cannot keep the "
                           "examples of a pack apart (no position_ids, no seq_lengths)",
                           hint=f"give {target} the unpacked folder (dataprep tokenize --emit-for {target}) and let "
                                "it pack, or pack for dataprep train or TRL (--emit-for dataprep|trl)")


def packed_schema(target: str, base: pa.Schema) -> pa.Schema:
    """The packed split schema for ``target``: ``base`` (pack's own columns), plus TRL's masks for ``trl``."""
    check_packed(target)
    if target == "trl":
        return base.append(pa.field("assistant_masks", pa.list_(MASK_TYPE))).append(
            pa.field("completion_mask", pa.list_(MASK_TYPE)))
    return base


def packed_columns(target: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    """A packed batch in ``target``'s layout (see :func:`packed_schema`)."""
    if target != "trl":
        return batch
    masks = supervised_mask(batch.column("labels"))
    return pa.RecordBatch.from_arrays([*batch.columns, masks, masks],
                                      names=[*batch.schema.names, "assistant_masks", "completion_mask"])


def schema_for(target: str, base: pa.Schema) -> pa.Schema:
    """The split schema for ``target``, derived from the causal schema (``base``, e.g. ``CAUSAL_SCHEMA``)."""
    fields = []
    for name in layout(target).columns:
        if name in ("assistant_masks", "completion_mask"):
            fields.append(pa.field(name, pa.list_(MASK_TYPE)))
        else:
            fields.append(base.field(name))
    return pa.schema(fields)


def supervised_mask(labels: pa.ListArray) -> pa.ListArray:
    """1 where a label is supervised (not -100), 0 elsewhere, row for row with ``labels``."""
    values = pc.cast(pc.not_equal(labels.values, pa.scalar(IGNORE_INDEX, labels.type.value_type)), MASK_TYPE)
    return pa.ListArray.from_arrays(labels.offsets, values)


def columns_for(target: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` (the causal columns) reduced or extended to what ``target`` trains on; one Arrow pass per column."""
    wanted = layout(target).columns
    arrays: list[pa.Array] = []
    masks: pa.Array | None = None
    for name in wanted:
        if name in ("assistant_masks", "completion_mask"):
            if masks is None:
                masks = supervised_mask(batch.column("labels"))
            arrays.append(masks)
        else:
            arrays.append(batch.column(name))
    return pa.RecordBatch.from_arrays(arrays, names=list(wanted))


def ids_beside(target: str, batch: pa.RecordBatch) -> list[str] | None:
    """The row ids a layout leaves out of its splits, for ``ids/<split>.jsonl``; ``None`` when the split keeps them."""
    return batch.column("id").to_pylist() if layout(target).ids_beside else None


def longest_in(batch: pa.RecordBatch) -> int:
    """The longest row of a batch, in tokens: what the manifest's per-split ``longest`` keeps (the maximum)."""
    if not batch.num_rows:
        return 0
    return int(pc.max(pc.list_value_length(batch.column("input_ids"))).as_py())


def ids_lines(ids: list[str]) -> str:
    """``ids/<split>.jsonl`` text: one JSON string per line (an id may hold any character, a newline too)."""
    return "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ids)


def read_ids(folder: str | Path, split: str) -> list[str]:
    """Row ids of ``split`` from ``ids/<split>.jsonl``: line i is the id of row i."""
    path = Path(folder) / IDS_DIR / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- a DatasetDict folder that datasets 3.x, 4.x and 5.x all load ----------------------------------------------

def legacy_features(schema: pa.Schema) -> dict[str, Any]:
    """``features`` of ``dataset_info.json`` in the form datasets 3.x reads and 4.x/5.x still accept.

    datasets >= 4.0 writes a list column as ``{"_type": "List"}``, a type 3.x does not know ("Feature type 'List'
    not found"); ``{"_type": "Sequence"}`` is read by 3.x as a sequence and by 4.x/5.x as a ``List``.
    """
    return {f.name: _feature(f.type) for f in schema}


def _feature(t: pa.DataType) -> dict[str, Any]:
    if pa.types.is_list(t):
        return {"feature": _feature(t.value_type), "_type": "Sequence"}
    if pa.types.is_string(t):
        return {"dtype": "string", "_type": "Value"}
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return {"dtype": str(t), "_type": "Value"}
    raise ValueError(f"no datasets feature for Arrow type {t}")


def write_dataset_dict(folder: str | Path, parts: Mapping[str, str | Path], fingerprints: Mapping[str, str]) -> None:
    """Move Arrow stream files (one per split, written without datasets' schema metadata) into a folder that
    ``datasets.load_from_disk`` opens, in the layout ``save_to_disk`` writes, readable by datasets 3.x to 5.x.

    Why not ``save_to_disk``: it copies every byte once more, and stamps each Arrow file with its own ``List``
    features in the schema metadata, which datasets 3.x refuses even when ``dataset_info.json`` is rewritten.
    Here each part file is renamed into place (no copy), and the features are written once, in the old form.
    ``fingerprints`` (one per split, from the cache key) keep two runs byte-identical.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    names = list(parts)
    for split in names:
        source = Path(parts[split])
        with pa.memory_map(str(source)) as stream:
            schema = pa.ipc.open_stream(stream).schema
        if schema.metadata and b"huggingface" in schema.metadata:
            raise ValueError(f"{source}: carries datasets' own features metadata; write it without")
        target = root / split
        target.mkdir()
        source.replace(target / "data-00000-of-00001.arrow")
        _write_json(target / "dataset_info.json", {"citation": "", "description": "",
                                                   "features": legacy_features(schema), "homepage": "",
                                                   "license": ""})
        _write_json(target / "state.json", {"_data_files": [{"filename": "data-00000-of-00001.arrow"}],
                                            "_fingerprint": fingerprints[split], "_format_columns": None,
                                            "_format_kwargs": {}, "_format_type": None,
                                            "_output_all_columns": False, "_split": None})
    _write_json(root / "dataset_dict.json", {"splits": names})


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


# -- an existing folder in another layout ----------------------------------------------------------------------

def convert_folder(source: str | Path, target_dir: str | Path, target: str) -> Path:
    """Write the dataprep folder ``source`` again in ``target``'s layout, without tokenizing anything again.

    The splits are read memory-mapped and rewritten batch by batch; ``tokenizer/`` and ``dataprep.json`` are
    copied (the manifest gains ``"emit_for"``, and each split its ``longest`` row if it lacks one); the ids a layout leaves out go to ``ids/<split>.jsonl``; the
    consumer's config, if it has one, is written beside (:func:`dataprep.consumers.config_files`).
    """
    import shutil

    from dataprep.consumers import config_files

    src, out = Path(source), Path(target_dir)
    manifest = json.loads((src / "dataprep.json").read_text(encoding="utf-8"))
    check_task(target, manifest.get("task", "causal"))
    splits = json.loads((src / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    out.mkdir(parents=True)
    work = out / ".parts"
    work.mkdir()
    parts, fingerprints = {}, {}
    for split in splits:
        state = json.loads((src / split / "state.json").read_text(encoding="utf-8"))
        writer = schema = None
        ids: list[str] = []
        longest = 0
        for item in state["_data_files"]:
            with pa.memory_map(str(src / split / item["filename"])) as source_file:
                reader = pa.ipc.open_stream(source_file)
                for batch in reader:
                    shaped = columns_for(target, batch)
                    if writer is None:
                        schema = shaped.schema.remove_metadata()
                        writer = pa.ipc.new_stream(str(work / f"{split}.arrow"), schema)
                    writer.write_batch(pa.RecordBatch.from_arrays(shaped.columns, schema=schema))
                    longest = max(longest, longest_in(batch))
                    kept = ids_beside(target, batch)
                    if kept is not None:
                        ids.extend(kept)
        if writer is None:
            raise ValueError(f"{src / split}: no record batches")
        writer.close()
        parts[split] = work / f"{split}.arrow"
        manifest["splits"][split].setdefault("longest", longest)
        fingerprints[split] = f"{state['_fingerprint']}-{target}"[:64]
        if layout(target).ids_beside:
            (out / IDS_DIR).mkdir(exist_ok=True)
            (out / IDS_DIR / f"{split}.jsonl").write_text(ids_lines(ids), encoding="utf-8")
    write_dataset_dict(out, parts, fingerprints)
    work.rmdir()
    shutil.copytree(src / "tokenizer", out / "tokenizer")
    manifest["emit_for"] = target
    _write_json(out / "dataprep.json", manifest)
    for name, text in config_files(target, manifest, out).items():
        (out / name).write_text(text, encoding="utf-8")
    return out
