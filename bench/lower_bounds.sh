#!/usr/bin/env bash
# Installs every runtime dependency at exactly its lower bound (`pkg==lower` for each
# `pkg>=lower,<upper` line of requirements.txt) in a fresh venv, and runs the library and
# page (AppTest) tests against them: a bound that the code outgrew fails here, not on a
# user's machine. The browser tests are left out (they test the browser, not the bounds).
#
#   bash bench/lower_bounds.sh                      # the default selection below
#   bash bench/lower_bounds.sh tests/test_cli.py    # other pytest arguments
#
# VENV (default /tmp/cs-metrics-lower-bounds) is reused when it exists: delete it to start
# over. The install downloads about 400 MB the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-/tmp/cs-metrics-lower-bounds}"
PYTHON="${PYTHON:-python3}"

pins=()
while IFS= read -r line; do
  line="${line%%#*}"
  line="$(echo "$line" | tr -d '[:space:]')"
  [ -z "$line" ] && continue
  name="${line%%[<>=!~]*}"
  lower="$(echo "$line" | sed -n 's/.*>=\([^,]*\).*/\1/p')"
  if [ -z "$lower" ]; then
    echo "requirements.txt: '$line' has no lower bound" >&2
    exit 2
  fi
  pins+=("$name==$lower")
done < requirements.txt

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo "installing the lower bounds: ${pins[*]}"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The test tools at their own bounds from requirements-dev.txt; the runtime pins exactly.
"$VENV/bin/python" -m pip install -q "${pins[@]}" "pytest>=8,<10" "aiosmtpd>=1.4,<2" \
  "oidc-provider-mock>=0.3.4,<0.4"
# The pins must agree with each other and with what they pull in.
"$VENV/bin/python" -m pip check

if [ "$#" -eq 0 ]; then
  set -- \
    tests/test_metrics.py tests/test_ingest.py tests/test_warehouse.py tests/test_settings.py \
    tests/test_cli.py tests/test_seasonality.py tests/test_staffing.py tests/test_leaderboard.py \
    tests/test_compare.py tests/test_feedback.py tests/test_topics.py tests/test_sentiment.py \
    tests/test_outages.py tests/test_whatif.py tests/test_reports.py tests/test_alerts.py \
    tests/test_schedules.py tests/test_mapping_security.py tests/test_drilldown.py \
    tests/test_app.py tests/test_page_overview.py tests/test_page_feedback.py \
    tests/test_page_representatives.py tests/test_page_seasonality.py \
    tests/test_page_outages.py tests/test_page_whatif.py tests/test_page_reports.py \
    tests/test_page_alerts.py tests/test_trends.py
fi
# -p no:cacheprovider: nothing written into the checkout; the repository is on the path
# (not installed) so that the tests run this checkout's code.
PYTHONPATH="$PWD" "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not browser" "$@"
