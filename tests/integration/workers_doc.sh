# workers_doc: the example workers in docs/workers.md run through orchestrate as the page says:
# the shell one always, the Python one when python3 is available. The shell worker's prior
# must come out for every id (proving its CSV record splitting); the Python worker's output
# must validate for both TTA variants.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

DOC="$ORCH_SOURCE_DIR/docs/workers.md"
# The code block that starts with a given shebang, up to its closing fence.
extract() {
    awk -v first="$1" '
        !inb && $0 == first { inb = 1 }
        inb && /^```/ { exit }
        inb { print }' "$DOC"
}
extract '#!/bin/sh' >"$T/prior_worker.sh"
extract '#!/usr/bin/env python3' >"$T/my_worker.py"
[ -s "$T/prior_worker.sh" ] && [ -s "$T/my_worker.py" ] || fail "examples not found in $DOC"

cat >"$T/plan.json" <<JSON
{"input": "$SAMPLE", "output": "$T/sub.csv", "work_dir": "$T/work", "gpus": "cpu", "cpu_workers": 2,
 "models": [{"name": "prior", "command": ["sh", "prior_worker.sh"], "tta": ["identity"], "weight": 0.1}]}
JSON
run_orch --plan "$T/plan.json"
expect_rc 0
awk -F, 'NR > 1 && ($2 != 0.35 || $3 != 0.35 || $4 != 0.3) { bad = 1 } END { exit bad || NR != 201 }' "$T/sub.csv" \
    || { head "$T/sub.csv"; fail "the shell worker's submission is not the prior for 200 rows"; }
# The ids are the input's, in order (the sample's first field is the id).
"$FAKE" --input "$SAMPLE" --output "$T/ids.csv" >/dev/null
[ "$(cut -d, -f1 "$T/sub.csv")" = "$(cut -d, -f1 "$T/ids.csv")" ] || fail "ids differ from the input's"

if command -v python3 >/dev/null 2>&1; then
    cat >"$T/plan.json" <<JSON
{"input": "$SAMPLE", "output": "$T/sub.csv", "work_dir": "$T/work", "gpus": "cpu", "cpu_workers": 2,
 "models": [{"name": "mine", "command": ["python3", "my_worker.py"], "tta": ["identity", "swap_ab"], "weight": 0.5}]}
JSON
    run_orch --plan "$T/plan.json"
    expect_rc 0
    [ "$(wc -l <"$T/sub.csv")" = 201 ] || fail "python worker: wrong row count"
    # Its model is symmetric in a and b, so the swap_ab variant, flipped back, agrees with the
    # identity one and the merged model file equals a direct run.
    python3 "$T/my_worker.py" --input "$SAMPLE" --output "$T/direct.csv"
    paste -d, "$T/work/models/mine.csv" "$T/direct.csv" | awk -F, 'NR > 1 { for (l = 2; l <= 4; l++) { d = $l - $(l + 4); if (d < 0) d = -d; if (d > 1e-6) bad = 1 } } END { exit bad }' \
        || fail "python worker: merged output differs from a direct run"
fi
no_leftovers
echo ok
