"""ra3-repro: a reproduction suite for RA3 (arXiv:2509.25810).

The package is layered; each layer imports only from the layers before it (a test parses every
import, function-level ones included, and fails on an upward import or a cycle):

    core -> world -> eval -> train -> rlvr -> pipeline -> plan -> claims -> report -> fetch -> cli
"""

__version__ = "0.1.0"

LAYERS = ("core", "world", "eval", "train", "rlvr", "pipeline", "plan", "claims", "report", "fetch", "cli")
"""The sub-packages and modules of `repro`, lowest first."""
