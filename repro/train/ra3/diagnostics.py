"""What an RA3 run shows, read from its round directories: E-step curves, where thoughts landed, and
printed examples of the infused corpus.
"""

import json
from pathlib import Path

from repro.core.files import atomic_write
from repro.train.ra3.thoughts import segment_lines


def reference_thoughts(row: dict) -> dict[int, str]:
    """A tiny-world expert row's true intents by RA3 boundary (the logical line where each skill block
    starts; rows carry `block_starts` line indices and `intents`)."""
    starts = dict(zip(row["block_starts"], row["intents"], strict=True))
    lines = {k: row["text"][: segment.code_start].count("\n") for k, segment in enumerate(segment_lines(row["text"]))}
    return {k: starts[line] for k, line in lines.items() if k and line in starts}


def ra3_diagnostics(ra3_dir: Path, expert_rows: list[dict] | None = None, examples: int = 3) -> dict:
    """What an RA3 run shows, from its round directories: E-step curves (estep.png), a few printed
    infused examples (examples.md), and for the tiny world (whose rows record each skill block's start
    and true intent) where the infused thoughts landed and whether they say the block's intent: the
    share at block starts, `thought_accuracy` (the share equal to the true intent there) and
    `intent_recall` (the share of blocks given a thought). Returns what it wrote to diagnostics.json."""
    rounds = sorted(Path(ra3_dir).glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    curves = [json.loads(line) for r in rounds for line in open(r / "estep.jsonl")]
    result: dict = {"estep": curves, "rounds": []}
    shown = []
    for r in rounds:
        infused = [json.loads(line) for line in open(r / "infused.jsonl")]
        entry = {"round": r.name, "thoughts_per_snippet": sum(len(x["thoughts"]) for x in infused) / len(infused)}
        if expert_rows is not None:
            at = right = total = blocks = covered = 0
            for row, x in zip(expert_rows, infused, strict=True):
                reference = reference_thoughts(row)
                blocks += len(reference)
                for k, text in x["thoughts"].items():
                    total += 1
                    at += int(k) in reference
                    right += " ".join(text.split()) == " ".join(reference.get(int(k), "").split())
                covered += sum(str(k) in x["thoughts"] for k in reference)
            entry |= {"thoughts_at_block_starts": at / total if total else None,
                      "thought_accuracy": right / total if total else None, "intent_recall": covered / max(1, blocks)}
        result["rounds"].append(entry)
        shown = [x["text"] for x in infused if x["thoughts"]][:examples]
    atomic_write(Path(ra3_dir) / "diagnostics.json", json.dumps(result, indent=2) + "\n")
    atomic_write(Path(ra3_dir) / "examples.md", "".join(
        f"### Example {i + 1} (final round)\n\n```python\n{text}```\n\n" for i, text in enumerate(shown)))
    if curves:
        _plot_estep(curves, Path(ra3_dir) / "estep.png")
    return result


def _plot_estep(curves: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("mean_reward", "mean reward (ELBO estimate, nats)"), ("think_rate", "think rate"),
              ("thought_tokens", "mean thought length (tokens)"), ("lines_per_thought", "lines per thought"))
    if any(c.get("thought_accuracy") is not None for c in curves):
        panels += (("thought_accuracy", "thoughts equal to the true intent"),)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    x = list(range(1, len(curves) + 1))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(x, [c[key] if c.get(key) is not None else float("nan") for c in curves], marker=".")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("E-step step (all rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
