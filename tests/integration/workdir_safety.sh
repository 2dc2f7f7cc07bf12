# workdir_safety: orchestrate never destroys what it did not make.
#  - a plan whose output is its input or the plan itself (by another spelling: a symlink), or
#    whose output lies inside work_dir, is refused before anything is deleted, naming both keys;
#  - --fresh refuses a non-empty work_dir that orchestrate did not mark as its own, and a run
#    refuses a work_dir where a folder of the work_dir layout (models/) was made by the user;
#  - --fresh in a marked work_dir removes only orchestrate's entries;
#  - a second run on a work_dir that another run is using fails at once, naming its PID.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

# A plan with its output at $1 is refused before any worker runs, the last line matching $2
# ($3 names the case). The plan stays as written (cmp against plan.copy).
expect_refused() {
    INPUT=$T/in.csv write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
    sed -i "s|\"output\": \"$T/sub.csv\"|\"output\": \"$1\"|" "$T/plan.json"
    cp "$T/plan.json" "$T/plan.copy"
    run_orch --plan "$T/plan.json"
    expect_rc 1
    last_line | grep -q "$2" || { show_log; fail "$3 not refused"; }
    [ "$(trace_count)" = 0 ] || fail "a worker ran ($3)"
    cmp -s "$T/plan.json" "$T/plan.copy" || fail "the plan was changed ($3)"
}

cp "$SAMPLE" "$T/in.csv"
# --- output is the input, by a symlink (a string comparison would not see it)
ln -s "$T/in.csv" "$T/link.csv"
expect_refused "$T/link.csv" "output .*input.*same file" "output = input"
cmp -s "$SAMPLE" "$T/in.csv" || fail "the input was changed or deleted"
# --- output is the plan file
expect_refused "$T/./plan.json" "output .*plan" "output = plan"
# --- output inside work_dir (spelled through a symlink to the work_dir)
mkdir -p "$T/work"
ln -s "$T/work" "$T/wlink"
expect_refused "$T/wlink/report.json" "output .*inside work_dir" "output inside work_dir"
rm -rf "$T/work" "$T/wlink"

# --- --fresh with work_dir "." in a folder the user made: nothing is deleted
mkdir -p "$T/proj/models/ckpt"
echo weights >"$T/proj/models/ckpt/model.bin"
echo mine >"$T/proj/notes.txt"
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
cd "$T/proj"
run_orch --plan "$T/plan.json" --work-dir . --fresh
cd - >/dev/null
expect_rc 1
last_line | grep -q "not empty.*marker\|marker.*not empty" || { show_log; fail "--fresh in an unmarked folder not refused"; }
[ -f "$T/proj/models/ckpt/model.bin" ] || fail "--fresh deleted the user's models/"
[ -f "$T/proj/notes.txt" ] || fail "--fresh deleted the user's file"
# A plain run there would write into (and later --fresh would delete) the user's models/.
cd "$T/proj"
run_orch --plan "$T/plan.json" --work-dir .
cd - >/dev/null
expect_rc 1
last_line | grep -q "models" || { show_log; fail "a run in a folder with the user's models/ not refused"; }
[ -f "$T/proj/models/ckpt/model.bin" ] || fail "the user's models/ was touched"
[ "$(trace_count)" = 0 ] || fail "a worker ran"

# --- a marked work_dir: --fresh removes orchestrate's entries and nothing else
run_orch --plan "$T/plan.json"
expect_rc 0
[ -d "$T/work/done" ] && [ -d "$T/work/models" ] || fail "no work_dir layout"
echo keep >"$T/work/notes.txt"
mkdir "$T/work/mine"
run_orch --plan "$T/plan.json" --fresh
expect_rc 0
[ -f "$T/work/notes.txt" ] && [ -d "$T/work/mine" ] || fail "--fresh removed entries it does not own"

# --- two runs on one work_dir: the second fails at once and names the first's PID
write_plan "$T/plan2.json" "" "$(model_json m1 1 1 '["identity"]' '' --hang)"
"$ORCH" --plan "$T/plan2.json" --fresh >"$T/first.log" 2>&1 &
first=$!
for i in $(seq 1 100); do [ "$(trace_count)" -ge 6 ] && break; sleep 0.1; done
[ "$(trace_count)" -ge 6 ] || { cat "$T/first.log"; fail "the first run did not start its workers"; }
run_orch --plan "$T/plan.json"
expect_rc 1
last_line | grep -q "in use by another orchestrate run (PID $first)" || { show_log; fail "no lock refusal naming PID $first"; }
[ -d "$T/work/shards" ] || fail "the second run deleted the first run's files"
kill -TERM "$first"
set +e
wait "$first"
set -e
no_leftovers
echo ok
