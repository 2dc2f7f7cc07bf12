# itest_lib.sh: shared setup for tests/integration/*.sh (sourced, not run; not a test itself).
#
# Gives each test a fresh temp directory $T (removed on exit), the programs ($ORCH, $FAKE), a
# plan writer, an independent expected-submission calculator (fake_worker run directly on the
# whole input, combined with awk; no python), and leftover-process checks. Every process a test
# starts has $T in its command line (the shard paths live there), so `pgrep -f "$T"` finds any
# that outlived orchestrate.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/itest_env.sh"

B=$ORCH_BINARY_DIR
FX=$ORCH_FIXTURES
ORCH=$B/orchestrate
FAKE=$B/fake_worker
SAMPLE=$FX/data/lmsys-sample.csv
for p in "$ORCH" "$FAKE"; do
    [ -x "$p" ] || { echo "skipped: $p not built"; exit 77; }
done
T=$(mktemp -d /tmp/itest.XXXXXX)

cleanup() {
    local pids
    pids=$(pgrep -f "$T" || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Run orchestrate with the given arguments; stdout+stderr to $T/out.log, exit status in $RC.
run_orch() {
    set +e
    "$ORCH" "$@" >"$T/out.log" 2>&1
    RC=$?
    set -e
}

# Wait for the background process $1 (an orchestrate started with &); its exit status in $RC.
wait_rc() {
    set +e
    wait "$1"
    RC=$?
    set -e
}

show_log() {
    echo "---- orchestrate output ----" >&2
    cat "$T/out.log" >&2
    echo "----------------------------" >&2
}

expect_rc() {
    [ "$RC" = "$1" ] || { show_log; fail "exit status $RC, expected $1"; }
}

# The last line orchestrate printed.
last_line() {
    tail -n 1 "$T/out.log"
}

# No process whose command line mentions $T may be alive (zombies have no command line).
no_leftovers() {
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pgrep -f "$T" >/dev/null || return 0
        sleep 0.2
    done
    ps -eo pid,pgid,stat,args | grep -F "$T" | grep -v grep >&2
    fail "worker processes left behind"
}

# report.json with whitespace removed, for grepping ("batch_sizes":[16,8,4,2]).
report_flat() {
    tr -d ' \n' <"${1:-$T/work/report.json}"
}

# JSON array of strings for an argv: json_argv a b c -> "a", "b", "c"
json_argv() {
    local out="" a
    for a in "$@"; do out="$out${out:+, }\"$a\""; done
    printf '%s' "$out"
}

# write_plan FILE EXTRA_TOP_JSON MODEL_JSON...: a plan over $INPUT (default the sample) with
# gpus cpu, cpu_workers ${WORKERS:-2}, kill_grace_s ${GRACE:-1}, work_dir $T/work, output $T/sub.csv.
write_plan() {
    local file=$1 extra=$2
    shift 2
    local models="" m
    for m in "$@"; do models="$models${models:+,
    }$m"; done
    cat >"$file" <<EOF
{
  "input": "${INPUT:-$SAMPLE}",
  "output": "$T/sub.csv",
  "work_dir": "$T/work",
  "gpus": "cpu",
  "cpu_workers": ${WORKERS:-2},
  "kill_grace_s": ${GRACE:-1}${extra:+,
  $extra},
  "models": [
    $models
  ]
}
EOF
}

# model_json NAME SEED WEIGHT TTA_JSON [EXTRA_MEMBERS] [FAKE_FLAGS...]: a fake_worker model. The
# trace file is passed as --trace=FILE: as a separate argument it would name an existing file,
# which orchestrate fingerprints for resume, and it changes with every run.
model_json() {
    local name=$1 seed=$2 weight=$3 tta=$4 extra=${5:-}
    shift 5 2>/dev/null || shift $#
    printf '{"name": "%s", "command": [%s], "weight": %s, "tta": %s%s}' "$name" \
        "$(json_argv "$FAKE" --seed "$seed" --trace="$T/trace.log" "$@")" "$weight" "$tta" "${extra:+, $extra}"
}

# expected_model SEED TTA_LIST OUT: the probabilities one fake model should get after merging:
# the mean of its variants, swap_ab flipped back, each row renormalised.
expected_model() {
    local seed=$1 ttas=$2 out=$3 input=${INPUT:-$SAMPLE} files="" v
    for v in $ttas; do
        case $v in
        identity) "$FAKE" --input "$input" --output "$T/ref.$seed.identity.csv" --seed "$seed" >/dev/null ;;
        swap_ab) "$FAKE" --input "$input" --output "$T/ref.$seed.swap_ab.csv" --seed "$seed" --swap-columns >/dev/null ;;
        esac
        files="$files $T/ref.$seed.$v.csv"
    done
    # paste lines the variant files up row by row (same ids, same order); awk averages them.
    # shellcheck disable=SC2086
    paste -d, $files | awk -F, -v ttas="$ttas" '
        BEGIN { nv = split(ttas, tv, " ") }
        NR == 1 { print "id,a,b,t"; next }
        {
            a = b = t = 0
            for (v = 1; v <= nv; v++) {
                o = (v - 1) * 4
                if (tv[v] == "swap_ab") { a += $(o + 3); b += $(o + 2) } else { a += $(o + 2); b += $(o + 3) }
                t += $(o + 4)
            }
            s = a + b + t
            printf "%s,%.12f,%.12f,%.12f\n", $1, a / s, b / s, t / s
        }' >"$out"
}

# expected_ensemble METHOD OUT "SEED:WEIGHT:TTA,TTA" ...: the submission orchestrate should write.
expected_ensemble() {
    local method=$1 out=$2 files="" weights="" spec seed weight ttas
    shift 2
    for spec in "$@"; do
        seed=${spec%%:*}
        weight=${spec#*:}
        weight=${weight%%:*}
        ttas=$(echo "${spec##*:}" | tr ',' ' ')
        expected_model "$seed" "$ttas" "$T/expected.$seed.csv"
        files="$files $T/expected.$seed.csv"
        weights="$weights $weight"
    done
    # shellcheck disable=SC2086
    paste -d, $files | awk -F, -v method="$method" -v weights="$weights" '
        function clamp(p) { return p < 1e-7 ? 1e-7 : (p > 1 - 1e-7 ? 1 - 1e-7 : p) }
        BEGIN { nm = split(weights, w, " "); tot = 0; for (k = 1; k <= nm; k++) tot += w[k] }
        NR == 1 { print "id,winner_model_a,winner_model_b,winner_tie"; next }
        {
            s = 0
            for (l = 1; l <= 3; l++) {
                acc = 0
                for (k = 1; k <= nm; k++) {
                    p = $((k - 1) * 4 + 1 + l); wk = w[k] / tot
                    if (method == "mean") acc += wk * p
                    else if (method == "geometric") acc += wk * log(clamp(p))
                    else { p = clamp(p); acc += wk * log(p / (1 - p)) }
                }
                if (method == "geometric") acc = exp(acc)
                else if (method == "logit_mean") acc = 1 / (1 + exp(-acc))
                q[l] = acc; s += acc
            }
            printf "%s,%.12f,%.12f,%.12f\n", $1, q[1] / s, q[2] / s, q[3] / s
        }' >"$out"
}

# compare_probs GOT EXPECTED [TOL]: same ids in the same order, every value within TOL.
compare_probs() {
    local got=$1 want=$2 tol=${3:-1e-6}
    [ "$(wc -l <"$got")" = "$(wc -l <"$want")" ] || fail "$got has $(wc -l <"$got") lines, expected $(wc -l <"$want")"
    [ "$(head -n 1 "$got")" = "id,winner_model_a,winner_model_b,winner_tie" ] || fail "$got: bad header: $(head -n 1 "$got")"
    paste -d, "$got" "$want" | awk -F, -v tol="$tol" '
        NR == 1 { next }
        $1 != $5 { printf "line %d: id %s, expected %s\n", NR, $1, $5; bad = 1; exit }
        {
            for (l = 2; l <= 4; l++) {
                d = $l - $(l + 4); if (d < 0) d = -d
                if (d > tol) { printf "line %d (id %s): column %d is %s, expected %s\n", NR, $1, l, $l, $(l + 4); bad = 1; exit }
            }
        }
        END { exit bad }' || fail "$got does not match the expected $want"
}

# How many workers started (lines in the fake workers' trace file).
trace_count() {
    if [ -f "$T/trace.log" ]; then wc -l <"$T/trace.log" | tr -d ' '; else echo 0; fi
}

# wait_until CMD [ARGS...]: run CMD every 0.1 s until it succeeds, for at most 10 s. Returns 0
# once it did, else 1.
wait_until() {
    local i
    for i in $(seq 1 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# started N: at least N workers have started (lines in the trace file); for wait_until.
started() {
    [ "$(trace_count)" -ge "$1" ]
}
