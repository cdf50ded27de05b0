"""`ra3-repro report RUN_DIR`: a Markdown and a self-contained HTML report of finished claim runs.

A claim run directory holds `record.json` (written last by the claim's `run`), its plots (`*.png`)
and its per-sample outputs. The report shows, per run: the verdicts of `check(record)` (the same
function `ra3-repro verify` calls), the record's tables (ours beside the paper's, as the claim wrote
them: this module invents no number), every plot, the provenance (config hash, seeds, commit, versions,
hardware, data sha256, image digest, stage directories) and links to the per-sample outputs, saying
which are missing. RUN_DIR may also hold several claim runs as RUN_DIR/<name>/record.json: one
section each, and a summary of all verdicts on top.

The HTML needs nothing but itself: plots are data URIs, the style is inline, links are relative
paths (to files next to the run, as the Markdown's are). Every text from a record is escaped.

    ra3-repro report RUN_DIR [--out DIR]    # DIR/report.md and DIR/report.html (default DIR = RUN_DIR)
"""

import base64
import dataclasses
import html
import json
import logging
import os
import re
from pathlib import Path
from urllib.parse import quote

from repro import __version__
from repro.claims import module
from repro.claims.record import load_record
from repro.claims.verdicts import STATUSES, claims_of, counts, guard_counts, guards_of, overall
from repro.core.config import ConfigError
from repro.core.files import DataError, atomic_write

log = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class Run:
    """One claim run as the report sees it."""

    name: str
    """The run directory's name (the claim id for the directories a full reproduction writes)."""
    path: Path
    record: dict
    verdicts: list
    plots: list[Path]
    links: list[tuple[str, str, bool]]
    """(label, path inside the run directory, exists): the record, outcome and sample files, the record's `links`."""


def load_run(run_dir: Path) -> Run:
    """A run's record (with the outcomes it links, as `verify` reads it), its verdicts from its claim's
    `check`, its plots and its per-sample files."""
    path = Path(run_dir) / "record.json"
    record = load_record(run_dir)  # checked against the record's schema (repro/claims/record.py)
    claim = module(record["claim"])
    try:
        verdicts = claim.check(record)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: the {record['claim']} check could not read this record "
                        f"({type(exc).__name__}: {exc})") from None
    return Run(Path(run_dir).resolve().name, Path(run_dir), record, verdicts, sorted(Path(run_dir).glob("*.png")),
               _links(record, Path(run_dir)))


def _links(record: dict, run_dir: Path) -> list[tuple[str, str, bool]]:
    """The record, every outcome file (`check` has read them, so they exist) with the samples.jsonl
    beside it where there is one, then the record's `links`, each said missing where it is."""
    links = [("record", "record.json", True)]
    for label, link in record.get("outcome_files", {}).items():
        links.append((f"outcomes {label}", link, True))
        samples = Path(link).with_name("samples.jsonl")
        if (run_dir / samples).exists():
            links.append((f"samples {label}", samples.as_posix(), True))
    for label, link in record.get("links", {}).items():
        exists = (run_dir / link).exists()
        if not exists:
            log.warning("%s links %s = %s, which is missing", run_dir / "record.json", label, link)
        links.append((label, link, exists))
    return links


def find_runs(run_dir: Path) -> list[Run]:
    """RUN_DIR itself when it holds record.json, else every RUN_DIR/<name>/record.json."""
    run_dir = Path(run_dir)
    if (run_dir / "record.json").exists() or not run_dir.is_dir():
        return [load_run(run_dir)]
    children = sorted(p.parent for p in run_dir.glob("*/record.json"))
    if not children:
        raise DataError(f"{run_dir}: expected record.json there or in its subdirectories (a finished claim run, "
                        "or a directory of them); found neither")
    return [load_run(child) for child in children]


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e12 else f"{value:.4g}"
    return str(value)


def _band(band) -> str:
    low, high = band
    return f"[{'-inf' if low is None else _number(low)}, {'inf' if high is None else _number(high)}]"


def _counts_text(verdicts: list) -> str:
    n = counts(verdicts)
    return f"{n['PASS']} passed, {n['FAIL']} failed, {n['INCONCLUSIVE']} inconclusive"


def _guards_text(verdicts: list) -> str:
    n = guard_counts(verdicts)
    return (f"{n['OK']} ok, {n['DRIFT']} drifted, {n['STALE']} stale" if guards_of(verdicts)
            else "no regression guards calibrated for this run")


def _href(target: Path, out_dir: Path) -> str:
    """A relative, percent-encoded link: no scheme can sneak in through a file name."""
    return quote(Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix())


def _provenance(run: Run) -> list[tuple[str, str]]:
    """(term, text) pairs, in the order a reader checks them."""
    record, env = run.record, run.record["environment"]
    git = env.get("git", {})
    hardware = env.get("hardware", {})
    libraries = env.get("libraries", {})
    rows = [("claim", record["claim"]), ("run directory", str(run.path)),
            ("scale", record.get("scale", "not recorded")), ("config hash", record["config_hash"]),
            ("seeds", ", ".join(map(str, record["seeds"]))),
            ("commit", f"{git.get('commit') or 'unknown'}"
                       + {True: " (dirty: uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")),
            ("python", f"{env.get('python', '?')} on {env.get('platform', '?')}"),
            ("libraries", ", ".join(f"{k} {v}" for k, v in libraries.items() if v) or "not recorded"),
            ("hardware", ", ".join(f"{k} {', '.join(map(str, v)) or 'none' if isinstance(v, list) else v}"
                                   for k, v in hardware.items()) or "not recorded"),
            ("sandbox", str(env.get("sandbox", "not recorded")))]
    if "image_digest" in env:
        rows.append(("image digest", str(env["image_digest"])))
    if "seconds" in record:
        rows.append(("wall time", f"{record['seconds']:.1f} s"))
    rows += [(f"data sha256: {name}", sha) for name, sha in record.get("data_sha256", {}).items()] or [
        ("data sha256", "none recorded")]
    rows += [(f"stage: {name}", path) for name, path in record.get("stages", {}).items()]
    return rows


def _title(run: Run) -> str:
    """The claim, and the run's directory name where it says more."""
    return run.record["claim"] + ("" if run.name == run.record["claim"] else f" ({run.name})")


def _no_html(text: str) -> str:
    """Markdown in which no tag can start: `<` before a letter, `/`, `!` or `?` becomes `&lt;`."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def _md(text) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, no raw HTML."""
    return _no_html(str(text).replace("\n", " ").replace("|", "\\|"))


def markdown(runs: list[Run], out_dir: Path) -> str:
    everything = [v for run in runs for v in run.verdicts]
    lines = [f"# RA3 reproduction report: {_md(', '.join(dict.fromkeys(run.record['claim'] for run in runs)))}", "",
             f"**Overall: {overall(everything)}** ({_counts_text(everything)}). "
             f"Paper: arXiv:2509.25810. Report by ra3-repro {__version__}.", ""]
    if len(runs) > 1:
        lines += ["| claim | run | overall | passed | failed | inconclusive |", "|---|---|---|---|---|---|"]
        lines += [f"| {_md(run.record['claim'])} | {_md(run.name)} | {overall(run.verdicts)} | "
                  + " | ".join(str(counts(run.verdicts)[s]) for s in STATUSES) + " |" for run in runs]
        lines.append("")
    for run in runs:
        lines += _markdown_run(run, out_dir, level="##" if len(runs) > 1 else "#")
    return "\n".join(lines) + "\n"


def _markdown_run(run: Run, out_dir: Path, level: str) -> list[str]:
    sub = level + "#"
    lines = []
    if level == "##":
        lines += [f"## {_md(_title(run))}: {overall(run.verdicts)}", ""]
    for title, chosen, text in ((f"{sub} Verdicts on the paper's claims", claims_of(run.verdicts),
                                 _counts_text(run.verdicts)),
                                (f"{sub} Regression guards (not verdicts: does the run behave like calibrated runs "
                                 "of this code?)", guards_of(run.verdicts), _guards_text(run.verdicts))):
        lines += [title, "", text + ".", ""]
        if chosen:
            lines += ["| status | check | measured | reference | band | statistic | why this band |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| **{v.status}** | {_md(v.cell)} | {_md(_number(v.measured))} | {_md(_number(v.reference))} | "
                      f"{_md(_band(v.band))} | {_md(v.statistic)} | {_md(v.reason)} |" for v in chosen]
            lines.append("")
    if run.record.get("tables"):
        lines += [f"{sub} Tables", ""]
        for name, table in run.record["tables"].items():
            lines += [f"**{_md(name)}**", "", _no_html(table.strip()), ""]
    if run.plots:
        lines += [f"{sub} Plots", ""]
        lines += [f"![{plot.name}]({_href(plot, out_dir)})\n" for plot in run.plots]
    lines += [f"{sub} Provenance", "", "| | |", "|---|---|"]
    lines += [f"| {_md(term)} | {_md(text)} |" for term, text in _provenance(run)]
    lines += ["", f"{sub} Per-sample outputs", ""]
    lines += [f"- [{_md(label)}]({_href(run.path / link, out_dir)}) `{link}`" + ("" if exists else " **(missing)**")
              for label, link, exists in run.links]
    if run.record.get("notes"):
        lines += ["", f"{sub} Notes", ""]
        lines += [f"- {_md(note)}" for note in run.record["notes"]]
    return [*lines, ""]


SEPARATOR = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$")


def _cells(line: str) -> list[str]:
    """The cells of one pipe-table row; `\\|` is a literal pipe."""
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def _inline(text: str) -> str:
    """Escaped cell text with the two Markdown marks tables use: `code` and **bold**."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def table_html(text: str, where: str) -> str:
    """A Markdown pipe table (rows start with `|`, the second is the separator) as an HTML table;
    other lines become paragraphs. DataError if `text` holds no such table."""
    blocks: list[list[str]] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):  # a blank line ends a table or a paragraph
        start = len(blocks)
        for line in chunk.splitlines():
            if len(blocks) > start and line.strip().startswith("|") == blocks[-1][0].strip().startswith("|"):
                blocks[-1].append(line)
            else:
                blocks.append([line])
    tables = [block for block in blocks if block[0].strip().startswith("|")]
    if not tables:
        raise DataError(f"{where}: expected a Markdown pipe table (rows starting with |), found none")
    return "\n".join(_table_block(block, where) if block[0].strip().startswith("|")
                     else f"<p>{_inline(' '.join(block))}</p>" for block in blocks)


def _table_block(block: list[str], where: str) -> str:
    if len(block) < 2 or not SEPARATOR.match(block[1].strip()):
        raise DataError(f"{where}: expected a Markdown pipe table (a header row, a |---| separator row, "
                        f"then rows), got {block[0]!r:.80}")
    header = _cells(block[0])
    aligns = ["center" if c.startswith(":") and c.endswith(":") else "right" if c.endswith(":") else ""
              for c in _cells(block[1])]
    aligns = (aligns + [""] * len(header))[:len(header)]
    return (f"<table class=data><thead>{_row(header, aligns, 'th')}</thead><tbody>"
            + "".join(_row(_cells(line), aligns, "td") for line in block[2:]) + "</tbody></table>")


def _row(cells: list[str], aligns: list[str], tag: str) -> str:
    cells = (cells + [""] * len(aligns))[:len(aligns)]
    return "<tr>" + "".join(f"<{tag}{f' style=text-align:{a}' if a else ''}>{_inline(c)}</{tag}>"
                            for c, a in zip(cells, aligns, strict=True)) + "</tr>"

STYLE = """
:root { --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #b42318; --fail-bg: #fee4e2; --inc: #9a6700;
        --inc-bg: #fff4d6; --line: #d0d7de; --muted: #57606a; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 24px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 4px 0; color: #d0d7de; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 32px 48px; }
section.run { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 24px 20px;
              margin: 24px 0; }
h2 { font-size: 20px; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
h3 { font-size: 16px; margin: 22px 0 8px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 5px 9px; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.verdicts { width: 100%; }
.detail { color: var(--muted); font-size: 12.5px; margin-top: 3px; }
details summary { cursor: pointer; color: var(--muted); font-size: 12.5px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: 12px;
         white-space: nowrap; }
.PASS, .OK { color: var(--pass); background: var(--pass-bg); }
.FAIL, .DRIFT { color: var(--fail); background: var(--fail-bg); }
.INCONCLUSIVE, .STALE { color: var(--inc); background: var(--inc-bg); }
header .badge { font-size: 15px; padding: 2px 12px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fff; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { text-align: center; color: var(--muted); font-size: 13px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; font-size: 13.5px; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
code, pre, dd.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: #f6f8fa; padding: 8px; border-radius: 6px; overflow-x: auto; }
.missing { color: var(--fail); font-weight: 600; }
a { color: #0969da; }
"""


def _e(text) -> str:
    return html.escape(str(text))


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(status)}</span>'


def html_report(runs: list[Run], out_dir: Path) -> str:
    everything = [v for run in runs for v in run.verdicts]
    claims = ", ".join(dict.fromkeys(run.record["claim"] for run in runs))
    head = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>RA3 reproduction report: {_e(claims)}</title><style>{STYLE}</style></head><body>")
    header = (f"<header><h1>RA3 reproduction report: {_e(claims)}</h1>"
              f"<p>Overall {_badge(overall(everything))} &nbsp;{_e(_counts_text(everything))} "
              f"over {len(runs)} claim run{'s' if len(runs) > 1 else ''}</p>"
              f"<p>Paper: arXiv:2509.25810 (RA3). Report by ra3-repro {_e(__version__)}; the verdicts come from "
              f"each claim's <code>check(record)</code>, as <code>ra3-repro verify</code> prints them.</p></header>")
    body = [head, header, "<main>"]
    if len(runs) > 1:
        body.append(_summary_html(runs))
    body += [_run_html(run, f"run-{i}", out_dir) for i, run in enumerate(runs)]
    body.append("</main></body></html>\n")
    return "\n".join(body)


def _summary_html(runs: list[Run]) -> str:
    rows = "".join(
        f'<tr><td><a href="#run-{i}">{_e(run.record["claim"])}</a></td><td>{_e(run.name)}</td>'
        f"<td>{_badge(overall(run.verdicts))}</td>"
        + "".join(f"<td class=num>{counts(run.verdicts)[s]}</td>" for s in STATUSES) + "</tr>"
        for i, run in enumerate(runs))
    attention = "".join(f"<li>{_badge(v.status)} {_e(run.record['claim'])}: {_e(v.cell)}</li>"
                        for run in runs for v in run.verdicts if v.status not in ("PASS", "OK"))
    return ('<section class="run"><h2>Summary</h2><table><thead><tr><th>claim</th><th>run</th><th>overall</th>'
            "<th>passed</th><th>failed</th><th>inconclusive</th></tr></thead><tbody>" + rows + "</tbody></table>"
            + (f"<h3>Checks that did not pass</h3><ul>{attention}</ul>" if attention else "") + "</section>")


def _run_html(run: Run, anchor: str, out_dir: Path) -> str:
    record = run.record
    parts = [f'<section class="run" id="{anchor}">',
             f"<h2>{_e(_title(run))} {_badge(overall(run.verdicts))}</h2>",
             f"<h3>Verdicts on the paper's claims</h3><p>{_e(_counts_text(run.verdicts))}.</p>",
             _verdicts_html(claims_of(run.verdicts)),
             "<h3>Regression guards</h3><p>Not verdicts: does the run behave like calibrated runs of this code? "
             f"{_e(_guards_text(run.verdicts))}.</p>", _verdicts_html(guards_of(run.verdicts))]
    if record.get("tables"):
        parts.append("<h3>Tables</h3>")
        for name, table in record["tables"].items():
            parts += [f"<h4>{_e(name)}</h4>", table_html(table, f"{run.path / 'record.json'}: tables.{name}")]
    if run.plots:
        parts.append('<h3>Plots</h3><div class="plots">')
        for plot in run.plots:
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(plot.name)}">'
                         f"<figcaption>{_e(plot.name)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("<h3>Provenance</h3><dl>" + "".join(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>"
                                                     for term, text in _provenance(run)) + "</dl>")
    parts.append("<details><summary>resolved config</summary><pre>"
                 + _e(json.dumps(record["config"], indent=1)) + "</pre></details>")
    parts.append("<h3>Per-sample outputs</h3><ul>" + "".join(
        f'<li><a href="{_e(_href(run.path / link, out_dir))}">{_e(label)}</a> <code>{_e(link)}</code>'
        + ("" if exists else ' <span class="missing">missing</span>') + "</li>"
        for label, link, exists in run.links) + "</ul>")
    if record.get("notes"):
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{_e(note)}</li>" for note in record["notes"]) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def _verdicts_html(verdicts: list) -> str:
    rows = "".join(
        f"<tr><td>{_badge(v.status)}</td><td>{_e(v.cell)}<div class=detail>{_e(v.statistic)}</div>"
        f"<details><summary>why this band</summary><div class=detail>{_e(v.reason)}</div></details></td>"
        f"<td class=num>{_e(_number(v.measured))}</td><td class=num>{_e(_number(v.reference))}</td>"
        f"<td class=num>{_e(_band(v.band))}</td></tr>" for v in verdicts)
    return ('<table class="verdicts"><thead><tr><th>status</th><th>check</th><th>measured</th><th>reference</th>'
            f"<th>band</th></tr></thead><tbody>{rows}</tbody></table>")


def write_report(run_dir: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Build both reports of RUN_DIR (one run or a directory of runs); write them into OUT_DIR (default
    RUN_DIR), each whole or not at all. Returns (report.md, report.html)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    runs = find_runs(run_dir)
    text_md, text_html = markdown(runs, out_dir), html_report(runs, out_dir)
    paths = out_dir / "report.md", out_dir / "report.html"
    atomic_write(paths[0], text_md)
    atomic_write(paths[1], text_html)
    everything = [v for run in runs for v in run.verdicts]
    log.info("%d run(s), overall %s (%s)", len(runs), overall(everything), _counts_text(everything))
    return paths
