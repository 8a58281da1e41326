"""MkDocs hooks: before each build, generate the pages that come from the code and the benchmarks, so
that none of them is copied by hand: the option reference (from the configuration's field docstrings),
the results pages (each benchmark's own report under benchmarks/results/<name>/), and the tables that
the results pages show from those reports (a line `<!-- table verdict-ni/results.md summary -->` becomes
the table of benchmarks/results/verdict-ni/results.md whose header starts with `summary`)."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "results" / "generated"
OPTIONS = ROOT / "docs" / "reference" / "options.md"


def report_order(path: Path) -> tuple[bool, str]:
    """A benchmark folder's README.md first, its other Markdown reports by name."""
    return path.name != "README.md", path.name


def option_reference() -> str:
    from mira.config import _sections, choices

    lines = ["# Options", "", "Every setting of a run, by TOML table, with its default; set them in a config file "
             "(`mira run -c FILE`) or with `--set table.key=value`. Generated from the documentation of each field "
             "in `src/mira/config.py` and, for each algorithm's own table, in its module; `mira config` prints a run's "
             "resolved values.", ""]
    for prefix, cls in _sections():
        fields = {name: f for name, f in cls.model_fields.items()
                  if not (isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields"))}
        if not fields:
            continue
        lines += [f"## [{prefix.rstrip('.')}]" if prefix else "## top level", "", "| key | default | meaning |",
                  "|---|---|---|"]
        for name, f in fields.items():
            allowed = choices(prefix + name)
            doc = " ".join((f.description or "").split()).replace("|", "\\|")
            if allowed:
                doc += " One of: " + ", ".join(f"`{a}`" for a in sorted(allowed)) + "."
            default = repr(f.get_default(call_default_factory=True)).replace("|", "\\|")
            lines.append(f"| `{prefix}{name}` | `{default}` | {doc} |")
        lines.append("")
    return "\n".join(lines)


def results_pages() -> list[str]:
    """Copy every benchmark's report (and its plots) into docs/results/generated/<name>/; the names."""
    shutil.rmtree(GENERATED, ignore_errors=True)
    pages = {}
    for folder in sorted(p for p in (ROOT / "benchmarks" / "results").iterdir() if p.is_dir()):
        reports = sorted(folder.glob("*.md"), key=report_order)
        if not reports:
            continue
        (GENERATED / folder.name).mkdir(parents=True)
        for path in reports + sorted(folder.glob("*.png")):
            shutil.copy(path, GENERATED / folder.name / path.name)
        pages[folder.name] = reports
    lines = ["# All benchmark results", "", "Each benchmark script writes its own report into "
             "`benchmarks/results/<name>/`; they are shown here as written (re-render a comparison's with "
             "`mira report benchmarks/results/<name>/runs`).", ""]
    for name, reports in pages.items():
        lines.append(f"- **{name}**: " + ", ".join(f"[{p.stem}]({name}/{p.name})" for p in reports))
    (GENERATED / "index.md").write_text("\n".join(lines) + "\n")
    return list(pages)


TABLE = re.compile(r"^<!-- table (\S+) (.+?) -->$", re.MULTILINE)


def report_table(report: str, first_cell: str) -> str:
    """The Markdown table of benchmarks/results/`report` whose header's first cell is `first_cell`, with
    a line naming where it comes from."""
    lines = (ROOT / "benchmarks" / "results" / report).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and line.strip("|").split("|")[0].strip() == first_cell:
            table = itertools.takewhile(lambda row: row.startswith("|"), lines[i:])
            return "\n".join(table) + f"\n\n<small>From `benchmarks/results/{report}`.</small>"
    raise ValueError(f"benchmarks/results/{report}: no table whose header starts with {first_cell!r}")


def on_page_markdown(markdown: str, **_) -> str:
    return TABLE.sub(lambda m: report_table(m.group(1), m.group(2)), markdown)


def on_pre_build(config) -> None:
    OPTIONS.write_text(option_reference())
    results_pages()
