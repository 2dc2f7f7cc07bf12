# carriage_return: a worker that draws its progress with "\r" (tqdm) does not garble the console:
# "\r" ends a console line, and a burst of "\r" updates shows only its first and its last state
# (at most one per few seconds in between), each as its own "[job] ..." line. The log keeps the
# worker's bytes unchanged. CRLF line ends give one line each, not an extra empty one.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

cat >"$T/tqdm.sh" <<'SH'
printf 'loading\r\n'
for i in $(seq 1 50); do printf '\rscoring: %d/50' "$i"; done
printf '\n'
printf 'done\r\n' >&2
"$@" || exit
printf '\rsaving: 1/2\rsaving: 2/2'
SH
WORKERS=1 write_plan "$T/plan.json" "" \
    "{\"name\": \"m1\", \"command\": [\"bash\", \"$T/tqdm.sh\", \"$FAKE\", \"--input\", \"{input}\", \"--output\", \"{output}\"], \"tta\": [\"identity\"]}"
run_orch --plan "$T/plan.json"
expect_rc 0
! grep -q $'\r' "$T/out.log" || { cat -v "$T/out.log" >&2; fail "a carriage return reached the console"; }
J='\[m1.identity.s0of1\]'
grep -q "^$J loading\$" "$T/out.log" || { show_log; fail "CRLF line not shown as one line"; }
grep -q "^$J scoring: 50/50\$" "$T/out.log" || { show_log; fail "the last \\r update is not shown"; }
n=$(grep -c "^$J scoring: " "$T/out.log")
[ "$n" -le 3 ] || { show_log; fail "$n scoring lines on the console; expected the latest few only"; }
grep -q "^$J saving: 2/2\$" "$T/out.log" || { show_log; fail "an unterminated \\r update is lost"; }
! grep -q "^$J saving: 1/2" "$T/out.log" || { show_log; fail "a superseded \\r update was shown"; }
[ "$(grep -c "^$J \$" "$T/out.log")" = 0 ] || { show_log; fail "empty worker lines from CRLF"; }
[ "$(tr -cd '\r' <"$T/work/logs/m1.identity.s0of1.log" | wc -c)" -ge 53 ] || fail "the log lost carriage returns"
no_leftovers
echo ok
