"""`ra3-repro report`: Markdown and self-contained HTML from a real theory run, escaping, directories of
runs, missing files, bad input (exit 2), and the page as headless Chromium draws it."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from repro import cli
from repro.claims import module
from repro.report import table_html, write_report

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def theory_run(tmp_path_factory) -> Path:
    """One real theory run (about 2 s) shared by the tests; tests that change it work on a copy."""
    claim = module("theory")
    out = tmp_path_factory.mktemp("theory") / "run"
    claim.run_experiments(claim.load_config(), out)
    return out


def copy_run(theory_run: Path, dest: Path, **changes) -> Path:
    shutil.copytree(theory_run, dest)
    record = json.loads((dest / "record.json").read_text())
    record.update(changes)
    (dest / "record.json").write_text(json.dumps(record))
    return dest


def test_a_theory_report_has_the_verdicts_plots_and_provenance(theory_run, tmp_path):
    out = tmp_path / "report"
    md_path, html_path = write_report(theory_run, out)
    md, page = md_path.read_text(), html_path.read_text()
    record = json.loads((theory_run / "record.json").read_text())
    verdicts = module("theory").check(record)
    assert md.startswith("# RA3 reproduction report: theory\n") and "**Overall: PASS**" in md
    assert f"{len(verdicts)} passed, 0 failed, 0 inconclusive" in md
    for v in verdicts:
        assert f"| **{v.status}** | {v.cell.replace('|', chr(92) + '|')} |" in md
    for text in (record["config_hash"], ", ".join(map(str, record["seeds"])), record["environment"]["git"]["commit"],
                 "numpy " + record["environment"]["libraries"]["numpy"], "data sha256 | none recorded"):
        assert text in md
    assert "## Tables" not in md and "<h3>Tables</h3>" not in page  # no tables in the record, none invented
    back = os.path.relpath(theory_run, out)  # links are relative to where the report is
    assert f"![pruning.png]({back}/pruning.png)" in md and f"- [record]({back}/record.json) `record.json`" in md
    assert page.count('<span class="badge PASS">PASS</span>') == len(verdicts) + 2  # rows, header, section


def test_the_html_is_self_contained(theory_run, tmp_path):
    _, html_path = write_report(theory_run, tmp_path)
    page = html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(list(theory_run.glob("*.png"))) == 2
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in sources)


def test_record_text_is_escaped(theory_run, tmp_path):
    run = copy_run(theory_run, tmp_path / "run", notes=["<script>alert(1)</script> & more"],
                   tables={"t<1>": "| a | <b>b</b> |\n|---|---:|\n| `x` | **2** |\n\n<img src=x onerror=alert(1)>"})
    md_path, html_path = write_report(run)
    page, md = html_path.read_text(), md_path.read_text()
    assert "<script>" not in page and "<b>b</b>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page and "<h4>t&lt;1&gt;</h4>" in page
    assert "<script" not in md and "&lt;script>alert(1)&lt;/script> & more" in md
    assert "<b>" not in md and "<img" not in md and "| a | &lt;b>b&lt;/b> |" in md


def test_tables_become_html_tables():
    table = table_html("| model | value \\| se | paper |\n|:---|---:|:---:|\n| `tiny` | **1.5** | - |\n| x |\n"
                       "\nValues in points.\n\n| second |\n|---|\n| 2 |", "here")
    assert table.startswith("<table class=data><thead><tr><th>model</th><th style=text-align:right>value | se</th>")
    assert "<td><code>tiny</code></td><td style=text-align:right><strong>1.5</strong></td>" in table
    assert "<tr><td>x</td><td style=text-align:right></td><td style=text-align:center></td></tr>" in table
    assert table.endswith("<p>Values in points.</p>\n<table class=data><thead><tr><th>second</th></tr></thead>"
                          "<tbody><tr><td>2</td></tr></tbody></table>")


@pytest.mark.parametrize("text,message", [
    ("just words", "expected a Markdown pipe table (rows starting with |), found none"),
    ("| a | b |\n| 1 | 2 |", "a |---| separator row"),
])
def test_a_table_that_is_not_one_is_refused(text, message):
    from repro.core.files import DataError

    with pytest.raises(DataError, match=re.escape(message)):
        table_html(text, "record.json: tables.table1")


def test_a_directory_of_runs_gets_a_summary_and_a_section_each(theory_run, tmp_path, capsys):
    record = json.loads((theory_run / "record.json").read_text())
    for row in record["convergence"]:
        row["iterations"] *= 100  # breaks the iteration bound: (d) fails
    copy_run(theory_run, tmp_path / "all" / "broken", convergence=record["convergence"])
    copy_run(theory_run, tmp_path / "all" / "theory")
    assert cli.main(["report", str(tmp_path / "all")]) == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'all' / 'report.md'} and " \
                                              f"{tmp_path / 'all' / 'report.html'}"
    md = (tmp_path / "all" / "report.md").read_text()
    page = (tmp_path / "all" / "report.html").read_text()
    assert "**Overall: FAIL**" in md and "| theory | broken | FAIL | 16 | 4 | 0 |" in md
    assert "## theory (broken): FAIL" in md and "## theory: PASS" in md
    assert "![pruning.png](broken/pruning.png)" in md and "![pruning.png](theory/pruning.png)" in md
    assert page.index("<h2>Summary</h2>") < page.index('id="run-0"') < page.index('id="run-1"')
    assert "Checks that did not pass" in page
    assert page.count('<span class="badge FAIL">FAIL</span>') == 4 + 4 + 3  # the list, rows, header, summary, h2
    assert page.count("<img ") == 4


def test_per_sample_outputs_are_linked_and_missing_ones_said(theory_run, tmp_path, caplog):
    run = copy_run(theory_run, tmp_path / "run", outcome_files={"ra3/s0": "evals/ra3 s0/outcomes.jsonl"},
                   links={"details": "evals/ra3 s0/details.jsonl", "samples": "evals/gone/samples.jsonl",
                          "odd": "javascript:alert(1)"})
    (run / "evals" / "ra3 s0").mkdir(parents=True)
    for name in ("outcomes.jsonl", "samples.jsonl", "details.jsonl"):
        (run / "evals" / "ra3 s0" / name).write_text('{"task_id": "t/0", "passed": true}\n')
    md_path, html_path = write_report(run)
    md, page = md_path.read_text(), html_path.read_text()
    assert "- [outcomes ra3/s0](evals/ra3%20s0/outcomes.jsonl) `evals/ra3 s0/outcomes.jsonl`\n" in md
    assert "- [samples ra3/s0](evals/ra3%20s0/samples.jsonl) `evals/ra3 s0/samples.jsonl`\n" in md
    assert "- [details](evals/ra3%20s0/details.jsonl) `evals/ra3 s0/details.jsonl`\n" in md
    assert "- [samples](evals/gone/samples.jsonl) `evals/gone/samples.jsonl` **(missing)**" in md
    assert '<a href="evals/gone/samples.jsonl">samples</a> <code>evals/gone/samples.jsonl</code> ' \
           '<span class="missing">missing</span>' in page
    assert '<a href="javascript%3Aalert%281%29">odd</a>' in page  # a relative path, never a scheme
    assert "samples = evals/gone/samples.jsonl, which is missing" in caplog.text


@pytest.mark.parametrize("record_text,message", [
    (None, "record.json: no record"),
    ('{"claim": "theory", ', "record.json: not valid JSON"),
    ('["theory"]', "record.json: expected a JSON object with a `claim` key"),
    ('{"claim": "tabel1"}', "unknown claim 'tabel1'"),
    ("drop config_hash", "record.json: expected `config_hash` to be a str"),
    ("drop pruning", "record.json: the theory check could not read this record (KeyError"),
    ('links {"x": "../../etc/passwd"}', "links.x = '../../etc/passwd': expected a path inside the run directory"),
    ('tables {"table1": "no table here"}', "tables.table1: expected a Markdown pipe table"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(theory_run, tmp_path, capsys, record_text, message):
    run = tmp_path / "run"
    if record_text is None:
        pass
    elif record_text.startswith(("drop ", "links ", "tables ")):
        record = json.loads((theory_run / "record.json").read_text())
        verb, _, rest = record_text.partition(" ")
        record.pop(rest) if verb == "drop" else record.update({verb: json.loads(rest)})
        copy_run(theory_run, run).joinpath("record.json").write_text(json.dumps(record))
    else:
        run.mkdir()
        (run / "record.json").write_text(record_text)
    assert cli.main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ra3-repro: error: ") and message in err[0]
    assert not list(run.glob("report.*"))


def test_an_empty_directory_is_no_run(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "expected record.json there or in its subdirectories" in capsys.readouterr().err


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium) to render the HTML headless")
def test_the_html_renders_in_headless_chromium(theory_run, tmp_path):
    from PIL import Image

    _, html_path = write_report(theory_run, tmp_path)
    png = tmp_path / "screenshot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,2000",
                    html_path.as_uri()], capture_output=True, timeout=120, check=True)
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 2000)
    assert image.getpixel((5, 5)) == (0x24, 0x29, 0x2F)  # the header's dark band: the inline style applied
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200  # text, badges, table rules: not a blank page
    background = max(colours)[0] / (1280 * 2000)
    assert background < 0.9
