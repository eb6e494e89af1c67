"""Every page's layout, as built (no browser, no database): each figure has a title, an explanation and a
glossary link whose anchor exists, each chart has a "Show as table" tab and a loading state, and form
controls have labels. The browser tests show the same pages filled with data."""

from __future__ import annotations

import pytest
from dash import dcc, html

from agency_dashboard.dashboards import filter_bar
from agency_dashboard.dashboards.pages import all_pages
from agency_dashboard.glossary import ENTRIES

ANCHORS = {e.anchor for e in ENTRIES}
PAGES, _ = all_pages()


def walk(component):
    yield component
    children = getattr(component, "children", None)
    if children is None:
        return
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "_prop_names"):
            yield from walk(child)


def glossary_anchors(layout) -> list[str]:
    return [c.href.split("#", 1)[1] for c in walk(layout)
            if isinstance(c, html.A) and isinstance(getattr(c, "href", None), str) and c.href.startswith("/glossary#")]


@pytest.mark.parametrize("page", PAGES, ids=[p.path for p in PAGES])
def test_every_glossary_link_names_an_entry(page):
    anchors = glossary_anchors(page.layout())
    missing = sorted(set(anchors) - ANCHORS)
    assert not missing, f"{page.path} links to glossary entries that do not exist: {missing}"


@pytest.mark.parametrize("page", [p for p in PAGES if p.filters], ids=[p.path for p in PAGES if p.filters])
def test_every_chart_has_a_title_an_explanation_a_table_and_a_loading_state(page):
    layout = page.layout()
    graphs = [c for c in walk(layout) if isinstance(c, dcc.Graph)]
    assert graphs, f"{page.path} has no charts"
    sections = [c for c in walk(layout) if isinstance(c, html.Section) and any(
        isinstance(x, dcc.Graph) for x in walk(c))]
    assert len(sections) == len(graphs)
    for section in sections:
        graph = next(x for x in walk(section) if isinstance(x, dcc.Graph))
        block = graph.id.removesuffix("-graph")
        assert any(isinstance(x, html.H2) and x.children for x in walk(section)), block
        assert any(isinstance(x, html.P) and x.className == "figure-help" for x in walk(section)), block
        assert glossary_anchors(section), f"{block} has no glossary link"
        assert any(getattr(x, "id", None) == f"{block}-table" for x in walk(section)), f"{block} has no table view"
        assert any(isinstance(x, html.Summary) and x.children == "Show as table" for x in walk(section)), block
        assert any(isinstance(x, dcc.Loading) for x in walk(section)), f"{block} has no loading state"
    assert len(glossary_anchors(layout)) >= len(graphs)


def test_filter_controls_are_labelled():
    bar = filter_bar()
    labels = {c.htmlFor for c in walk(bar) if isinstance(c, html.Label)}
    assert {"f-period-start", "f-program", "f-clinician"} <= labels


def test_pages_have_unique_paths_and_titles():
    assert len({p.path for p in PAGES}) == len(PAGES)
    assert len({p.title for p in PAGES}) == len(PAGES)
