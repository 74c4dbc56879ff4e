"""The pages' one cache helper, ``views._cache.cached``: a warehouse argument is keyed by its
``cache_key`` (file, and scope for a scoped one), so two people's scopes never share a cached
result; and no page caches results any other way (one caching helper for the whole UI layer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import streamlit as st

from cs_metrics import Warehouse
from cs_metrics.core.access import Scope, ScopedWarehouse, scoped
from tests.conftest import REPO
from views._cache import HASH_FUNCS, cached

LEAD = "lee@example.com"


@pytest.fixture
def plain(sample_db):
    wh = Warehouse(sample_db, read_only=True)
    yield wh
    wh.close()


@pytest.fixture
def empty_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def test_scoped_warehouses_are_keyed_by_their_scope(plain, empty_cache):
    teams = plain.dimension_values("team")
    assert len(teams) >= 2
    calls: list[str] = []

    @cached
    def ticket_count(wh: Warehouse, label: str) -> int:
        calls.append(wh.cache_key)
        return int(wh.scalar("select count(*) from tickets"))

    one = scoped(plain, Scope("team_lead", LEAD, teams=(teams[0],)))
    same = scoped(plain, Scope("team_lead", "other@example.com", teams=(teams[0],)))
    other = scoped(plain, Scope("team_lead", LEAD, teams=(teams[1],)))
    try:
        assert isinstance(one, ScopedWarehouse) and one is not same
        first = ticket_count(one, "n")
        # the same scope (another warehouse object, another person with the same rows): the
        # cached result, no second computation
        assert ticket_count(same, "n") == first
        assert len(calls) == 1
        # another scope: computed apart, its own figure
        second = ticket_count(other, "n")
        assert len(calls) == 2 and calls[1] != calls[0]
        # the whole warehouse is apart from both scopes
        whole = ticket_count(plain, "n")
        assert len(calls) == 3 and calls[2] == plain.cache_key
        assert whole > first and whole > second
        # the other arguments still key the cache
        ticket_count(one, "m")
        assert len(calls) == 4
        # and every one is served from the cache the second time
        assert [ticket_count(w, "n") for w in (one, same, other, plain)] == \
            [first, first, second, whole]
        assert len(calls) == 4
    finally:
        for wh in (one, same, other):
            wh.close()


def test_arguments_written_either_way_are_one_entry(plain, empty_cache):
    calls: list[int] = []

    @cached
    def f(wh: Warehouse, a: int, b: int = 2) -> int:
        calls.append(a)
        return a + b

    assert f(plain, 1) == f(plain, 1, 2) == f(plain, a=1, b=2) == 3
    assert len(calls) == 1


def test_every_warehouse_class_is_hashed_by_its_cache_key():
    assert Warehouse in HASH_FUNCS and ScopedWarehouse in HASH_FUNCS


def _cache_data_uses(path: Path) -> list[int]:
    """Lines of ``path`` that cache with ``st.cache_data`` (a call or a decorator) or import
    it; ``st.cache_data.clear()`` (emptying every cache on a reload) is not caching."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    clears = {id(node.value) for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and node.attr == "clear"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "cache_data" \
                and id(node) not in clears:
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "streamlit" \
                and any(alias.name == "cache_data" for alias in node.names):
            lines.append(node.lineno)
    return lines


def test_only_the_cache_helper_uses_st_cache_data():
    pages = sorted((REPO / "views").glob("*.py"))
    assert len(pages) > 10
    found = {p.name: _cache_data_uses(p) for p in pages if p.name != "_cache.py"}
    assert {name: lines for name, lines in found.items() if lines} == {}
    assert _cache_data_uses(REPO / "views" / "_cache.py")  # the check sees a real use
