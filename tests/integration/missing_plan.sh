# missing_plan: without a plan, orchestrate says so, prints a minimal example plan and where
# the docs are, and fails with the reason as its last line. Also: bad options, --help, --version.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

cd "$T"
run_orch
expect_rc 1
last_line | grep -qx "orchestrate: failed: no plan file 'plan.json'" || { show_log; fail "wrong last line"; }
grep -q '"models": \[' "$T/out.log" || fail "no example plan"
grep -q "docs/plan.md" "$T/out.log" || fail "no pointer to the docs"

# The example is a real plan: it loads once the files it names exist.
sed -n '/^{$/,/^}$/p' "$T/out.log" >"$T/plan.json"
cp "$SAMPLE" "$T/test.csv"
# Preflight runs `lm-worker check` on the model even in a dry run: a tiny real checkpoint.
cp -r "$FX/models/tiny-llama" "$T/gemma-2-9b-cls"
# lm-worker is found next to orchestrate or on PATH; a stand-in on PATH is enough for a dry run.
mkdir -p "$T/bin"
printf '#!/bin/sh\nexit 70\n' >"$T/bin/lm-worker"
chmod +x "$T/bin/lm-worker"
PATH="$T/bin:$PATH" run_orch --dry-run --gpus cpu
expect_rc 0
grep -q "stage 2/2: model mine (command, weight 0.5)" "$T/out.log" || { show_log; fail "example plan stages"; }
grep -q "dry run: no worker started" "$T/out.log" || { show_log; fail "example plan dry run"; }

run_orch --bogus
expect_rc 64
last_line | grep -q "unknown or incomplete option '--bogus'" || { show_log; fail "bad option message"; }
run_orch --help
expect_rc 0
grep -q -- "--dry-run" "$T/out.log" || fail "--help does not list --dry-run"
run_orch --version
expect_rc 0
grep -q "^orchestrate [0-9]" "$T/out.log" || fail "--version"
run_orch --plan "$T/nope.json"
expect_rc 1
last_line | grep -q "no plan file '$T/nope.json'" || fail "--plan to a missing file"
echo ok
