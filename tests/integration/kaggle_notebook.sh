# kaggle_notebook: tools/kaggle/orchestrate-kaggle.ipynb is a valid nbformat-4 notebook (JSON;
# nbformat, cells of known types with list-of-lines sources; code cells without outputs), has the
# steps docs/kaggle.md describes (copy + chmod, doctor, %%writefile plan.json with a JSON plan,
# run, report), and its copy cell really works: run with python3 against a fake /kaggle/input
# holding the bundle as a folder (exec bits lost, as on Kaggle) and as a .tar.gz, it leaves
# orchestrate and lm-worker executable in the working copy. dataset-metadata.json is valid too.
# No network, no jupyter.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

command -v python3 >/dev/null || { echo "skipped: no python3"; exit 77; }
NB=$ORCH_SOURCE_DIR/tools/kaggle/orchestrate-kaggle.ipynb
META=$ORCH_SOURCE_DIR/tools/kaggle/dataset-metadata.json
python3 -m json.tool "$NB" >/dev/null || fail "$NB is not valid JSON"
python3 -m json.tool "$META" >/dev/null || fail "$META is not valid JSON"

# Structure and steps; writes the copy cell to $T/cell_copy.txt.
python3 - "$NB" "$META" "$T/cell_copy.txt" <<'PY' || fail "notebook structure (see above)"
import json, sys
nb = json.load(open(sys.argv[1]))
meta = json.load(open(sys.argv[2]))
def check(cond, what):
    if not cond:
        print("FAIL:", what); sys.exit(1)
check(nb.get("nbformat") == 4 and isinstance(nb.get("nbformat_minor"), int), "nbformat 4")
check(nb["metadata"]["kernelspec"]["language"] == "python", "python kernelspec")
cells = nb["cells"]
check(isinstance(cells, list) and cells, "cells")
ids = set()
for c in cells:
    check(c["cell_type"] in ("markdown", "code"), "cell type %r" % c["cell_type"])
    check(isinstance(c["source"], list) and all(isinstance(s, str) for s in c["source"]), "source is a list of strings")
    check(isinstance(c["metadata"], dict), "cell metadata")
    if nb["nbformat_minor"] >= 5:
        check(c.get("id") and c["id"] not in ids, "unique cell ids (nbformat 4.5)")
        ids.add(c["id"])
    if c["cell_type"] == "code":
        check(c["outputs"] == [] and c["execution_count"] is None, "code cells are stored without outputs")
code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
def find(pred, what):
    hits = [s for s in code if pred(s)]
    check(hits, what)
    return hits[0]
copy = find(lambda s: "chmod" in s or "S_IXUSR" in s, "a cell copying the bundle and restoring exec bits")
find(lambda s: "orchestrate doctor" in s, "a doctor cell")
plan = find(lambda s: s.startswith("%%writefile") and "plan.json" in s.splitlines()[0], "a %%writefile plan.json cell")
p = json.loads(plan.split("\n", 1)[1])
check({"input", "output", "models"} <= set(p) and p["models"], "the plan has input, output and models")
check(any(s.lstrip("!").split()[0:1] and "orchestrate --plan plan.json" in s for s in code), "a cell running orchestrate")
find(lambda s: "report.json" in s, "a cell showing report.json")
check({"title", "id", "licenses"} <= set(meta), "dataset metadata keys")
open(sys.argv[3], "w").write(copy)
PY

# The copy cell, pointed at a fake /kaggle: a bundle folder whose files lost their exec bits.
run_copy() {
    sed -e "s#/kaggle/input/orchestrate-bundle#$T/input/bundle#; s#/kaggle/working#$T/working#g" "$T/cell_copy.txt" >"$T/cell_copy_run.py"
    mkdir -p "$T/working"
    (cd "$T/working" && python3 "$T/cell_copy_run.py") >"$T/copy.log" 2>&1 || { cat "$T/copy.log"; fail "copy cell ($1)"; }
    for f in orchestrate lm-worker; do
        [ -x "$T/working/orch/$f" ] || fail "copy cell ($1): $f is not executable"
    done
    [ -f "$T/working/orch/lib/libfake.so" ] || fail "copy cell ($1): lib/ was not copied"
    "$T/working/orch/orchestrate" --version | grep -q "^orchestrate " || fail "copy cell ($1): the copy does not run"
}
D=$T/input/bundle/orchestrate-9.9.9-linux-x86_64-cuda12
mkdir -p "$D/lib"
cp "$B/orchestrate" "$B/lm-worker" "$D/"
echo x >"$D/lib/libfake.so"
chmod 644 "$D/orchestrate" "$D/lm-worker"
run_copy folder
# The same bundle as a tarball only (Kaggle did not unpack it).
(cd "$T/input/bundle" && tar czf orchestrate-9.9.9-linux-x86_64-cuda12.tar.gz orchestrate-9.9.9-linux-x86_64-cuda12 && rm -rf orchestrate-9.9.9-linux-x86_64-cuda12)
run_copy tarball
echo ok
