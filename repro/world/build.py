"""Writing the tiny code world to a directory: four JSONL files, then `manifest.json` last.

Files:
- `pretrain.jsonl`, `expert.jsonl`: one function per line, `{"text", "block_starts", "commented",
  "skills"}`; `block_starts[i]` is the line index in `text.splitlines()` where block i starts (its
  comment line when `commented[i]`, else its first line of code);
- `rl_tasks.jsonl`, `heldout.jsonl`: tasks in the HumanEval schema, `task_id` `TinyWorld/<split>/<n>`;
- `manifest.json`: the config, row counts, each file's sha256, bytes and mean characters per row,
  the skills, the held-out pairs, and the skills of every RL and held-out task.

Each file is replaced atomically and an old manifest is removed first, so a directory with a
manifest is complete. The same config gives byte-identical files. The default config
(`configs/world/tiny.yaml`) builds in about 20 s on one core (single-threaded; 33 MB in all).
`world_dir(config)` is the cached build every stage and benchmark reads: `runs/world/<config
hash>/`, marked done (with each file's sha256) once built.
"""

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

from repro.core import ranks, runs
from repro.core.files import atomic_write
from repro.world.config import WorldConfig
from repro.world.skills import SKILLS
from repro.world.splits import adjacent_pairs, generate
from repro.world.tasks import corpus_row, humaneval_row

log = logging.getLogger(__name__)

FILES = ("pretrain.jsonl", "expert.jsonl", "rl_tasks.jsonl", "heldout.jsonl")


def build_world(config: WorldConfig, out_dir: Path) -> dict:
    start = time.monotonic()
    out_dir = Path(out_dir)
    world = generate(config)
    ids = {split: [f"TinyWorld/{split}/{i}" for i in range(len(world[split]))] for split in ("rl", "heldout")}
    rows = {
        "pretrain.jsonl": [corpus_row(task, flags, config.n_examples) for task, flags in world["pretrain"]],
        "expert.jsonl": [corpus_row(task, flags, config.n_examples) for task, flags in world["expert"]],
        "rl_tasks.jsonl": [humaneval_row(task, task_id, config.n_examples)
                           for task, task_id in zip(world["rl"], ids["rl"], strict=True)],
        "heldout.jsonl": [humaneval_row(task, task_id, config.n_examples)
                          for task, task_id in zip(world["heldout"], ids["heldout"], strict=True)],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # an interrupted rebuild must not look finished
    files = {}
    for name in FILES:
        text = "".join(json.dumps(row) + "\n" for row in rows[name])
        atomic_write(out_dir / name, text)
        chars = [len(row["text"] if "text" in row else row["prompt"] + row["canonical_solution"])
                 for row in rows[name]]
        files[name] = {"sha256": hashlib.sha256(text.encode()).hexdigest(), "bytes": len(text.encode()),
                       "rows": len(rows[name]), "mean_chars_per_function": round(sum(chars) / len(chars), 1)}
    manifest = {
        "config": dataclasses.asdict(config),
        "counts": {name: files[name]["rows"] for name in FILES},
        "files": files,
        "skills": [skill.name for skill in SKILLS],
        "n_adjacent_pairs": len(adjacent_pairs()),
        "heldout_pairs": [list(pair) for pair in world["heldout_pairs"]],
        "behaviours": world["behaviours"],
        "compositions": {split: {task_id: [skill.name for skill in task.skills]
                                 for task_id, task in zip(ids[split], world[split], strict=True)}
                         for split in ("rl", "heldout")},
    }
    atomic_write(out_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    log.info("tiny world: %s in %s (%.1f s)", manifest["counts"], out_dir, time.monotonic() - start)
    return manifest


def world_dir(config: WorldConfig, root: Path | None = None) -> Path:
    """The world's files, built once per config into `runs/world/<hash>/` (its DONE.json names each
    file's sha256, the identity later stages record)."""
    path = runs.stage_dir("world", config, root)
    if not runs.is_done(path) and not ranks.is_main():  # under torchrun rank 0 builds it (seconds), the others wait
        runs.wait_done(path)
    if not runs.is_done(path):
        with runs.stage_log(path):
            log.info("building the tiny world in %s", path)
            manifest = build_world(config, path)
        runs.mark_done(path, {"files": manifest["files"], "counts": manifest["counts"]})
    return path
