"""Rendering an audit: a short text for a terminal and one self-contained HTML file.

The HTML file (template ``agent/templates/health_report.html.j2``) has inline CSS and inline SVG
charts generated here (no script, no CDN): the verdict on top, a timeline of failures per unit
over the days, resource charts, the recurring signatures and, for a controller-side host report,
the Lightsail metrics with the failures marked on them.
Log lines are untrusted input: the template autoescapes, and every text put into SVG is escaped.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from agent.health.signatures import human_period
from agent.journal import epoch_of

VERDICT_COLOURS = {
    "healthy": "#1a7f37",
    "degraded": "#b35900",
    "failing": "#cf222e",
    "unknown": "#57606a",
}


_ts = epoch_of  # one parser of report times for every health module (agent.journal)


def _bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m = s // 60
    return f"{d}d {h}h {m}m" if d else f"{h}h {m}m"


# --------------------------------------------------------------------------- text


def render_text(report: dict[str, Any]) -> str:
    """A few lines for a terminal: verdict, reasons, recurring signatures, resources, workload."""
    lines = [
        f"{report.get('host') or report.get('source')}: {report['verdict'].upper()}",
    ]
    lines += [f"  - {r}" for r in report.get("reasons", [])]
    notes = [f["text"] for f in report.get("findings", []) if f["severity"] == "info"]
    if notes:
        lines.append("notes:")
        lines += [f"  - {n}" for n in notes]
    rec = report.get("recurring", [])
    if rec:
        lines.append(f"recurring failure signatures ({len(rec)}):")
        lines += [f"  - {r['summary']}" for r in rec[:15]]
    handled = (report.get("workload") or {}).get("incidents") or []
    if handled:
        from agent.health.incidents import describe

        lines.append(f"incidents in the window ({len(handled)}):")
        for s in handled:
            lines += ["  " + line for line in describe(s)]
    res = report.get("resources")
    if res:
        mem = res["memory"]
        lines.append(
            f"memory {_bytes(mem['used_bytes'])} / {_bytes(mem['total_bytes'])}; load "
            f"{res['load']['1m']:.2f} on {res['load']['cpus']} cpu; up {_duration(res['uptime_s'])}"
        )
        for d in res.get("disks", []):
            lines.append(
                f"disk {d['path']}: {_bytes(d['used_bytes'])} / {_bytes(d['total_bytes'])}"
            )
    for err in report.get("errors", []):
        lines.append(f"error: {err}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- svg


def _svg(width: int, height: int, body: str, label: str) -> Markup:
    # Safe: every caller escapes each text it puts into ``body`` (log lines are untrusted).
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}">{body}</svg>'
    )


def timeline_svg(report: dict[str, Any]) -> Markup:
    """Failures per unit per time bucket over the window; one row per unit, one tick per day."""
    window = report.get("window", {})
    start, end = _ts(window.get("since")), _ts(window.get("until"))
    tl = report.get("journal", {}).get("timeline", {})
    bucket = tl.get("bucket_s", 600)
    units = list(
        dict.fromkeys(
            [
                *report.get("core_units", []),
                *report.get("subsidiary_units", []),
                *tl.get("units", {}),
            ]
        )
    )
    if start is None or end is None or end <= start:
        return Markup("<p>No journal window to draw.</p>")
    left, width, row = 190, 900, 26
    height = 30 + row * len(units)
    scale = (width - left - 10) / (end - start)
    parts = []
    day = start - start % 86400 + 86400
    while day < end:
        x = left + (day - start) * scale
        label = datetime.fromtimestamp(day, UTC).strftime("%m-%d")
        parts.append(
            f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{height}" class="grid"/>'
            f'<text x="{x + 2:.1f}" y="12" class="axis">{label}</text>'
        )
        day += 86400
    peak = max((n for b in tl.get("units", {}).values() for _, n in b), default=1)
    w = max(1.5, bucket * scale)
    for i, unit in enumerate(units):
        y = 22 + i * row
        parts.append(
            f'<text x="4" y="{y + 14}" class="label">{escape(unit)}</text>'
            f'<rect x="{left}" y="{y}" width="{width - left - 10}" height="{row - 6}" class="lane"/>'
        )
        for when, n in tl.get("units", {}).get(unit, []):
            t = _ts(when)
            if t is None or t < start:
                continue
            x = left + (t - start) * scale
            opacity = 0.35 + 0.65 * n / peak
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" class="fail" '
                f'fill-opacity="{opacity:.2f}"><title>{escape(unit)} {escape(when)}: '
                f"{n} failure lines</title></rect>"
            )
    return _svg(width, height, "".join(parts), "failures per unit over time")


def bars_svg(rows: list[tuple[str, float, float, str]], label: str) -> Markup:
    """Horizontal bars: (name, value, maximum, text shown after the bar)."""
    if not rows:
        return Markup("")
    left, width, row = 190, 900, 24
    height = 8 + row * len(rows)
    parts = []
    for i, (name, value, maximum, text) in enumerate(rows):
        y = 4 + i * row
        frac = 0 if not maximum else max(0.0, min(1.0, value / maximum))
        cls = "bar-hot" if frac >= 0.9 else "bar"
        full = width - left - 230
        parts.append(
            f'<text x="4" y="{y + 14}" class="label">{escape(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{full}" height="{row - 8}" class="lane"/>'
            f'<rect x="{left}" y="{y}" width="{full * frac:.1f}" height="{row - 8}" class="{cls}"/>'
            f'<text x="{left + full + 8}" y="{y + 14}" class="axis">{escape(text)}</text>'
        )
    return _svg(width, height, "".join(parts), label)


def metric_svg(
    name: str,
    points: list[list[Any]],
    start: float,
    end: float,
    failures: list[float],
    anomalies: list[float],
) -> Markup:
    """A line chart of one metric with failure times (red ticks) and anomalies (circles)."""
    width, height, left, top = 900, 120, 60, 16
    plot_w, plot_h = width - left - 10, height - top - 20
    vals = [p[1] for p in points if p[1] is not None]
    vmax = max(vals, default=1) or 1
    scale = plot_w / max(1.0, end - start)
    parts = [
        f'<text x="4" y="12" class="label">{escape(name)}</text>'
        f'<text x="4" y="{top + 10}" class="axis">{vmax:.3g}</text>'
        f'<text x="4" y="{top + plot_h}" class="axis">0</text>'
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="lane"/>'
    ]
    for t in failures:
        if start <= t <= end:
            x = left + (t - start) * scale
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" class="failtick"/>'
            )
    coords = []
    for when, value in points:
        at = _ts(when) if isinstance(when, str) else when
        if at is None or value is None:
            continue
        coords.append(
            f"{left + (at - start) * scale:.1f},{top + plot_h - plot_h * value / vmax:.1f}"
        )
    if coords:
        parts.append(f'<polyline points="{" ".join(coords)}" class="series"/>')
    for t in anomalies:
        x = left + (t - start) * scale
        parts.append(f'<circle cx="{x:.1f}" cy="{top + 4}" r="3" class="anomaly"/>')
    return _svg(width, height, "".join(parts), f"metric {name}")


def resource_charts(report: dict[str, Any]) -> Markup:
    res = report.get("resources")
    if not res:
        return Markup("")
    mem = res["memory"]
    rows = [
        (
            "memory used",
            mem["used_bytes"],
            mem["total_bytes"],
            f"{_bytes(mem['used_bytes'])} of {_bytes(mem['total_bytes'])}",
        )
    ]
    for unit, b in sorted(res.get("units_memory", {}).items()):
        rows.append((unit, b, mem["total_bytes"], _bytes(b)))
    for d in res.get("disks", []):
        rows.append(
            (
                f"disk {d['path']}",
                d["used_bytes"],
                d["total_bytes"],
                f"{_bytes(d['used_bytes'])} of {_bytes(d['total_bytes'])}",
            )
        )
    load = res["load"]
    for k in ("1m", "5m", "15m"):
        rows.append((f"load {k}", load[k], load["cpus"], f"{load[k]:.2f} / {load['cpus']} cpu"))
    return bars_svg(rows, "resources")


# --------------------------------------------------------------------------- html


@functools.cache
def templates() -> jinja2.Environment:
    """The reports' templates, package data (``agent/templates/*.html.j2``). Autoescape is on:
    log lines and unit names are untrusted input."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agent", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["period"] = human_period
    return env


def metric_charts(report: dict[str, Any]) -> list[Markup]:
    metrics = report.get("metrics") or {}
    start, end = _ts(report["window"].get("since")), _ts(report["window"].get("until"))
    if not metrics.get("series") or start is None or end is None:
        return []
    failures = [t for t in (_ts(x) for x in metrics.get("failure_times", [])) if t is not None]
    charts = []
    for name, series in metrics["series"].items():
        anomalies = [_ts(a["time"]) for a in metrics.get("anomalies", []) if a["metric"] == name]
        charts.append(
            metric_svg(
                name,
                series,
                start,
                end,
                failures,
                [a for a in anomalies if a is not None],
            )
        )
    return charts


def render_html(report: dict[str, Any]) -> str:
    """One self-contained HTML page for the report."""
    title = f"Health of {report.get('host') or report.get('source') or 'host'}"
    notes = [f["text"] for f in report.get("findings", []) if f["severity"] == "info"]
    return (
        templates()
        .get_template("health_report.html.j2")
        .render(
            title=title,
            report=report,
            colour=VERDICT_COLOURS.get(report.get("verdict", "unknown"), "#57606a"),
            notes=notes,
            timeline=timeline_svg(report),
            resources=resource_charts(report),
            uptime=_duration((report.get("resources") or {}).get("uptime_s")),
            work=report.get("workload"),
            metrics=report.get("metrics"),
            metric_charts=metric_charts(report),
        )
    )
