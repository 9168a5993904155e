"""The console's HTML: the live page's frame, a result's detail, the history. No templates engine, no CDN.

Pages are built server-side from the card dicts (``cards.py``) with every value escaped; the live page's
cards are drawn by ``static/console.js`` from the same dicts, as text. Scripts and styles are files
under ``static/`` (the Content-Security-Policy allows nothing inline), and the CSRF token travels in a
``<meta>`` tag. Times are shown in the console's local time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from mediqa.agent.report.feedback import KINDS
from mediqa.agent.report.web import assets
from mediqa.agent.report.web.reader import HistoryFilter

DECISIONS = ("ok", "retake", "unscored", "skipped")


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def clock(ts: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return time.strftime(fmt, time.localtime(float(ts))) if isinstance(ts, (int, float)) else ""


def layout(title: str, body: str, *, csrf: str, page: str, heartbeat_s: float = 5.0) -> str:
    nav = "".join(f'<a href="{href}"{" aria-current=page" if page == key else ""}>{label}</a>'
                  for key, href, label in (("live", "/", "Live"), ("history", "/history", "History")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} - MedIQA console</title>
<meta name="csrf-token" content="{e(csrf)}"><meta name="heartbeat" content="{heartbeat_s:g}">
<link rel="stylesheet" href="{assets.url("console.css")}"><script src="{assets.url("console.js")}" defer></script>
</head>
<body data-page="{e(page)}">
<header class="top"><span class="brand">MedIQA Edge</span><nav>{nav}</nav>
<button id="sound" type="button" aria-pressed="false" title="Beep on every retake alert">Sound off</button></header>
<div id="banner" class="banner" role="alert" hidden></div>
<section id="strip" class="strip" aria-label="agent status">
<span>Folder <b id="s-folder">-</b></span><span>Backend <b id="s-backend">-</b></span>
<span>Last file <b id="s-last">-</b></span><span>Queue <b id="s-queue">-</b></span><span id="s-state"></span></section>
{body}
</body></html>"""


def live_page(csrf: str, heartbeat_s: float, max_age_s: float | None = None) -> str:
    recent = f" in the last {max_age_s / 3600.0:g} h" if max_age_s is not None else " yet"
    older = ' Older results are in <a href="/history">History</a>.' if max_age_s is not None else ""
    body = f"""<main id="cards" class="cards" aria-live="polite">
<p id="empty" class="empty">No series checked{recent}. Each series appears here when it is complete.{older}</p></main>
<p class="legend">Scores: 0 (bad) .. 4 (excellent). A RETAKE is a suggestion: the agent never rejects or deletes
images.</p>"""
    return layout("Live", body, csrf=csrf, page="live", heartbeat_s=heartbeat_s)


def _facts(c: Mapping[str, Any]) -> str:
    items = [("Series", f"#{c['series_number']}" if c.get("series_number") is not None else "#?"),
             ("Description", c.get("description") or "(no description)"), ("Modality", c.get("modality")),
             ("Time", clock(c.get("time"))), ("Station", c.get("station")), ("Score", c.get("score_text")),
             ("Threshold", c.get("threshold_text")),
             ("Latency", f"{c['latency_ms']:.0f} ms" if c.get("latency_ms") is not None else "")]
    if c.get("patient_name"):
        items.insert(1, ("Patient", c["patient_name"]))
    return "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in items if v)


def feedback_form(c: Mapping[str, Any], csrf: str) -> str:
    buttons = "".join(f'<button type="submit" name="kind" value="{e(k)}" class="fb fb-{e(k)}">{e(label)}</button>'
                      for k, label in c.get("feedback_kinds") or ())
    given = "".join(f"<li><b>{e(f['label'])}</b> {e(clock(f['created'], '%H:%M %d.%m.'))}"
                    f"{' by ' + e(f['initials']) if f.get('initials') else ''}"
                    f"{': ' + e(f['note']) if f.get('note') else ''}</li>" for f in c.get("feedback") or ())
    return f"""<form class="feedback" method="post" action="/api/feedback" data-result-id="{e(c['id'])}">
<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="result_id" value="{e(c['id'])}">
<div class="fb-buttons">{buttons}</div>
<label>Note <input name="note" maxlength="500" autocomplete="off"></label>
<label>Initials <input name="initials" maxlength="8" size="4" autocomplete="off"></label>
<ul class="given">{given}</ul></form>"""


def _bar(value: float | None, neutral: float | None, good: str) -> str:
    """A measure as an SVG bar (attributes, not inline styles: the CSP allows no inline style)."""
    if value is None:
        return ""
    mark = (f'<line class="neutral" x1="{neutral * 100:.1f}" x2="{neutral * 100:.1f}" y1="0" y2="12"/>'
            if neutral is not None else "")
    return (f'<svg class="bar good-{e(good) or "none"}" viewBox="0 0 100 12" preserveAspectRatio="none" role="img" '
            f'aria-label="{value * 100:.0f}% of the range"><rect class="track" width="100" height="12"/>'
            f'<rect class="fill" width="{value * 100:.1f}" height="12"/>{mark}</svg>')


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _slice_row(s: Mapping[str, Any]) -> str:
    where = f"{e(s['slice'])}" + (f" of {e(s['of'])}" if s.get("of") else "")
    return (f"<tr{' class=worst' if s['worst'] else ''}><td>{where}</td><td>{_fmt(s['score'], '.2f')}</td>"
            f"<td>{_fmt(s['weight'], '.2f')}</td><td>{'worst' if s['worst'] else ''}</td></tr>")


def _measure_row(m: Mapping[str, Any]) -> str:
    better = {"low": " (lower is better)", "high": " (higher is better)"}.get(m["good"], "")
    return (f"<tr><td>{e(m['label'])}</td><td>{e(_fmt(m['value'], '.3g'))} {e(m['unit'])}</td>"
            f"<td>{_bar(m['bar'], m['neutral'], m['good'])}</td><td class=muted>{e(m['meaning'])}{better}</td></tr>")


def detail_page(d: Mapping[str, Any], csrf: str, heartbeat_s: float) -> str:
    decision = d["decision"]
    what = "".join(f"<li>{e(r)}</li>" for r in [*d.get("reasons", []), *d.get("notices", [])])
    where = f'<p class="where">Where: {e(d["where"])}</p>' if d.get("where") else ""
    sheet = (f'<figure><img class="sheet" src="/sheet/{d["id"]}.png" alt="contact sheet of the scored slices">'
             f"<figcaption>The scored slices{'; the worst is framed in red' if d.get('worst_matters') else ''}."
             "</figcaption></figure>") if d.get("sheet") else '<p class="muted">No contact sheet for this result.</p>'
    slices = "".join(_slice_row(s) for s in d.get("slices", []))
    measures = "".join(_measure_row(m) for m in d.get("measures", []))
    prompt = ", ".join(f"{e(k)}: {e(v)}" for k, v in d.get("prompt", {}).items()) or "-"
    thr = d.get("threshold", {})
    model = d.get("model", {})
    model_text = " ".join(x for x in (model.get("name"), f"v{model['version']}" if model.get("version") else "") if x)
    facts = [("Scorer", f"{d.get('scorer')} on {d.get('backend')}"), ("Model", model_text),
             ("Model sha256", model.get("sha256")), ("Agent version", d.get("agent_version")), ("Prompt", None),
             ("Rule", thr.get("source")),
             ("Thresholds", d.get("threshold_text")), ("Slice selection", d.get("selection_method")),
             ("Images", d.get("instances")), ("Result", f"{d['id']} ({d.get('uuid') or 'no uuid'})"),
             ("Current", "yes" if d.get("live") else "no: superseded by a newer result")]
    facts_html = "".join(f"<div><dt>{e(k)}</dt><dd>{prompt if k == 'Prompt' else e(v)}</dd></div>"
                         for k, v in facts if v or k == "Prompt")
    warnings = "".join(f"<li>{e(w)}</li>" for w in d.get("warnings", []))
    body = f"""<main class="detail">
<article class="card card-{e(decision)}" data-id="{e(d['id'])}">
<h1 class="verdict">{e(d['headline'])}</h1>
<ul class="what">{what}</ul>{where}
<dl class="facts">{_facts(d)}</dl>
{feedback_form(d, csrf)}
</article>
{sheet}
<section><h2>Scored slices</h2><table class="slices"><thead><tr><th>Slice</th><th>Score (0..4)</th><th>Weight</th>
<th></th></tr></thead><tbody>{slices or '<tr><td colspan=4>none</td></tr>'}</tbody></table></section>
<section><h2>What was measured</h2><table class="measures"><tbody>{measures or '<tr><td>none</td></tr>'}
</tbody></table></section>
<section><h2>How it was decided</h2><dl class="facts">{facts_html}</dl>
{f'<h3>Warnings</h3><ul>{warnings}</ul>' if warnings else ''}</section>
</main>"""
    return layout(f"Result {d['id']}", body, csrf=csrf, page="detail", heartbeat_s=heartbeat_s)


def _options(values: Sequence[tuple[str, str]], chosen: str) -> str:
    return "".join(f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(label)}</option>'
                   for v, label in values)


def _history_row(c: Mapping[str, Any]) -> str:
    answers = "; ".join(f["label"] + (f" ({f['initials']})" if f.get("initials") else "")
                        for f in c.get("feedback") or [])
    marks = ([] if c.get("live") else ["superseded"]) + (["old series: no alert"] if c.get("history") else [])
    cells = [clock(c.get("time")), c.get("series_number"), c.get("description"), c.get("modality"), c["headline"],
             c.get("score_text"), "; ".join(c.get("reasons") or []), answers, "; ".join(marks)]
    return (f'<tr class="row-{e(c["decision"])}"><td><a href="/series/{e(c["id"])}">{e(c["id"])}</a></td>'
            + "".join(f"<td>{e(v)}</td>" for v in cells) + "</tr>")


def history_page(cards: Sequence[Mapping[str, Any]], flt: HistoryFilter, modalities: Sequence[str], csrf: str,
                 heartbeat_s: float) -> str:
    query = urlencode({k: v for k, v in vars(flt).items() if v})
    rows = "".join(_history_row(c) for c in cards)
    fb_choices = [("", "any or none"), ("none", "no feedback yet"), ("any", "with feedback"), *KINDS.items()]
    body = f"""<main class="history"><h1>History</h1>
<form class="filters" method="get" action="/history">
<label>Day <input type="date" name="day" value="{e(flt.day)}"></label>
<label>Modality <select name="modality">{_options([("", "all"), *[(m, m) for m in modalities]], flt.modality)}
</select></label>
<label>Decision <select name="decision">{_options([("", "all"), *[(d, d) for d in DECISIONS]], flt.decision)}
</select></label>
<label>Feedback <select name="feedback">{_options(fb_choices, flt.feedback)}</select></label>
<button type="submit">Show</button> <a class="csv" href="/history.csv{'?' + e(query) if query else ''}">CSV</a></form>
<table class="history-table"><thead><tr><th>Result</th><th>Time</th><th>Series</th><th>Description</th><th>Mod.</th>
<th>Verdict</th><th>Score</th><th>Why</th><th>Feedback</th><th></th></tr></thead>
<tbody>{rows or '<tr><td colspan=10>No results match.</td></tr>'}</tbody></table></main>"""
    return layout("History", body, csrf=csrf, page="history", heartbeat_s=heartbeat_s)


def message_page(title: str, text: str) -> str:
    """A page for errors and the token prompt (no strip, no script: it may be shown to anyone)."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<link rel="stylesheet" href="{assets.url("console.css")}"></head><body class="message"><main><h1>{e(title)}</h1>
<p>{e(text)}</p></main></body></html>"""
