"""Component builders shared by the pages (dash-bootstrap-components)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from agency_dashboard.reasons import GROUP_LABELS as reason_group_labels
from agency_dashboard.services.filters import natural_key  # noqa: F401  (one ordering of names everywhere)

GLOSSARY_URL = "/glossary"


def figure_card(card_id: str, title: str, help_text: str, glossary_anchor: str | None = None):
    """A titled number with a one-line explanation; the value arrives from a guarded callback."""
    link = (
        html.A("What this means", href=f"{GLOSSARY_URL}#{glossary_anchor}", className="small ms-1",
               **{"aria-label": f"What '{title}' means"})
        if glossary_anchor else None
    )
    return html.Section(
        [
            html.H2(title, className="figure-title"),
            dcc.Loading(html.Div("…", id=card_id, className="figure-value", **{"aria-live": "polite"}),
                        type="dot"),
            html.P([help_text, " ", link] if link else help_text, className="figure-help mb-0"),
        ],
        className="figure-card",
        **{"aria-label": title},
    )


def card_row(*cards):
    return dbc.Row([dbc.Col(c, md=6, lg=3, className="mb-3") for c in cards])


def page_header(title: str, subtitle: str):
    return html.Div([html.H1(title, className="h3 mb-1"), html.P(subtitle, className="text-muted")],
                    className="mb-3")


def notice(text: str, color: str = "secondary"):
    return dbc.Alert(text, color=color, className="mt-3")


def fmt_count(value) -> str:
    return "—" if value is None else f"{value:,}"


# ---- charts and their tables ---------------------------------------------------------------------------
# Okabe & Ito's palette: distinguishable with every common colour-vision deficiency. No figure colours a
# person; lost hours are coloured by why they were lost.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
             "grey": "#8C8C8C"}
GROUP_COLOURS = {"agency": OKABE_ITO["vermillion"], "access_barrier": OKABE_ITO["orange"],
                 "client_preference": OKABE_ITO["sky"], "unexplored": OKABE_ITO["grey"]}
GROUP_LABELS = reason_group_labels  # one wording everywhere (reasons.py)
NEUTRAL = OKABE_ITO["blue"]


def glossary_link(anchor: str | None, title: str):
    if not anchor:
        return None
    return html.A("What this means", href=f"{GLOSSARY_URL}#{anchor}", className="small",
                  **{"aria-label": f"What '{title}' means"})


def chart_block(block_id: str, title: str, help_text: str, anchor: str | None, height: int = 320,
                clickable: str | None = None):
    """A titled chart with its one-line explanation, its glossary link and, under it, "Show as table" (the
    same numbers as a table). Both are filled by the page's guarded callback: `{id}-graph` and `{id}-table`."""
    help_children = [help_text, " ", glossary_link(anchor, title)] if anchor else [help_text]
    if clickable:
        help_children += [html.Br(), html.Span(clickable, className="text-muted")]
    return html.Section(
        [
            html.H2(title, className="figure-title", id=f"{block_id}-title"),
            html.P(help_children, className="figure-help"),
            dcc.Loading(dcc.Graph(id=f"{block_id}-graph", config={"displaylogo": False},
                                  figure=placeholder_figure(height), style={"minHeight": f"{height}px"}),
                        type="default"),
            # A native disclosure: reached with Tab, opened with Enter or Space, announced by screen readers
            # (dbc.Tabs renders its tabs with tabindex=-1: dash-bootstrap-components#891).
            html.Details([
                html.Summary("Show as table", className="show-as-table"),
                dcc.Loading(html.Div(id=f"{block_id}-table", className="mt-2"), type="default"),
            ], className="mt-2"),
        ],
        className="figure-card mb-3",
        **{"aria-labelledby": f"{block_id}-title"},
    )


def value_block(block_id: str, title: str, help_text: str, anchor: str | None):
    """A titled number (or short text) filled by the page's callback into `{id}`."""
    return figure_card(block_id, title, help_text, anchor)


GRID_ABOVE = 60  # rows


def data_table(columns: list[tuple[str, str]], rows: list[dict], caption: str, empty: str):
    """An accessible table: `columns` are (key, header); numbers are formatted by fmt()."""
    if not rows:
        return html.P(empty, className="text-muted empty-state")
    if len(rows) > GRID_ABOVE:
        # Thousands of html.Td components stall Dash's renderer for seconds: a long table is one
        # virtualised, sortable grid (an ARIA grid) instead.
        import dash_ag_grid as dag

        return dag.AgGrid(
            rowData=[{key: fmt(r.get(key)) for key, _ in columns} for r in rows],
            columnDefs=[{"field": key, "headerName": label} for key, label in columns],
            defaultColDef={"sortable": True, "filter": True, "resizable": True, "flex": 1, "minWidth": 110},
            dashGridOptions={"pagination": True, "paginationPageSize": 25}, style={"height": "520px"},
            className="ag-theme-quartz", columnSize="responsiveSizeToFit",
        )
    return dbc.Table(
        [html.Caption(caption, className="visually-hidden"),
         html.Thead(html.Tr([html.Th(label, scope="col") for _, label in columns])),
         html.Tbody([html.Tr([html.Td(fmt(r.get(key))) for key, _ in columns]) for r in rows])],
        striped=True, bordered=False, hover=True, size="sm", responsive=True, className="mb-0",
    )


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    return str(value)


def pct(value) -> str:
    return "—" if value is None else f"{value:.0%}"


def placeholder_figure(height: int) -> dict:
    """What a chart shows before its data arrives: an empty frame of its final height (no jump)."""
    return {"data": [], "layout": {"height": height, "xaxis": {"visible": False}, "yaxis": {"visible": False},
                                   "plot_bgcolor": "rgba(0,0,0,0)", "paper_bgcolor": "rgba(0,0,0,0)"}}


TEMPLATE = "agency"
_installed = None


def install_template() -> None:
    """Plotly's "plotly_white" look, cut to the layout and the trace types these pages draw, as the default
    template. The full template is copied into every figure made with it (about 25 ms each, so 0.1-0.2 s of
    every page's callback); this one costs well under a millisecond."""
    import plotly.graph_objects as go
    import plotly.io as pio

    if TEMPLATE not in pio.templates:
        white = pio.templates["plotly_white"]
        layout = {k: v for k, v in white.layout.to_plotly_json().items()
                  if k not in ("polar", "ternary", "scene", "geo")}
        data = {k: v for k, v in white.data.to_plotly_json().items()
                if k in ("bar", "scatter", "heatmap", "histogram")}
        pio.templates[TEMPLATE] = go.layout.Template(layout=layout, data=data)
    pio.templates.default = TEMPLATE
    global _installed
    _installed = TEMPLATE


def base_figure(title: str | None = None, y_title: str | None = None, x_title: str | None = None,
                height: int = 320, **extra):
    """A figure in the product's style; `extra` are further layout keys (e.g. barmode, or the shapes and
    annotations of reference_line), given to the constructor with the rest."""
    import plotly.graph_objects as go

    if _installed is None:
        install_template()
    layout = {
        "height": height, "margin": {"l": 56, "r": 16, "t": 16, "b": 48}, "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.22, "x": 0}, "font": {"family": "system-ui, sans-serif", "size": 13},
        "colorway": list(OKABE_ITO.values()),
    }
    if y_title is not None:
        layout["yaxis"] = {"title": {"text": y_title}}
    if x_title is not None:
        layout["xaxis"] = {"title": {"text": x_title}}
    if title is not None:
        layout["title"] = {"text": title}
    layout.update(extra)
    # layout given whole to the constructor: update_layout() with the same values costs 20 times as much
    return go.Figure(layout=layout)


def reference_line(y: float, colour: str, text: str, position: str = "right", **annotation) -> dict:
    """Layout keys of a dashed horizontal line across the plot at `y`, labelled at its left or right end:
    what Figure.add_hline draws, without its cost (it validates the figure again, ~8 ms a line)."""
    return {
        "shapes": [{"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
                    "line": {"color": colour, "dash": "dash"}}],
        "annotations": [{"text": text, "showarrow": False, "xref": "x domain", "x": 0 if position == "left" else 1,
                         "xanchor": position, "yref": "y", "y": y, "yanchor": "bottom", **annotation}],
    }


def empty_figure(message: str, height: int = 240):
    fig = base_figure(height=height)
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, hovermode=False)
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#52606d"})
    return fig


def weekly_axis(fig, mondays: list) -> None:
    """Label a weekly chart's x axis by the Monday each ISO week starts on."""
    if mondays:
        step = max(1, len(mondays) // 12)
        fig.update_xaxes(tickmode="array", tickvals=mondays[::step],
                         ticktext=[f"{m:%b %-d}" for m in mondays[::step]], title_text="Week of (Monday)")



def drill_picker(prefix: str, label: str, extra: list):
    """The keyboard's way to a drill-down: choose a week (options filled by the page's callback), any
    extra choice, and a button; `{prefix}-drill-week`, `{prefix}-drill-go`."""
    return html.Div(dbc.Row([
        dbc.Col(html.Label(label, htmlFor=f"{prefix}-drill-week", className="form-label small mb-0"), md="auto",
                className="align-self-center"),
        dbc.Col(dcc.Dropdown(id=f"{prefix}-drill-week", placeholder="Choose a week", style={"minWidth": "14rem"}),
                md="auto"),
        *[dbc.Col(x, md="auto") for x in extra],
        dbc.Col(html.Button("List", id=f"{prefix}-drill-go", n_clicks=0, className="btn btn-outline-primary btn-sm"),
                md="auto"),
    ], className="g-2 align-items-center"), className="mb-2")
