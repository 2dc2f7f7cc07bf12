# rooms: lm-worker's source rooms keep their shape (docs/architecture.md). workers/lm/ holds only
# the rooms; each room exposes one header, and a file reaches another room only through it, as
# "room/header.h". A room's other headers are private (the build does not put the room folders
# on the include path; this test also catches a "model/model_impl.h" written out in full).
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

LM=$ORCH_SOURCE_DIR/workers/lm
declare -A PUBLIC=([cli]=cmds.h [rows]=rows.h [tokenizer]=tokenizer.h [model]=model.h [backend]=backend.h)

# Nothing but the rooms (and the build file) at the top.
for f in "$LM"/*; do
    n=$(basename "$f")
    [ "$n" = CMakeLists.txt ] && continue
    [ -d "$f" ] && [ -n "${PUBLIC[$n]:-}" ] && continue
    fail "workers/lm/$n: not a room (rooms: ${!PUBLIC[*]})"
done

for room in "${!PUBLIC[@]}"; do
    [ -f "$LM/$room/${PUBLIC[$room]}" ] || fail "$room: public header ${PUBLIC[$room]} missing"
    for f in "$LM/$room"/*.[ch]; do
        while IFS= read -r inc; do
            other=${inc%%/*}
            hdr=${inc#*/}
            [ -n "${PUBLIC[$other]:-}" ] || fail "$f: includes \"$inc\": no room '$other'"
            [ "$other" != "$room" ] || fail "$f: includes its own room as \"$inc\" (include \"$hdr\")"
            [ "$hdr" = "${PUBLIC[$other]}" ] ||
                fail "$f: includes \"$inc\", a private header of $other/ (use \"$other/${PUBLIC[$other]}\")"
        done < <(sed -n 's/^#include "\([a-z_]*\/[^"]*\)".*/\1/p' "$f")
        # A bare include must name a file beside it, in common/ or in kernels/.
        while IFS= read -r inc; do
            [ -f "$LM/$room/$inc" ] || [ -f "$ORCH_SOURCE_DIR/common/$inc" ] || [ -f "$ORCH_SOURCE_DIR/kernels/$inc" ] ||
                [ "$inc" = build_info.h ] || fail "$f: includes \"$inc\", which is not beside it"
        done < <(sed -n 's/^#include "\([^"/]*\)".*/\1/p' "$f")
    done
done
echo "ok"
