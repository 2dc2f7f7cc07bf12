# cli_style: one command-line style for both programs. -h/--help exits 0 on orchestrate, on
# lm-worker and on every lm-worker subcommand; -V/--version prints the version, the git commit and
# the CUDA version (or "none") and rejects extra arguments with 64; every option is spelled one
# way (--quant int8, with --int8 as its deprecated alias) and a bad value is a usage error (64).
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

LM=$B/lm-worker
[ -x "$LM" ] || { echo "skipped: $LM not built"; exit 77; }

# run PROG ARGS...: stdout+stderr to $T/out.log, exit status in $RC.
run() {
    set +e
    "$@" >"$T/out.log" 2>&1
    RC=$?
    set -e
}

for prog in "$ORCH" "$LM"; do
    name=$(basename "$prog")
    for h in -h --help; do
        run "$prog" $h
        expect_rc 0
        grep -q "^usage: $name" "$T/out.log" || { show_log; fail "$name $h: no usage"; }
    done
    for v in -V --version; do
        run "$prog" $v
        expect_rc 0
        sed -n 1p "$T/out.log" | grep -Eq "^$name [0-9]+\.[0-9]+\.[0-9]+" || { show_log; fail "$name $v: version line"; }
        # The commit: "unknown", or (git describe) a hash, maybe after a tag, maybe -dirty, that
        # git itself knows as a commit of this checkout (the binary may predate the last commit).
        commit=$(sed -n 's/^commit \(.*\)$/\1/p' "$T/out.log")
        if [ "$commit" != unknown ]; then
            hash=$(printf '%s\n' "$commit" | sed -E 's/-dirty$//; s/^.*-g([0-9a-f]+)$/\1/')
            printf '%s\n' "$hash" | grep -Eqx '[0-9a-f]{7,40}' || { show_log; fail "$name $v: commit line"; }
            if git -C "$ORCH_SOURCE_DIR" rev-parse --git-dir >/dev/null 2>&1; then
                git -C "$ORCH_SOURCE_DIR" cat-file -e "$hash^{commit}" 2>/dev/null ||
                    { show_log; fail "$name $v: $hash is not a commit of this checkout"; }
            fi
        fi
        sed -n 3p "$T/out.log" | grep -Eq '^cuda (none|[0-9]+\.[0-9]+)' || { show_log; fail "$name $v: cuda line"; }
        run "$prog" $v extra
        expect_rc 64
    done
done

for cmd in run logits bench info tokenize; do
    for h in -h --help; do
        run "$LM" $cmd $h
        expect_rc 0
        grep -q "^usage: lm-worker $cmd" "$T/out.log" || { show_log; fail "$cmd $h: no usage"; }
        grep -q -- "-h, --help" "$T/out.log" || { show_log; fail "$cmd $h: -h not listed"; }
    done
    run "$LM" $cmd --no-such-option
    expect_rc 64
    run "$LM" $cmd stray-argument --help-not
    expect_rc 64
done

# One spelling: --quant on every subcommand that opens a device, documented in its --help.
for cmd in run logits bench; do
    run "$LM" $cmd --help
    grep -q -- "--quant Q" "$T/out.log" || { show_log; fail "$cmd: --quant not in --help"; }
    if grep -q -- "^  --int8 " "$T/out.log"; then show_log; fail "$cmd: --int8 listed as an option"; fi
    extra=()
    [ $cmd = run ] && extra=(--input x --output y)
    run "$LM" $cmd --model /nonexistent "${extra[@]}" --quant int9
    expect_rc 64
    grep -q -- "--quant 'int9'" "$T/out.log" || { show_log; fail "$cmd: bad --quant message"; }
done
# --quant int8 on the CPU is refused with the same spelling (device.c), and so is the alias.
for q in "--quant int8" "--int8"; do
    run "$LM" logits --model /nonexistent --device cpu $q
    expect_rc 64
    grep -q -- "without --quant int8" "$T/out.log" || { show_log; fail "logits $q on cpu: message"; }
done
echo "ok"
