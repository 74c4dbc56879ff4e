"""Customer segment labels from the settings ([display.segments]): checked on load, shown as
plain text wherever a segment is shown."""

from __future__ import annotations

import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import DEFAULT_SETTINGS_FILE, _settings

DEFAULTS = DEFAULT_SETTINGS_FILE.read_text(encoding="utf-8")


def _with(tmp_path, text: str):
    return _settings(DEFAULTS, (str(tmp_path / "s.toml"), text))


def test_the_shipped_labels_and_an_unlisted_code(tmp_path):
    s = _settings(DEFAULTS, None)
    assert s.segment_label("M") == "Mid-market"
    assert s.segment_label("S") == "Small business"
    assert s.segment_label("Enterprise") == "Enterprise"  # not listed: shown as written
    assert s.segment_label(None) is None
    assert s.segment_label(float("nan")) is None


def test_a_settings_file_adds_and_replaces_labels(tmp_path):
    s = _with(tmp_path, '[display.segments]\nM = "Mid-size"\nE = "Enterprise"\n')
    assert s.segment_label("M") == "Mid-size"
    assert s.segment_label("E") == "Enterprise"
    assert s.segment_label("S") == "Small business"  # merged over the defaults
    # the time zone beside it is untouched
    assert s.display_timezone == "UTC"


@pytest.mark.parametrize("bad", ['3', '""', '"   "', '"' + "x" * 61 + '"', '"a\\u0000b"',
                                 '"line\\nbreak"', '["M"]'])
def test_bad_labels_are_refused_with_the_key_named(tmp_path, bad):
    with pytest.raises(CsMetricsError, match=r"display\.segments\.M"):
        _with(tmp_path, f"[display.segments]\nM = {bad}\n")


@pytest.mark.parametrize("bad", ['"Mid\u202eevil"', '"a\u200bb"', '"(none)"', '"–"'])
def test_invisible_characters_and_placeholders_are_refused(tmp_path, bad):
    with pytest.raises(CsMetricsError, match=r"display\.segments\.M"):
        _with(tmp_path, f"[display.segments]\nM = {bad}\n")


def test_two_segments_may_not_share_a_label(tmp_path):
    with pytest.raises(CsMetricsError, match=r"display\.segments\.M and display\.segments\.E"):
        _with(tmp_path, '[display.segments]\nE = "mid-market"\n')


def test_segments_must_be_a_table(tmp_path):
    with pytest.raises(CsMetricsError, match=r"display\.segments"):
        _with(tmp_path, '[display]\nsegments = "M"\n')


def test_markup_in_a_label_stays_text(tmp_path):
    s = _with(tmp_path, '[display.segments]\nM = "[click](http://evil.example) <b>x</b>"\n')
    assert s.segment_label("M") == "[click](http://evil.example) <b>x</b>"


# --- where segments are shown --------------------------------------------------------------

HOSTILE = "[Mid](http://evil.example) <b>x</b> | *y*"


@pytest.fixture
def named(tmp_path, monkeypatch):
    """Settings naming segment M with a hostile label and S plainly, for this test."""
    path = tmp_path / "settings.toml"
    path.write_text(f'[display.segments]\nM = "{HOSTILE}"\nS = "Small business"\n',
                    encoding="utf-8")
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(path))
    return path


def test_reports_name_segments_and_keep_codes_in_json(sample_wh, named):
    import json

    from cs_metrics.ops import reports as R

    rendered = R.render(R.build_report(sample_wh, "executive", "last-month"))
    codes = {row["customer_segment"] for row in
             json.loads(rendered.json_text)["tables"]["segments"]["rows"]}
    assert {"M", "S"} <= codes  # the data's values stay in the JSON
    assert "Small business" in rendered.markdown
    # the hostile label is text: escaped in Markdown, never a link or markup
    assert "\\[Mid\\]" in rendered.markdown and "[Mid](http" not in rendered.markdown
    assert "&lt;b&gt;x&lt;/b&gt;" in rendered.html and "<b>x</b>" not in rendered.html
    assert "Small business" in rendered.html


def test_overview_and_sidebar_show_segment_labels(sample_db, named, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    st_cache_clear()
    monkeypatch.setenv("CS_METRICS_DB", str(sample_db))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d for d in at.dataframe if "segment_label" in d.value.columns)
    df = table.value
    shown = dict(zip(df["customer_segment"], df["segment_label"], strict=True))
    assert shown["M"] == HOSTILE and shown["S"] == "Small business"
    # a code the settings do not name is shown as the data writes it
    assert all(shown[c] == c for c in shown if c not in ("M", "S"))
    # the sidebar's filter lists the names, and filters on the codes
    box = at.sidebar.multiselect(key="filter_customer_segment")
    assert box.format_func("S") == "Small business"
    box.set_value(["S"]).run()
    assert not at.exception
    assert at.query_params.get("customer_segment") in (["S"], "S")
    st_cache_clear()


def st_cache_clear() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
