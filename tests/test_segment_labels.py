"""Customer segment labels from the settings ([display.segments]): checked on load, shown as
plain text wherever a segment is shown."""

from __future__ import annotations

import pytest

from cs_metrics.errors import CsMetricsError
from cs_metrics.settings import DEFAULT_SETTINGS_FILE, _settings

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


def test_segments_must_be_a_table(tmp_path):
    with pytest.raises(CsMetricsError, match=r"display\.segments"):
        _with(tmp_path, '[display]\nsegments = "M"\n')


def test_markup_in_a_label_stays_text(tmp_path):
    s = _with(tmp_path, '[display.segments]\nM = "[click](http://evil.example) <b>x</b>"\n')
    assert s.segment_label("M") == "[click](http://evil.example) <b>x</b>"
