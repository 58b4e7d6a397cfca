"""`audit.html`: one static page with the audit's counts and a few examples of each check.

Everything from the corpus is escaped (a `<br>` the audit found shows as text, never as a line
break), turns keep their line breaks, and the turns of an Arabic (or Hebrew) corpus are set
right-to-left (`dir="rtl"`); a quoted snippet inside a reason is isolated (`<bdi>`), so Arabic in
an English sentence keeps its order.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from hala.data.writers import atomic_write_text
from hala.text.scripts import script_of

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.turn { white-space: pre-wrap; margin: .2rem 0; } .role { color: #777; font-size: .85em; }
.turn[dir=rtl] { text-align: right; font-family: "Noto Naskh Arabic", "Noto Sans Arabic", "Amiri", sans-serif; }
"""
QUOTED_RE = re.compile(r"«[^«»]*»")


def _reason(reason: str) -> str:
    return QUOTED_RE.sub(lambda m: f"<bdi>{m.group()}</bdi>", html.escape(reason))


def _turns(turns: list, lang: str) -> str:
    rtl = script_of(lang) in ("arabic", "hebrew")
    direction = f"dir='rtl' lang='{html.escape(lang)}'" if rtl else "dir='auto'"
    return "".join(
        f"<div class='turn' {direction}><span class='role'>{html.escape(role)}</span> {html.escape(text)}</div>"
        for role, text in turns
    )


def _examples(name: str, shown: list[dict], lang: str) -> str:
    if not shown:
        return f"<h3>{html.escape(name)}</h3><p>No row flagged.</p>"
    rows = "".join(
        f"<tr><td><code>{html.escape(e['id'])}</code><br><small>{html.escape(e['where'])}</small></td>"
        f"<td>{_reason(e['reason'])}</td><td>{_turns(e['turns'], lang)}</td></tr>"
        for e in shown
    )
    head = "<tr><th>row</th><th>reason</th><th>conversation</th></tr>"
    return f"<h3>{html.escape(name)}</h3><table>{head}{rows}</table>"


def write_page(path: Path, summary: dict, shown: dict[str, list[dict]], lang: str) -> None:
    """The page for `summary` (see `hala.audit.stage`) with the examples `shown` per check, the
    turns set as text in `lang`."""
    counts = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='num'>{c['flagged']}</td>"
        f"<td class='num'>{100 * c['share']:.2f}%</td></tr>"
        for name, c in summary["checks"].items()
    )
    stats = ""
    if length := summary["length"]:
        limit = "too few rows for the MAD rule" if length["limit"] is None else f"outliers above {length['limit']:,.0f}"
        median, mad = f"{length['median']:,.0f}", f"{length['mad']:,.0f}"
        stats = f"<p>Conversation lengths: median {median} characters, MAD {mad}; {limit}.</p>"
    bad = "".join(f"<li>{html.escape(b)}</li>" for b in summary["bad_rows_listed"][:50])
    parts = [
        f"<h1>hala data audit: {html.escape(Path(path).parent.name)}</h1>",
        f"<p>{summary['rows']} conversations read from {len(summary['inputs'])} input(s): "
        f"{summary['flagged_rows']} flagged, {summary['clean_rows']} clean; "
        f"{summary['bad_rows']} bad input rows.</p>",
        f"<table><tr><th>check</th><th>rows flagged</th><th>share</th></tr>{counts}</table>",
        stats,
        "<h2>Examples</h2>",
        *(_examples(name, shown.get(name, []), lang) for name in summary["checks"]),
        f"<h2>Bad input rows</h2><ul>{bad}</ul>" if bad else "",
    ]
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>hala data audit</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip
    atomic_write_text(path, page)
