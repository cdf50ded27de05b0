"""Memory held per training token: the in-memory pack against the memory-mapped token file.

On the tiny world's expert corpus (built under ROOT if missing) with a tokenizer trained on its
pretraining corpus at the tiny scale's vocabulary, measures with tracemalloc (Python and NumPy
allocations) what `repro.train.ntp.pack` holds once built and at its peak, and what
`repro.train.tokens.build` + `open_rows` hold (the file written in batches, then mapped); then the
resident memory that reading every row of the map adds (file pages: the page cache's, shared by the
ranks of a node and given back under pressure, unlike the heap). The token file's peak is one batch of
`tokens.ENCODE_BATCH` texts being tokenized, whatever the corpus size; the pack's grows with it.

    python benchmarks/token_memory.py [--root DIR]
"""

import argparse
import json
import resource
import tempfile
import tracemalloc
from pathlib import Path

from repro import pipeline
from repro.core.files import read_jsonl
from repro.core.scale import load_scale
from repro.train import tokens
from repro.train.ntp import pack
from repro.train.pretrain import train_tokenizer


def held(build) -> tuple[object, int, int]:
    """What `build()` returns, the bytes it still holds through that result, and its peak."""
    tracemalloc.start()
    result = build()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, current, peak


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(root: Path) -> None:
    scale = load_scale("tiny")
    world = pipeline.world_stage(scale, root)
    texts = [row["text"] for row in read_jsonl(world / "expert.jsonl")]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer([row["text"] for row in read_jsonl(world / "pretrain.jsonl")], scale.tokenizer,
                                    Path(tmp) / "tokenizer")
        seq_len = scale.ntp.seq_len
        packed, pack_held, pack_peak = held(lambda: pack(texts, tokenizer, seq_len))
        n = packed.size
        file = Path(tmp) / "tokens.bin"
        rows, map_held, map_peak = held(lambda: (tokens.build(texts, tokenizer, file), tokens.open_rows(file, seq_len)))
        rows = rows[1]
        before = rss_kib()
        total = int(rows.sum(dtype="int64"))  # touches every page of the map
        mapped_kib = rss_kib() - before
        assert total == int(packed.sum(dtype="int64")) and rows.size == n
    print(json.dumps({
        "texts": len(texts), "tokens_in_rows": n, "token_file_dtype": str(rows.dtype),
        "file_bytes_per_token": rows.itemsize, "encode_batch_texts": tokens.ENCODE_BATCH,
        "pack_held_bytes": pack_held, "pack_held_bytes_per_token": round(pack_held / n, 2),
        "pack_peak_bytes": pack_peak,
        "token_file_held_bytes": map_held, "token_file_held_bytes_per_token": round(map_held / n, 3),
        "token_file_peak_bytes": map_peak,
        "resident_kib_added_by_reading_every_row": mapped_kib,
    }, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="runs directory holding (or to hold) the tiny world")
    main(parser.parse_args().root)
