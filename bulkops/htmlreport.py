"""The run at a glance: one self-contained HTML file per job (``report --format html``).

Everything is inline (CSS, one small script, SVG charts drawn here), and nothing is fetched,
so the file opens offline and attached to a ticket. The charts are SVG this module writes
from the journal's series (story.py): a charting library would add its whole script to every
report (the small well-kept ones, uPlot or Chart.js, are 50-200 kB minified, and none is
packaged for Python), and drawn here they show with the script off too. The script only
renders and filters the rows table from the JSON embedded in the page.

Jobs of up to ``ALL_ROWS`` report lines embed every line; bigger ones embed every failed
and rejected line (up to ``FAILED_CAP``) plus the first ``SAMPLE_CAP`` of the others, and the
page says so (the CSV report has every line). 10,000 lines make about 1.5 MB.
"""

from __future__ import annotations

import html
import json
import shlex
import sys
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bulkops.journal.records import JobRecord, RunRecord, SeriesPoint
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.store import Journal
from bulkops.models import Counts, Kind
from bulkops.outputs import Inputs
from bulkops.report import _AT, AtomicFile, _lines

ALL_ROWS = 10_000  # lines embedded whole up to this many
FAILED_CAP = 5_000  # failed and rejected lines of a bigger job (about 1.5 MB with the sample)
SAMPLE_CAP = 1_000  # other lines of a bigger job
DETAIL_CHARS = 300  # an error detail is cut to this in the page (the CSV has it whole)
FAILED_STATES = ("failed", "rejected")

# The columns of a row in the page's JSON (each a REPORT_COLUMNS name).
ROW_COLUMNS = ("line", "phone_number", "prior_profile_id", "desired_profile_id", "final_state",
               "attempts", "http_status", "error_code", "error_title", "error_detail", "note",
               "via")


@dataclass(frozen=True)
class HtmlResult:
    path: Path
    rows: int  # lines embedded in the page
    lines: int  # lines of the job's report
    size: int  # bytes written


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@dataclass(frozen=True)
class RunSpan:
    """When a job ran, from its runs (or, for a job run before schema 3, its own stamps)."""

    started: str | None
    ended: str | None  # None: running now, or never finished
    seconds: float  # time spent running, summed over runs that ended
    runs: int
    state: str  # the job's state now
    exit_code: int | None  # of its last run that ended

    @classmethod
    def of(cls, job: JobRecord, runs: Sequence[RunRecord]) -> RunSpan:
        if not runs:
            ran = job.state.ran
            return cls(job.created_at if ran else None, job.updated_at if ran and job.state is not
                       JobState.RUNNING else None, 0.0, 0, job.state.value, None)
        seconds = 0.0
        for run in runs:
            start, end = _parse(run.started_at), _parse(run.ended_at)
            if start and end:
                seconds += (end - start).total_seconds()
        ended = [r for r in runs if r.ended_at]
        last = runs[-1]
        return cls(runs[0].started_at, last.ended_at, seconds, len(runs), job.state.value,
                   ended[-1].exit_code if ended else None)


# ---- charts ------------------------------------------------------------------------------------

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 760, 190, 52, 12, 24, 30


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(top))) / 10 if top >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= top:
            return step * magnitude
    return 10 * magnitude


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def svg_chart(name: str, title: str, unit: str, points: Sequence[SeriesPoint],
              lines: Sequence[tuple[str, str, Sequence[float | None]]],
              bars: Sequence[tuple[str, str, Sequence[float]]] = ()) -> str:
    """One chart over the series' time axis: ``bars`` (label, colour, value per point) stacked,
    then ``lines`` (None breaks a line). Inline SVG, no script."""
    if not points:
        return ""
    t0 = points[0].t
    span = max(points[-1].t + points[-1].width - t0, 1)
    measured = [v for _, _, vs in lines[:1] for v in vs if v is not None] + [
        sum(col) for col in zip(*(vs for _, _, vs in bars))]
    others = [v for _, _, vs in lines[1:] for v in vs if v is not None]
    # A line far above the first one (an unpaced limit of 1e6/s) would flatten it: such values
    # are drawn at the top edge and named in the legend.
    top = _nice(max(measured + [v for v in others if v <= 4 * max(measured + [1.0])] + [0.0]))
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + (t - t0) / span * pw

    def y(v: float) -> float:
        return PAD_T + ph - v / top * ph

    out = [f'<svg class="chart" data-chart="{name}" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{PAD_L}" y="14" class="ct">{html.escape(title)}</text>']
    for i in range(5):  # grid and y labels
        v = top * i / 4
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   'class="grid"/>')
        out.append(f'<text x="{PAD_L - 4}" y="{y(v) + 4:.1f}" class="yl">{v:g}</text>')
    out.append(f'<text x="4" y="{PAD_T - 8}" class="yl0">{html.escape(unit)}</text>')
    ticks = max(1, min(5, span))
    for i in range(ticks + 1):  # x labels: time since the first bucket
        t = t0 + span * i / ticks
        out.append(f'<text x="{x(t):.1f}" y="{H - 10}" class="xl">{_clock(t - t0)}</text>')
    base = [0.0] * len(points)
    for label, colour, heights in bars:
        for i, (p, v) in enumerate(zip(points, heights)):
            if v:
                out.append(f'<rect x="{x(p.t):.1f}" y="{y(base[i] + v):.1f}" width="'
                           f'{max(pw * p.width / span - 0.5, 0.8):.1f}" height="'
                           f'{y(base[i]) - y(base[i] + v):.1f}" fill="{colour}"><title>'
                           f'{html.escape(label)}: {v:g} at {_clock(p.t - t0)}</title></rect>')
                base[i] += v
    for label, colour, values in lines:
        runs: list[list[str]] = [[]]
        for p, value in zip(points, values):
            if value is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(p.t + p.width / 2):.1f},{y(min(value, top)):.1f}")
        for run in filter(None, runs):
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            else:
                out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                           'stroke-width="1.6"/>')
    legend_x = W - PAD_R
    for label, colour, values in [*reversed(lines), *reversed(bars)]:
        if any(v is not None and v > top for v in values):
            label += f" (up to {max(v for v in values if v is not None):g}, off the scale)"
        text = html.escape(label)
        legend_x -= 14 + 7 * len(label)
        out.append(f'<rect x="{legend_x}" y="5" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{legend_x + 13}" y="14" class="lg">{text}</text>')
    out.append("</svg>")
    return "".join(out)


def charts(points: Sequence[SeriesPoint]) -> list[str]:
    """The four charts of a run: rate against the limit, 429s and holds, failures, orders."""
    if not points:
        return []
    rate = [p.requests / p.width for p in points]
    limit = [p.rate_limit for p in points]
    made = [
        svg_chart("rate", "Request rate against the learned limit", "req/s", points,
                  [("requests/s", "#2563eb", rate), ("limit", "#dc2626", limit)]),
        svg_chart("throttling", "429 answers and pool-wide holds", "count", points,
                  [("seconds held", "#7c3aed", [p.held_seconds for p in points])],
                  [("429s", "#f59e0b", [float(p.rate_limited) for p in points]),
                   ("holds", "#7c3aed", [float(p.holds) for p in points])]),
        svg_chart("failures", "Rows failed and transient faults (5xx, no answer)", "count",
                  points, [("rows done", "#16a34a", [float(p.done) for p in points])],
                  [("rows failed", "#dc2626", [float(p.failed) for p in points]),
                   ("transient faults", "#f59e0b", [float(p.transient) for p in points])]),
    ]
    if any(p.orders_open is not None for p in points):
        made.append(svg_chart("orders", "Bulk orders open", "orders", points,
                              [("orders open", "#0891b2",
                                [None if p.orders_open is None else float(p.orders_open)
                                 for p in points])]))
    return made


# ---- the page ------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111;
max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{font-weight:600;color:#444}.facts th{width:130px}.num{text-align:right}
.counts td{font-size:20px;font-weight:600;padding-right:28px}.counts th{font-weight:400}
.failed,.rejected{color:#b91c1c}.done{color:#15803d}.pending{color:#a16207}
.chart{width:100%;max-width:760px;height:auto;display:block;margin:4px 0 14px}
.chart .grid{stroke:#e5e7eb}.chart text{font-size:11px;fill:#555}.chart .ct{font-size:13px;
fill:#111;font-weight:600}.chart .yl{text-anchor:end}.chart .xl{text-anchor:middle}
code,pre{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f3f4f6;padding:2px 4px}
pre{padding:8px;white-space:pre-wrap}#rows{font-size:12px}#rows td{border-top:1px solid #eee;
max-width:340px;overflow-wrap:anywhere}.filters button{margin:0 6px 6px 0;padding:3px 9px;
border:1px solid #bbb;background:#fff;border-radius:4px;cursor:pointer}
.filters button[aria-pressed=true]{background:#111;color:#fff}.note{color:#555}
"""

SCRIPT = """
(function(){
  var data=JSON.parse(document.getElementById('rows-data').textContent);
  var cols=data.columns, rows=data.rows, si=cols.indexOf('final_state');
  var body=document.querySelector('#rows tbody'), shown=document.getElementById('rows-shown');
  function esc(v){return v===null?'':String(v).replace(/[&<>"]/g,function(c){
    return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
  function show(state){
    var out=[], n=0;
    for(var i=0;i<rows.length;i++){var r=rows[i];
      if(state!=='all'&&r[si]!==state)continue; n++;
      var tds='';for(var j=0;j<r.length;j++)tds+='<td'+(j===si?' class="'+esc(r[j])+'"':'')+
        '>'+esc(r[j])+'</td>';
      out.push('<tr data-state="'+esc(r[si])+'">'+tds+'</tr>');}
    body.innerHTML=out.join('');
    shown.textContent=n+' line(s) shown';
    var b=document.querySelectorAll('.filters button');
    for(var k=0;k<b.length;k++)b[k].setAttribute('aria-pressed',b[k].dataset.state===state);
  }
  var f=document.querySelectorAll('.filters button');
  for(var k=0;k<f.length;k++)f[k].addEventListener('click',function(){show(this.dataset.state);});
  show(data.initial);
})();
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _script_json(value: object) -> str:
    """JSON safe inside <script>: no </script>, no HTML comment, no line separators."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
            .replace(">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029"))


def next_commands(job: JobRecord, journal_path: Path, counts: Counts,
                  rolled_back_by: int | None) -> list[tuple[str, str]]:
    """(command, why) for what the operator would do next."""
    j = shlex.quote(str(journal_path))
    job_flag = "" if job.id == 1 else f" --job {job.id}"
    out: list[tuple[str, str]] = []
    failed, waiting = counts.get(ItemState.FAILED), (counts.get(ItemState.PENDING)
                                                     + counts.get(ItemState.IN_FLIGHT))
    if job.state in (JobState.ABORTED, JobState.INTERRUPTED) or (failed and rolled_back_by is None):
        why = (f"send the {failed} failed row(s) again once their cause is fixed"
               if failed else "")
        if waiting:
            why += ("; " if why else "") + f"and the {waiting} row(s) not sent yet"
        out.append((f"bulkops retry-failed --journal {j}{job_flag}", why or "finish the job"))
    if job.state.ran and job.kind is not Kind.ROLLBACK and rolled_back_by is None and (
            counts.get(ItemState.DONE)):
        out.append((f"bulkops rollback --journal {j}{job_flag}",
                    "put every number this job changed back on its prior profile"))
    out.append((f"bulkops report --journal {j}{job_flag}", "every line as CSV"))
    return out


async def render(journal: Journal, job_id: int) -> tuple[str, int, int]:
    """The page of ``job_id``: (HTML, lines embedded, lines of the report)."""
    job = await journal.job(job_id)
    counts = await journal.counts(job_id)
    span = RunSpan.of(job, await journal.runs(job_id))
    points = await journal.series(job_id)
    groups = await journal.failure_groups(job_id)
    jobs = await journal.jobs()
    from bulkops.history import effect, undoers  # history imports this module: here, not on top

    undoer = undoers(jobs)
    by = undoer.get(job.id)
    undone_by = None if by is None else by.id  # a fact of the page
    # Rolled back, and that rollback rolled back whole: in effect again, so rollback is offered.
    still_undone = None if effect(job, undoer) == "yes" else undone_by

    rows: list[list[Any]] = []
    lines = kept_failed = kept_other = 0
    by_state: dict[str, int] = {}
    rejected_examples: list[list[Any]] = []
    at = [_AT[c] for c in ROW_COLUMNS]
    detail_at = ROW_COLUMNS.index("error_detail")
    big = counts.total + counts.rejected > ALL_ROWS  # duplicates may add a few lines: fine
    async with aclosing(_lines(journal, job_id, {})) as source:
        async for values, _ in source:
            lines += 1
            state = str(values[_AT["final_state"]])
            by_state[state] = by_state.get(state, 0) + 1
            row = [values[i] for i in at]
            if isinstance(row[detail_at], str) and len(row[detail_at]) > DETAIL_CHARS:
                row[detail_at] = row[detail_at][:DETAIL_CHARS] + "..."
            if state == "rejected" and len(rejected_examples) < 5:
                rejected_examples.append(row)
            if not big:
                rows.append(row)
            elif state in FAILED_STATES:
                if kept_failed < FAILED_CAP:
                    rows.append(row)
                    kept_failed += 1
            elif kept_other < SAMPLE_CAP:
                rows.append(row)
                kept_other += 1

    facts = [
        ("job", f"{job.name} (#{job.id}, {job.kind.value})"),
        ("CSV", job.csv_path or ("the rows of job #%d" % job.parent_id if job.parent_id else "-")),
        ("journal", str(journal.path)),
        ("started", span.started or "not started"),
        ("ended", span.ended or ("running now, or stopped without an end (killed)"
                                 if span.started else "-")),
        ("duration", duration_text(span.seconds) + (f" over {span.runs} runs" if span.runs > 1
                                                     else "") if span.runs else "-"),
        ("outcome", job.state.value + (f", exit code {span.exit_code}"
                                       if span.exit_code is not None else "")),
    ]
    if job.parent_id:
        facts.append(("undoes", f"job #{job.parent_id}"))
    if undone_by:
        facts.append(("rolled back by", f"job #{undone_by}"))

    count_cells = [("done", counts.get(ItemState.DONE)), ("failed", counts.get(ItemState.FAILED)),
                   ("skipped", counts.get(ItemState.SKIPPED)),
                   ("pending", counts.get(ItemState.PENDING) + counts.get(ItemState.IN_FLIGHT)
                    + counts.get(ItemState.ORDERED)),
                   ("rejected", counts.rejected), ("total", counts.total)]
    totals = {c: sum(getattr(p, c) for p in points) for c in
              ("requests", "answers_2xx", "answers_4xx", "answers_5xx", "rate_limited", "holds",
               "transient")}

    out: list[str] = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>bulkops: {_e(job.name)} (#{job.id})</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(job.name)}: {_e(job.kind.value)} job #{job.id}</h1>",
        "<table class=\"facts\" id=\"facts\">",
        *(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts),
        "</table><h2>Counts</h2><table class=\"counts\" id=\"counts\"><tr>",
        *(f"<th>{name}</th>" for name, _ in count_cells), "</tr><tr>",
        *(f"<td class=\"{name}\" data-count=\"{name}\">{n}</td>" for name, n in count_cells),
        "</tr></table>",
        f"<p class=\"note\">Requests {totals['requests']}: answers 2xx {totals['answers_2xx']}, "
        f"4xx {totals['answers_4xx']} (429 {totals['rate_limited']}), 5xx "
        f"{totals['answers_5xx']}; transient faults {totals['transient']}; pool-wide holds "
        f"{totals['holds']}.</p>" if points else "",
        "<h2>Over time</h2>",
    ]
    if points:
        first = datetime.fromtimestamp(points[0].t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        width = max(p.width for p in points)
        out.append(f"<p class=\"note\">From {first} UTC, one point per {width} s"
                   + (" (coarser for a long run)" if width > 1 else "") + ".</p>")
        out.extend(charts(points))
    else:
        out.append("<p class=\"note\" id=\"no-series\">No time series: this job has not run "
                   "yet, or it ran before bulkops kept one (journal schema 3).</p>")

    out.append("<h2>Failures</h2>")
    if groups or counts.rejected:
        out.append("<table id=\"failures\"><tr><th>Telnyx code</th><th>title</th>"
                   "<th class=\"num\">rows</th><th>example lines</th></tr>")
        for code, title, n, examples in groups:
            shown = "<br>".join(
                f"line {_e(line)}: {_e(number)} "
                + (f"(HTTP {_e(status)}) " if status else "(no request sent) ") + _e(detail)
                for line, number, status, detail in examples)
            out.append(f"<tr class=\"failure-group\"><td>{_e(code or '-')}</td><td>"
                       f"{_e(title or '-')}</td><td class=\"num\">{n}</td><td>{shown}</td></tr>")
        if counts.rejected:
            shown = "<br>".join(f"line {_e(r[0])}: {_e(r[detail_at])}" for r in rejected_examples)
            out.append(f"<tr class=\"failure-group\"><td>-</td><td>rejected (invalid input, "
                       f"never sent)</td><td class=\"num\">{counts.rejected}</td><td>{shown}"
                       "</td></tr>")
        out.append("</table>")
    else:
        out.append("<p class=\"note\">No row failed.</p>")

    out.append("<h2>Next</h2><table id=\"next\">")
    for command, why in next_commands(job, journal.path, counts, still_undone):
        out.append(f"<tr><td><code>{_e(command)}</code></td><td class=\"note\">{_e(why)}</td></tr>")
    out.append("</table>")

    out.append("<h2>Rows</h2>")
    if big:
        out.append(f"<p class=\"note\" id=\"rows-capped\">This job has {lines} report lines: "
                   f"the page holds its failed and rejected lines ({kept_failed} shown"
                   + (f", the first {FAILED_CAP}" if kept_failed >= FAILED_CAP else "")
                   + f") and a sample of the first {kept_other} other lines. The CSV report "
                   "has every line.</p>")
    initial = "failed" if by_state.get("failed") else "all"
    out.append("<div class=\"filters\">" + "".join(
        f"<button type=\"button\" data-state=\"{_e(s)}\">{_e(s)} ({n})</button>"
        for s, n in [("all", lines), *sorted(by_state.items())]) + "</div>")
    out.append("<p class=\"note\" id=\"rows-shown\"></p><noscript><p>The rows table needs "
               "JavaScript; the CSV report has every line.</p></noscript>")
    out.append("<table id=\"rows\"><thead><tr>"
               + "".join(f"<th>{_e(c)}</th>" for c in ROW_COLUMNS) + "</tr></thead><tbody></tbody>"
               "</table>")
    out.append("<script type=\"application/json\" id=\"rows-data\">"
               + _script_json({"columns": ROW_COLUMNS, "rows": rows, "initial": initial})
               + "</script>")
    out.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "".join(out), len(rows), lines


async def write_html_report(journal: Journal, job_id: int, output: Path, *,
                            inputs: Inputs = (), force: bool = False) -> HtmlResult:
    """Write the page to ``output`` (0600, replaced whole on success, refused as
    ``AtomicFile`` refuses), or stdout for "-"."""
    page, rows, lines = await render(journal, job_id)
    if str(output) == "-":
        sys.stdout.write(page)
        sys.stdout.flush()
        return HtmlResult(output, rows, lines, len(page.encode("utf-8")))
    target = AtomicFile(output, "HTML report", inputs=inputs, force=force)
    try:
        target.handle.write(page)
        target.commit()
    finally:
        target.abandon()
    return HtmlResult(output, rows, lines, output.stat().st_size)
