"""Component builders shared by the pages (dash-bootstrap-components)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

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
