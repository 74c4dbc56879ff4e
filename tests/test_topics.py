"""Topics and emerging issues on generated comments, and masking in everything exported."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.feedback import latest_comments
from cs_metrics.analysis.topics import (
    DEFAULT_K,
    OTHER,
    benjamini_hochberg,
    emerging_issues,
    topics,
)
from cs_metrics.cli.main import main
from cs_metrics.core.errors import CsMetricsError
from simulations.generator import generate

END = datetime(2025, 3, 1)
PHRASES = (
    "The new mobile app logs me out every time I try to pay.",
    "Your app keeps logging me out at checkout, {name} here.",
    "App logs me out again and again, so I cannot pay my bill. Call {phone} or {email}",
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
PHONE = re.compile(r"\d{3}\)? ?[-. ]?\d{3}[-. ]\d{4}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """20,000 tickets over 120 days: about 4,100 comments written from the domain."""
    out = tmp_path_factory.mktemp("text") / "src"
    generate(out, tickets=20_000, days=120, seed=3, end=END)
    return out


@pytest.fixture(scope="module")
def calm(folder) -> Warehouse:
    db = folder.parent / "calm.duckdb"
    cs_metrics.ingest(folder, db=db)
    return Warehouse(db, read_only=True)


@pytest.fixture(scope="module")
def planted(folder) -> tuple[Warehouse, pd.DataFrame]:
    """The same data with a new complaint planted in the last 12 days: 24 survey comments
    about the app logging people out, some with a customer's name, phone and e-mail."""
    out = folder.parent / "planted"
    shutil.copytree(folder, out)
    tickets = pd.read_parquet(out / "tickets.parquet")
    feedback = pd.read_parquet(out / "feedback.parquet")
    customers = pd.read_parquet(out / "customers.parquet")
    recent = tickets[(tickets["created_at"] >= pd.Timestamp(END - timedelta(days=12)))
                     & (tickets["status"] == "closed") & ~tickets["is_test"].fillna(False)]
    pick = recent.sample(24, random_state=1)
    names = customers[customers["segment"] == "S"]["name"].head(24).tolist()
    rows = []
    for i, (tid, resolved) in enumerate(zip(pick["ticket_id"], pick["resolved_at"],
                                            strict=True)):
        text = PHRASES[i % 3].format(name=names[i], phone=f"(555) {100 + i}-77{i:02d}",
                                     email=f"{names[i].split()[0].lower()}{i}@example.com")
        rows.append({"feedback_id": f"P{i:03d}", "ticket_id": tid,
                     "submitted_at": resolved + pd.Timedelta(hours=3), "csat": 2, "nps": 3,
                     "ces": 6, "comment": text})
    new = pd.DataFrame(rows).astype(feedback.dtypes.to_dict())
    pd.concat([feedback, new], ignore_index=True).to_parquet(out / "feedback.parquet",
                                                             index=False)
    db = folder.parent / "planted.duckdb"
    cs_metrics.ingest(out, db=db)
    return Warehouse(db, read_only=True), new.assign(name=names)


def purity(model) -> float:
    """Share of comments in their topic's most common domain (the generator's label)."""
    t = model.topics
    return float((t["main_domain_pct"] / 100 * t["comments"]).sum() / t["comments"].sum())


def test_topics_recover_the_generators_domains(calm):
    """On this dataset the 15 default topics are 76 % pure by domain (7 topics: 45 %; the
    generator's sentences of one domain share few words, so a domain takes several topics)."""
    model = topics(calm)
    print(f"purity {purity(model):.3f} of {model.total} comments")
    assert model.k == DEFAULT_K and not model.sampled
    assert purity(model) > 0.7
    t = model.topics
    assert t["comments"].sum() == model.total
    assert t["share_pct"].sum() == pytest.approx(100.0)
    named = t[t["topic"] > 0]
    assert named["comments"].is_monotonic_decreasing
    assert (named["name"].str.len() > 0).all()
    # the names are the domains' own words
    words = " ".join(named["name"])
    for word in ("billing", "refund", "router", "sim", "tv"):
        assert word in words, word
    # per-topic figures are those of its comments: CSAT of 1-5, sentiment of -1..1
    assert t["csat_avg"].between(1, 5).all() and t["sentiment_avg"].between(-1, 1).all()
    assert set(t.columns) >= {"csat_pct", "negative_pct", "examples", "note"}


def test_topics_are_deterministic_and_sample(calm):
    a, b = topics(calm, k=8, seed=3), topics(calm, k=8, seed=3)
    pd.testing.assert_frame_equal(a.topics, b.topics)
    small = topics(calm, k=5, sample=1000, seed=3)
    assert small.sampled and small.modelled == 1000 and small.total == a.total
    assert abs(small.topics["comments"].sum() - small.total) <= len(small.topics)
    assert not topics(calm, k=5, sample=1000, seed=4).topics.equals(small.topics)


def test_topics_follow_the_filters_and_say_when_too_few(calm):
    billing = topics(calm, Filters.build(domain="billing"), k=4)
    assert set(billing.topics["main_domain"].dropna()) == {"billing"}
    with pytest.raises(CsMetricsError, match="comments match"):
        topics(calm, Filters.build(END - timedelta(days=1), END), k=10)
    with pytest.raises(CsMetricsError, match="2 to 50"):
        topics(calm, k=1)


def test_a_planted_issue_is_found(planted):
    wh, rows = planted
    found = emerging_issues(wh, end=END)
    assert found.found
    top = found.issues.iloc[0]
    assert "app" in top["terms"].split(", ")
    assert top["recent_comments"] >= 24
    assert top["baseline_share_pct"] < 1 and top["growth"] > 5
    assert top["q_value"] < 1e-4
    assert top["domains"] and top["locations"]
    assert "app" in top["examples"].lower()
    assert found.recent == (END - timedelta(days=14), END)
    assert found.baseline == (END - timedelta(days=70), END - timedelta(days=14))
    assert "exact conditional" in found.test and "Benjamini-Hochberg" in found.test
    print(found.describe())
    assert found.describe().startswith(f"{len(found.issues)} emerging issue(s) in 2025-02-15 "
                                       "to 2025-02-28")
    # the issue's comments are attached to random tickets: it is not in one domain, and
    # its share of the recent comments matches what was planted
    recent = found.recent_comments
    assert top["recent_share_pct"] == pytest.approx(100 * top["recent_comments"] / recent)


def test_a_calm_period_yields_none(calm):
    for back in range(0, 50, 7):  # the last seven weeks, one window ending each week
        found = emerging_issues(calm, end=END - timedelta(days=back))
        assert not found.found, (back, found.describe())
        assert found.terms_tested > 20
    assert found.describe().startswith("No emerging issues")


def test_benjamini_hochberg_matches_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5, 0.2, 0.04])
    want = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(benjamini_hochberg(p), want)
    assert len(benjamini_hochberg([])) == 0


def _no_pii(texts, names) -> None:
    for text in texts:
        if not isinstance(text, str):
            continue
        assert not EMAIL.search(text), text
        assert not PHONE.search(text), text
        low = text.lower()
        for name in names:
            assert name.lower() not in low, (name, text)


def test_every_export_is_masked(planted, tmp_path, capsys):
    wh, rows = planted
    names = rows["name"].tolist()
    texts = rows["comment"].tolist()
    assert any(EMAIL.search(t) for t in texts) and any(PHONE.search(t) for t in texts)
    assert any(n in t for n, t in zip(names, texts, strict=True))

    page = latest_comments(wh, limit=200)
    shown = page.rows["comment"].tolist()
    assert any("[email]" in c for c in shown) and any("[name]" in c for c in shown)
    assert any("[phone]" in c for c in shown)
    _no_pii(shown, names)

    model = topics(wh, k=DEFAULT_K)
    _no_pii(model.topics[["name", "terms", "examples"]].to_numpy().ravel(), names)
    found = emerging_issues(wh, end=END)
    _no_pii(found.issues[["issue", "terms", "examples"]].to_numpy().ravel(), names)
    # masks never become terms
    for terms in list(model.topics["terms"]) + list(found.issues["terms"]):
        assert not {"email", "phone", "name", "example", "com"} & set(terms.split(", "))

    out = tmp_path / "topics.csv"
    assert main(["topics", "--db", str(wh.path), "--k", "6", "--out", str(out)]) == 0
    _no_pii([out.read_text(encoding="utf-8")], names)
    assert "examples are masked" in capsys.readouterr().err


def test_topics_command(calm, capsys):
    assert main(["topics", "--db", str(calm.path), "--k", "5", "--where", "domain=billing",
                 "--from", "2025-01-01", "--to", "2025-03-01", "--format", "json"]) == 0
    out = capsys.readouterr()
    records = pd.read_json(pd.io.common.StringIO(out.out))
    assert list(records.columns[:4]) == ["topic", "name", "terms", "comments"]
    assert set(records["main_domain"].dropna()) == {"billing"}
    assert "5 topics (TF-IDF + NMF) of all" in out.err
    assert main(["topics", "--db", str(calm.path), "--k", "99"]) == 2
    assert "2 to 50" in capsys.readouterr().err
    assert main(["topics", "--db", str(calm.path), "--where", "planet=mars"]) == 2


def test_other_collects_comments_without_topic_words(tmp_path):
    rows = [{"ticket_id": f"T{i}", "created_at": "2025-01-05 10:00:00", "status": "closed",
             "resolved_at": "2025-01-05 11:00:00"} for i in range(60)]
    words = ["router keeps rebooting", "refund for the invoice", "tv channels missing"]
    comments = [f"My {words[i % 3]} problem" if i < 50 else "Thanks!" for i in range(60)]
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame(rows).to_csv(src / "tickets.csv", index=False)
    pd.DataFrame({"ticket_id": [r["ticket_id"] for r in rows], "csat": 4,
                  "comment": comments}).to_csv(src / "feedback.csv", index=False)
    cs_metrics.ingest(src, db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    t = topics(wh, k=3).topics
    wh.close()
    assert t.iloc[-1]["name"] == OTHER and t.iloc[-1]["comments"] == 10
    assert sorted(t["comments"][:-1]) == [16, 17, 17]
    assert (t["note"][:-1] == "few comments").all()


def test_the_emerging_issue_alert_rule(planted, calm):
    """The alert rule raises the planted issue, and nothing on the calm data."""
    from cs_metrics import load_settings
    from cs_metrics.ops.alerts import evaluate

    wh, _ = planted
    raised = [a for a in evaluate(wh, load_settings(), now=END) if a.rule == "emerging_issue"]
    assert raised
    top = emerging_issues(wh, end=END).issues.iloc[0]
    alert = next(a for a in raised if a.id == f"emerging_issue:{top['issue']}")
    assert alert.figures["recent_comments"] == top["recent_comments"]
    assert "Benjamini-Hochberg" in alert.figures["test"]
    assert alert.link.startswith("/feedback?")
    calm_raised = [a for a in evaluate(calm, load_settings(), now=END)
                   if a.rule == "emerging_issue"]
    assert calm_raised == []
