"""The /status page: one self-contained HTML document (inline CSS, no script, no external asset)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from .health import AMBER, worst
from .status import duration

# Background colours of the three states (the browser test reads them back from the DOM).
COLOURS = {"green": "#1e8e3e", "amber": "#f29900", "red": "#d93025"}
_WORD = {"green": "OK", "amber": "WARNING", "red": "CRITICAL"}

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#202124}
h1{font-size:1.3rem;margin:0 0 .3rem} p.meta{color:#5f6368;margin:0 0 1rem;font-size:.85rem}
table{border-collapse:collapse;width:100%} th,td{border:1px solid #dadce0;padding:.4rem .6rem;
text-align:left;vertical-align:top;font-size:.9rem} th{background:#f1f3f4}
td.state{color:#fff;font-weight:600;white-space:nowrap}
ul{margin:0;padding-left:1.1rem} ul.subs{list-style:none;padding-left:0}
.why{color:#5f6368;font-size:.8rem}
""" + "".join(
    f".s-{name}{{background:{colour};color:#fff}} .b-{name}{{border-left:6px solid {colour}}}"
    f" .dot-{name}{{color:{colour}}}\n"
    for name, colour in COLOURS.items()
)


def _cell(status: str, content: str, klass: str = "", fill: bool = False) -> str:
    """A <td> that carries its state as data-status: filled with its colour, or (for a detail
    cell that is not green) marked by a coloured left border, so its text stays readable."""
    coloured = f"s-{status}" if fill else f"b-{status}" if status != "green" else ""
    classes = " ".join(c for c in (klass, coloured) if c)
    return f'<td class="{classes}" data-status="{status}">{content}</td>'


def _dot(status: str) -> str:
    return f'<span class="dot-{status}">&#9679;</span> '


def _subscriptions(office: Mapping[str, Any]) -> str:
    if not office["watched"]:
        return '<span class="why">not watched (no api: section, or sync.mode off)</span>'
    items = []
    for s in office["subscriptions"]:
        text = escape(s["name"])
        if not s["present"]:
            text += ": missing"
        else:
            if s["lag_s"] is not None:
                text += f": lag {duration(s['lag_s'])}"
            if s["failures"]:
                n = s["failures"]
                text += f", {n} failed deliver{'y' if n == 1 else 'ies'}"
        note = f' <span class="why">{escape(s["note"])}</span>' if s["note"] else ""
        items.append(f'<li data-sub="{escape(s["name"])}">{_dot(s["status"])}{text}{note}</li>')
    return f'<ul class="subs">{"".join(items)}</ul>' if items else "-"


def _events(office: Mapping[str, Any]) -> str:
    rows = [
        f"<li>{escape(t)}: {duration(e['age_s'])} ago</li>" for t, e in office["events"].items()
    ]
    return f"<ul>{''.join(rows)}</ul>" if rows else '<span class="why">none yet</span>'


def _row(doc: Mapping[str, Any], office: Mapping[str, Any]) -> str:
    spool, broker = doc["spool"], doc["broker"]
    if not spool["enabled"]:
        spool_text = "disabled"
    elif spool["depth"]:
        spool_text = f"{spool['depth']} rows, oldest {duration(spool['oldest_age_s'])}"
    else:
        spool_text = "empty"
    reasons = "".join(f"<li>{escape(r)}</li>" for r in office["reasons"])
    name = escape(office["customer"])
    return (
        f'<tr data-office="{name}" data-status="{office["status"]}">'
        f"<td><b>{name}</b>{f'<ul class=why>{reasons}</ul>' if reasons else ''}</td>"
        + _cell(office["status"], _WORD[office["status"]], "state", fill=True)
        + _cell(worst_sub(office), _subscriptions(office))
        + f"<td>{_events(office)}</td>"
        + _cell(spool["status"], spool_text)
        + _cell(broker["status"], escape(broker["state"]))
        + "</tr>"
    )


def worst_sub(office: Mapping[str, Any]) -> str:
    """The subscriptions cell's state: the worst subscription's (amber if it cannot list)."""
    states = [s["status"] for s in office["subscriptions"]]
    if office["listing"] is not None and not office["listing"]["ok"]:
        states.append(AMBER)
    return worst(*states)


def render(doc: Mapping[str, Any], refresh_s: int = 10) -> str:
    """The whole page for a status document."""
    when = datetime.fromtimestamp(doc["generated_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    limits = doc["thresholds"]
    rows = "".join(_row(doc, o) for o in doc["offices"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_s}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>od-bridge status: {_WORD[doc["status"]]}</title>
<style>{_STYLE}</style></head>
<body data-status="{doc["status"]}">
<h1>{_dot(doc["status"])}od-bridge: {_WORD[doc["status"]]}</h1>
<p class="meta">{when} · sync {escape(doc["sync_mode"])} · refreshes every {refresh_s} s ·
red: subscription missing, silent longer than {escape(limits["silent_after"])}, broker down or
rows refused · amber: subscription failing, listing failed, a spooled row older than
{duration(limits["spool_oldest_warn_s"])} · <a href="status.json">status.json</a></p>
<table id="offices"><thead><tr><th>Office</th><th>State</th><th>Subscriptions</th>
<th>Last event per type</th><th>Spool</th><th>Broker</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""
