# itest_checks.sh: for integration scripts that run many independent checks and report every
# failure rather than stopping at the first (lm_worker_run.sh, lm_worker_cli_goldens.sh,
# cuda_emu.sh). Sourced, not run. It checks the environment (itest_env.sh), makes a temp dir
# $TMP removed on exit, and gives `fail MSG` (print and count) and `itest_finish` (the exit).
# Scripts that drive orchestrate use itest_lib.sh instead.
. "$(dirname "${BASH_SOURCE[0]}")/itest_env.sh"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

# fail MSG: report one failed check and go on.
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# itest_finish: exit 1 with the count when any check failed, else print that all passed.
itest_finish() {
    if [ "$fails" -ne 0 ]; then
        echo "$fails failure(s)"
        exit 1
    fi
    echo "$(basename "$0" .sh): all checks passed"
    exit 0
}
