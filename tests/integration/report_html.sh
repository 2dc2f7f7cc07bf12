# report_html: report.html renders in a real browser. A run with a retried attempt (crash once),
# an out-of-memory halving and a cut by the deadline writes report.html; headless Chromium
# loads it: the rendered DOM has one bar per attempt (report.json's count) and one lane per slot,
# and the screenshot shows each outcome's colour (so the bars were drawn, not just present).
# The file must be self-contained: no script, no stylesheet link, no URL but the SVG namespace.
# Chromium is Debian's `chromium`: installed with apt-get when missing; the test is skipped (77)
# only when that fails, and in the ASan build (the HTML is the same; Chromium there is slow).
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e
if grep -q '^ORCH_SANITIZE:BOOL=ON' "$B/CMakeCache.txt" 2>/dev/null; then
    echo "skipped: not run in the ASan build (slow there; report.html does not depend on it)"
    exit 77
fi
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=300 -y --no-install-recommends chromium >"$T/apt.log" 2>&1 \
            || { tail -n 3 "$T/apt.log"; echo "skipped: chromium is not installed and apt-get could not install it"; exit 77; }
    else
        echo "skipped: chromium is not installed (apt-get install chromium) and this user cannot install it"
        exit 77
    fi
fi
command -v python3 >/dev/null || { echo "skipped: python3 (to read the screenshot) is missing"; exit 77; }

GRACE=1 write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity"]' '"batch_size": 8' --crash-once "$T/crashed")" \
    "$(model_json m2 2 1 '["identity"]' '"batch_size": 8' --oom-above 4)" \
    "$(model_json m3 3 1 '["identity"]' '' --slow 300)"
run_orch --plan "$T/plan.json" --deadline 6
expect_rc 0
H=$T/work/report.html
[ -f "$H" ] || { show_log; fail "no report.html"; }
grep -q "timeline: report.html" "$T/out.log" || fail "the run does not point at report.html"
# Self-contained: nothing to fetch.
! grep -Eiq '<script|<link|@import|url\(' "$H" || fail "report.html refers to something outside itself"
[ "$(grep -o 'https\?://[^"]*' "$H" | sort -u)" = "http://www.w3.org/2000/svg" ] || fail "report.html has URLs: $(grep -o 'https\?://[^"]*' "$H" | sort -u)"

attempts=$(report_flat | grep -o '"totals":{"jobs":[0-9]*,"jobs_reused":[0-9]*,"attempts":[0-9]*' | grep -o '[0-9]*$')
slots=$(report_flat | grep -o '"slot":[0-9]*,"device"' | wc -l)
[ "$attempts" -ge 5 ] || fail "expected at least 5 attempts (2 + 2 + cut ones), report says $attempts"

export HOME=$T   # Chromium writes its profile under HOME
CHROME=(timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
        --user-data-dir="$T/chrome")
"${CHROME[@]}" --dump-dom "file://$H" >"$T/dom.html" 2>"$T/chrome.log" || { tail "$T/chrome.log"; fail "chromium --dump-dom failed"; }
bars=$(grep -o '<rect class="bar outcome-[a-z]*"' "$T/dom.html" | wc -l)
lanes=$(grep -o '<g class="lane" data-slot' "$T/dom.html" | wc -l)
[ "$bars" = "$attempts" ] || fail "rendered DOM: $bars bars for $attempts attempts"
[ "$lanes" = "$slots" ] || fail "rendered DOM: $lanes lanes for $slots slots"
for o in ok retried oom cut; do
    grep -q "<rect class=\"bar outcome-$o\"" "$T/dom.html" || fail "rendered DOM: no '$o' bar"
done

"${CHROME[@]}" --screenshot="$T/shot.png" --window-size=1100,800 "file://$H" >>"$T/chrome.log" 2>&1 \
    || { tail "$T/chrome.log"; fail "chromium --screenshot failed"; }
# Decode the PNG (zlib + the five row filters) and look for each outcome's colour.
python3 - "$T/shot.png" <<'PY' || fail "the screenshot is blank or lacks a bar colour"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw, stride, prev, px = zlib.decompress(idat), w * bpp, bytearray(w * bpp), {}
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        k = bytes(line[x:x + 3]); px[k] = px.get(k, 0) + 1
    prev = line
total = w * h
white = px.get(b"\xff\xff\xff", 0)
want = {"ok": "2e9d4f", "retried": "f0a202", "oom": "8e44ad", "cut": "4f6d8f"}
missing = [o for o, c in want.items() if px.get(bytes.fromhex(c), 0) < 20]
print(f"{w}x{h}: {len(px)} colours, {100 * (total - white) / total:.1f}% not white; missing: {missing}")
sys.exit(1 if white > 0.99 * total or missing else 0)
PY
no_leftovers
echo ok
