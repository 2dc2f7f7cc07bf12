# shard_digest: shard files are named by the XXH3-128 digest of their bytes (orchestrator/
# digest.c on libxxhash), checked against an independent implementation: xxhsum -H2, the
# xxHash project's reference CLI (Debian package xxhash, installed by tools/setup.sh).
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e
command -v xxhsum >/dev/null || { echo "skipped: xxhsum not installed (apt-get install xxhash)"; exit 77; }

write_plan "$T/plan.json" "" "$(model_json m1 2 1 '["identity", "swap_ab"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
n=0
for f in "$T"/work/shards/*.csv; do
    want=$(xxhsum -H2 "$f" | cut -d' ' -f1)
    [ "$(basename "$f" .csv)" = "$want" ] || fail "$f: named $(basename "$f" .csv), xxhsum -H2 says $want"
    n=$((n + 1))
done
[ "$n" -ge 2 ] || fail "expected at least 2 shard files, found $n"
echo "$n shard files match xxhsum -H2"
no_leftovers
echo ok
