"""The tiny code world: a seeded generator of Python function tasks composed from skills.

The tiny scale trains a model of about a million parameters from scratch on 2 CPU cores in
minutes; this world gives it code where RA3's mechanism can show: each function chains 2 to 4
skills (multi-line blocks with a natural-language intent), so an intent comment written at a
block's start makes the following lines predictable. See `skills.py` (the library and naming
convention), `tasks.py` (one task and its renderings), `splits.py` (the four splits, disjoint by
skill composition) and `build.py` (the files and manifest).

    from repro.core.config import CONFIG_DIR, load
    from repro.world import WorldConfig, world_dir
    path = world_dir(load(WorldConfig, CONFIG_DIR / "world" / "tiny.yaml"))   # cached in runs/world/
"""

from repro.world.build import build_world, world_dir
from repro.world.config import WorldConfig

__all__ = ["WorldConfig", "build_world", "world_dir"]
