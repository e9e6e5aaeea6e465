"""Dashboard: balance, a 30-day usage chart (server-rendered SVG from the rollups), recent
requests with filters and pagination, and their CSV export."""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from dataclasses import dataclass, field

import tornado.web

from handlers.base import PageHandler, fmt_when
from handlers.pages.home import ModelRow, compact_number
from services.core.ids import as_object_id
from services.core.money import fmt_credits

PAGE_SIZE = 25
CHART_DAYS = 30
PALETTE = ["#4f46e5", "#0d9488", "#d97706", "#db2777", "#2563eb", "#65a30d", "#9333ea", "#64748b"]
METRICS = {"credits": ("credits", "Credits"), "tokens": ("total_tokens", "Tokens"),
           "requests": ("requests", "Requests")}
CSV_COLUMNS = ["created_at", "request_id", "key_name", "model", "endpoint", "stream", "status",
               "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
               "total_tokens", "credits", "latency_ms", "ttft_ms"]


def nice_step(peak: int, ticks: int = 4) -> int:
    """The smallest 1/2/5×10ⁿ step such that `ticks` steps cover `peak` (integers only)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * ticks >= peak:
                return m * step
        step *= 10


@dataclass
class Chart:
    """Geometry for `_chart.html`: stacked bars per day, one colour per model."""

    metric: str
    label: str
    width: int = 1000
    height: int = 250
    left: int = 64
    bottom: int = 24
    top: int = 8
    bars: list[dict] = field(default_factory=list)
    ticks: list[dict] = field(default_factory=list)
    xlabels: list[dict] = field(default_factory=list)
    legend: list[dict] = field(default_factory=list)
    days: list[dict] = field(default_factory=list)
    total: str = "0"

    @property
    def empty(self) -> bool:
        return not self.bars


def fmt_metric(metric: str, value: int) -> str:
    return fmt_credits(value) if metric == "credits" else f"{value:,}"


def usage_chart(rows: list[dict], days: list[str], metric: str) -> Chart:
    """Build the chart for rollup rows summed per (day, model)."""
    fieldname, label = METRICS[metric]
    chart = Chart(metric=metric, label=label)
    per_model: dict[str, int] = {}
    cells: dict[tuple[str, str], int] = {}
    for r in rows:
        model = r["model"] or "unknown"
        cells[(r["day"], model)] = cells.get((r["day"], model), 0) + r[fieldname]
        per_model[model] = per_model.get(model, 0) + r[fieldname]
    order = sorted(per_model, key=lambda m: (-per_model[m], m))
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(order)}
    chart.legend = [{"model": m, "colour": colour[m], "value": fmt_metric(metric, per_model[m])} for m in order]
    chart.total = fmt_metric(metric, sum(per_model.values()))
    day_totals = [sum(cells.get((d, m), 0) for m in order) for d in days]
    step = nice_step(max(day_totals + [1]))
    top_value = step * 4
    plot_w, plot_h = chart.width - chart.left - 8, chart.height - chart.top - chart.bottom
    slot = plot_w / len(days)
    for i in range(5):
        y = chart.top + plot_h - plot_h * i / 4
        chart.ticks.append({"y": round(y, 1), "label": fmt_metric(metric, step * i) if metric == "credits"
                            else compact_number(step * i)})
    for i, day in enumerate(days):
        x = chart.left + slot * i + slot * 0.15
        base = chart.top + plot_h
        for m in order:
            value = cells.get((day, m), 0)
            if not value:
                continue
            h = max(plot_h * value / top_value, 1.0)
            base -= h
            chart.bars.append({"x": round(x, 1), "y": round(base, 1), "w": round(slot * 0.7, 1), "h": round(h, 1),
                               "colour": colour[m], "title": f"{day} · {m}: {fmt_metric(metric, value)}"})
        if i % 5 == 0 or i == len(days) - 1:
            chart.xlabels.append({"x": round(x + slot * 0.35, 1),
                                  "label": dt.date.fromisoformat(day).strftime("%b %d")})
        chart.days.append({"day": day, "value": fmt_metric(metric, day_totals[i])})
    return chart


def model_summary(rows: list[dict]) -> tuple[list[dict], dict]:
    """Per-model 30-day totals (biggest spend first) and the grand total, all integers."""
    by_model: dict[str, dict] = {}
    for r in rows:
        t = by_model.setdefault(r["model"] or "unknown", {"model": r["model"] or "unknown", "requests": 0,
                                                          "total_tokens": 0, "credits": 0, "errors": 0})
        for k in ("requests", "total_tokens", "credits", "errors"):
            t[k] += r[k]
    totals = {k: sum(t[k] for t in by_model.values()) for k in ("requests", "total_tokens", "credits", "errors")}
    return sorted(by_model.values(), key=lambda t: (-t["credits"], t["model"])), totals


def balance_in_tokens(credits: int, models: list[ModelRow]) -> list[dict]:
    """What the balance buys: whole tokens per model at its price (integer arithmetic)."""
    return [{"model": m.id, "name": m.display_name, "price": m.split_rule or m.price,
             "tokens": max(credits, 0) * 1000 // m.price_micro if m.price_micro else 0} for m in models]


def last_days(n: int) -> list[str]:
    today = dt.datetime.now(dt.timezone.utc).date()
    return [(today - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def csv_cell(value) -> object:
    # A cell starting with = + - @ is a formula to spreadsheet programs; key names are
    # user-chosen, so neutralise them (OWASP "CSV injection").
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_row(doc: dict) -> list:
    out = []
    for col in CSV_COLUMNS:
        value = doc.get(col)
        if col == "created_at":
            value = fmt_when(value).replace(" ", "T") + "Z" if value else ""
        elif col == "credits":
            value = fmt_credits(value or 0)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif value is None:
            value = ""
        out.append(csv_cell(value))
    return out


class UsageFilterMixin:
    """Reads the `key` and `model` filters shared by the table and its CSV export."""

    def usage_filters(self) -> dict:
        key = self.get_argument("key", "") or None
        model = self.get_argument("model", "")[:100] or None
        return {"key_id": as_object_id(key) if key else None, "model": model}


class DashboardPageHandler(UsageFilterMixin, PageHandler):
    """Balance, the 30-day chart (rollups only) and one page of recent requests."""

    @tornado.web.authenticated
    async def get(self) -> None:
        user = self.current_user
        s, uid, filters, page = self.services, user["_id"], self.usage_filters(), self.page_argument()
        metric = self.get_argument("metric", "credits")
        metric = metric if metric in METRICS else "credits"
        days = last_days(CHART_DAYS)
        # Independent reads: with MongoDB they overlap instead of queueing.
        daily, (records, more), keys = await asyncio.gather(
            s.usage.daily_by_model(uid, since_day=days[0]),
            s.usage.page(uid, **filters, limit=PAGE_SIZE, skip=(page - 1) * PAGE_SIZE),
            s.keys.list_for_user(uid))
        credits = user["balance"] + user["held"]  # the user document this request already read
        by_model, totals = model_summary(daily)
        models = [ModelRow.of(m) for m in s.catalog.models()]
        self.render_page(
            "dashboard.html", credits=credits, held=user["held"], affordable=balance_in_tokens(credits, models),
            chart=usage_chart(daily, days, metric), metrics=METRICS, by_model=by_model, totals=totals,
            records=records, page=page, more=more, keys=keys, filters=filters,
            model_options=sorted({m.id for m in models} | {r["model"] for r in by_model}),
            query={"key": self.get_argument("key", ""), "model": filters["model"] or "", "metric": metric})


class UsageCsvExportHandler(UsageFilterMixin, PageHandler):
    """The signed-in user's usage records (same filters as the table) as CSV, streamed."""

    @tornado.web.authenticated
    async def get(self) -> None:
        user = self.current_user
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="cheaplm-usage-{stamp}.csv"')
        self.set_header("Cache-Control", "no-store")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        n = 0
        async for doc in self.services.usage.export(user["_id"], **self.usage_filters()):
            writer.writerow(csv_row(doc))
            n += 1
            if n % 500 == 0:
                self.write(buf.getvalue())
                buf.seek(0)
                buf.truncate()
                await self.flush()
        self.finish(buf.getvalue())


routes = [
    (r"/dashboard/?", DashboardPageHandler),
    (r"/dashboard/usage\.csv", UsageCsvExportHandler),
]
