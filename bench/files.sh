#!/usr/bin/env bash
# File fields under wrk: 64 KB multipart uploads/s (each written and fsynced before its record
# commits) and GETs/s of a cached thumbnail, beside nginx serving that same thumbnail file from
# disk in the same run. Targets (issue 14): thumbnail GETs >= 50% of nginx, uploads >= 2,000/s.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
WRK=(-t2 -c"$CONNS" -d"$DURATION")

"$TANDEM_BIN" superuser upsert bench@example.com bench-password-1 --dir "$BENCH_TMP/data" >/dev/null
start_tandem "$BENCH_TMP/data"
TOKEN=$(curl -sf -X POST -H 'Content-Type: application/json' \
    -d '{"identity":"bench@example.com","password":"bench-password-1"}' \
    "$TANDEM_URL/api/collections/_superusers/auth-with-password" | node -pe 'JSON.parse(require("fs").readFileSync(0)).token')
COLL=$(curl -sf -X POST -H "Authorization: $TOKEN" -H 'Content-Type: application/json' "$TANDEM_URL/api/collections" -d '{
  "name":"uploads","type":"base","createRule":"","viewRule":"","listRule":"",
  "fields":[{"name":"title","type":"text"},{"name":"file","type":"file","maxSelect":1,"maxSize":1048576}]}' |
    node -pe 'JSON.parse(require("fs").readFileSync(0)).id')

# a 400x300 PNG (RGB, a gradient) and a 64 KB payload
node --input-type=module -e '
import { deflateSync } from "node:zlib";
import { writeFileSync } from "node:fs";
const T = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
const crc = (b) => { let c = 0xffffffff; for (const x of b) c = T[(c ^ x) & 255] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
const chunk = (t, d) => { const l = Buffer.alloc(4); l.writeUInt32BE(d.length); const td = Buffer.concat([Buffer.from(t), d]); const c = Buffer.alloc(4); c.writeUInt32BE(crc(td)); return Buffer.concat([l, td, c]); };
const w = 400, h = 300, ih = Buffer.alloc(13); ih.writeUInt32BE(w, 0); ih.writeUInt32BE(h, 4); ih[8] = 8; ih[9] = 2;
const raw = Buffer.alloc((w * 3 + 1) * h);
for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) { const o = y * (w * 3 + 1) + 1 + x * 3; raw[o] = x & 255; raw[o + 1] = y & 255; raw[o + 2] = (x ^ y) & 255; }
writeFileSync(process.argv[1] + "/img.png", Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ih), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]));
const payload = Buffer.alloc(65536); for (let i = 0; i < payload.length; i++) payload[i] = 32 + (i * 7) % 90;
writeFileSync(process.argv[1] + "/payload.txt", payload);' "$BENCH_TMP"

REC=$(curl -sf -X POST "$TANDEM_URL/api/collections/uploads/records" -F "file=@$BENCH_TMP/img.png" |
    node -pe 'const r = JSON.parse(require("fs").readFileSync(0)); r.id + "/" + r.file')
THUMB_URL="$TANDEM_URL/api/files/uploads/$REC?thumb=100x100"
curl -sf "$THUMB_URL" -o /dev/null # made once, cached on disk from now on
NAME=${REC#*/}
THUMB_FILE="$BENCH_TMP/data/storage/$COLL/${REC%%/*}/thumbs_$NAME/100x100_$NAME"
[ -f "$THUMB_FILE" ] || { echo "the thumbnail was not cached at $THUMB_FILE" >&2; exit 1; }

# nginx: the same thumbnail file from disk, 2 workers, sendfile, no access log
nport=$(free_port)
mkdir -p "$BENCH_TMP/root"
cp "$THUMB_FILE" "$BENCH_TMP/root/thumb.png"
start_nginx "$nport" "$BENCH_TMP/root"

cat >"$BENCH_TMP/upload.lua" <<LUA
local f = io.open("$BENCH_TMP/payload.txt", "rb")
local data = f:read("*a")
f:close()
local b = "----tandembench"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. b
wrk.body = "--" .. b .. "\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nbench\r\n" ..
           "--" .. b .. "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"payload.txt\"\r\n" ..
           "Content-Type: text/plain\r\n\r\n" .. data .. "\r\n--" .. b .. "--\r\n"
LUA

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores, shared with other work"
read -r ngx _ ngx_bad < <(wrk_cpu "${BENCH_PIDS[-1]}" "http://127.0.0.1:$nport/thumb.png" "${WRK[@]}")
[ "$ngx_bad" = 0 ] || { echo "nginx answered $ngx_bad non-2xx" >&2; exit 1; }
# PERF_DIR=dir: a perf profile (call graphs) of tandem during each of its two runs
perf_start() { [ -n "${PERF_DIR:-}" ] && { perf record -q -g -p "$TANDEM_PID" -o "$PERF_DIR/$1.data" & PERF_PID=$!; }; true; }
perf_stop() { [ -n "${PERF_PID:-}" ] && { kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=; }; true; }
perf_start thumb
read -r thumb thumb_cpu thumb_bad < <(wrk_cpu "$TANDEM_PID" "$THUMB_URL" "${WRK[@]}")
perf_stop
perf_start upload
read -r up up_cpu up_bad < <(wrk_cpu "$TANDEM_PID" "$TANDEM_URL/api/collections/uploads/records" "${WRK[@]}" -s "$BENCH_TMP/upload.lua")
perf_stop
stored=$(find "$BENCH_TMP/data/storage/$COLL" -type f -name 'payload_*' | wc -l)
hwm=$(awk '/^VmHWM:/ {print $2, $3}' "/proc/$TANDEM_PID/status")
# STRACE_DIR=dir: the syscalls of a further 5 s upload run under strace -c -f (slowed by strace;
# counts per upload, not rates): dir/strace.txt
if [ -n "${STRACE_DIR:-}" ]; then
    strace -c -f -q -o "$STRACE_DIR/strace.txt" -p "$TANDEM_PID" & STRACE_PID=$!
    sleep 1
    read -r _ _ st_bad < <(wrk_cpu "$TANDEM_PID" "$TANDEM_URL/api/collections/uploads/records" -t2 -c"$CONNS" -d5s -s "$BENCH_TMP/upload.lua")
    st_n=$(find "$BENCH_TMP/data/storage/$COLL" -type f -name 'payload_*' | wc -l)
    kill -INT "$STRACE_PID"; wait "$STRACE_PID" || true
    echo "under strace: $((st_n - stored)) uploads, $st_bad non-2xx; syscalls in $STRACE_DIR/strace.txt"
fi
# the kernel's own cost per stored file on this file system, in the same run: one thread
# writing 64 KiB files in the same layout with per-file syncs, group syncs and none
bench_cc files_ref
ref=()
for m in each group nosync; do ref+=("$("$BENCH_TOP/build/files_ref" "$BENCH_TMP/ref" "${REF_COUNT:-2000}" "$m")"); done
# tandem's storage alone, 8 threads: the old way to store an upload (put: temporary file,
# rename, three syncs) against the current one (create + sync), alternated twice
bench_cc files_store
store=()
for k in 1 2; do
    for m in put create; do store+=("$("$BENCH_TOP/build/files_store" "$BENCH_TMP/store$k$m" "${REF_COUNT:-2000}" "$m")"); done
done
echo "nginx static thumbnail ($(stat -c %s "$THUMB_FILE") bytes): $ngx req/s"
echo "tandem cached thumbnail: $thumb req/s ($(ratio "$thumb" "$ngx") of nginx), $thumb_cpu cpu-us/req${thumb_bad:+, $thumb_bad non-2xx}"
echo "tandem 64 KB uploads: $up req/s, $up_cpu cpu-us/req, $up_bad non-2xx; $stored files stored"
echo "tandem peak RSS (VmHWM): $hwm"
for r in "${ref[@]}"; do
    read -r m fps cpu <<<"$r"
    echo "reference, plain C, one thread, 64 KiB file + record directory, sync $m: $fps files/s, $cpu cpu-us/file"
done
for r in "${store[@]}"; do
    read -r m fps cpu <<<"$r"
    echo "tandem's storage alone, 8 threads, $m: $fps files/s, $cpu cpu-us/file"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
