# csv_bytes: every field reaches the worker byte for byte: unquoted leading/trailing spaces are
# kept (not trimmed), an id such as " 3 " survives the round trip through shard, worker and
# validation, and shard files quote such fields so that any CSV reader keeps them.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

printf 'id,prompt,response_a,response_b\n" 3 ",p,"  lead ",b\n4,  p2 ,x ,  y\n' >"$T/in.csv"
cat >"$T/spy.sh" <<W
cp "\$1" "$T/seen.csv"
exec "$FAKE" --input "\$1" --output "\$2"
W
INPUT=$T/in.csv WORKERS=1 write_plan "$T/plan.json" "" \
    '{"name": "spy", "command": ["/bin/sh", "spy.sh", "{input}", "{output}"]}'
run_orch --plan "$T/plan.json"
expect_rc 0
grep -q '^" 3 ",p,"  lead ",b$' "$T/seen.csv" || { cat "$T/seen.csv"; fail "leading spaces lost"; }
grep -q '^4,"  p2 ","x ","  y"$' "$T/seen.csv" || { cat "$T/seen.csv"; fail "row 2 changed"; }
grep -q '^" 3 ",' "$T/sub.csv" || { cat "$T/sub.csv"; fail "the id ' 3 ' is not in the submission"; }
echo ok
