#!/usr/bin/env bash
# Issue 4's figures beside nginx return-200 in the same run:
#   - POST /api/collections/users/auth-refresh with a user's token
#   - a list of 100k posts under listRule `author = @request.auth.id` (indexed), perPage 30,
#     skipTotal, as one of 100 users
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
POSTS=${POSTS:-100000}
USERS=${USERS:-100}
WRK=(-t2 -c64 -d"$DURATION")

"$TANDEM_BIN" superuser upsert bench@example.com bench-password-1 --dir "$BENCH_TMP/data" >/dev/null
nport=$(free_port)
start_nginx "$nport"
start_tandem "$BENCH_TMP/data"
export TANDEM_URL POSTS USERS

# seed as the superuser; prints "USER_TOKEN" of the first user
USER_TOKEN=$(node --input-type=module -e '
const url = process.env.TANDEM_URL;
const j = (r) => r.json();
const post = (path, body, token) => fetch(url + path, { method: "POST",
  headers: { "Content-Type": "application/json", ...(token ? { Authorization: token } : {}) },
  body: JSON.stringify(body) });
const su = (await j(await post("/api/collections/_superusers/auth-with-password",
  { identity: "bench@example.com", password: "bench-password-1" }))).token;
const users = [];
for (let i = 0; i < +process.env.USERS; i++) {
  const u = await j(await post("/api/collections/users/records",
    { email: `u${i}@example.com`, password: "user-password-1", passwordConfirm: "user-password-1" }, su));
  users.push(u.id);
}
const c = await post("/api/collections", { name: "posts", type: "base",
  listRule: "author = @request.auth.id", viewRule: "author = @request.auth.id",
  fields: [{ name: "title", type: "text" },
           { name: "author", type: "relation", collectionId: "_pb_users_auth_", maxSelect: 1 }],
  indexes: ["CREATE INDEX idx_posts_author ON posts (author)"] }, su);
if (c.status !== 200) throw new Error(await c.text());
let next = 0;
async function worker() {
  while (next < +process.env.POSTS) {
    const i = next++;
    const r = await post("/api/collections/posts/records", { title: `post ${i}`, author: users[i % users.length] }, su);
    if (r.status !== 200) throw new Error(await r.text());
  }
}
await Promise.all(Array.from({ length: 32 }, worker));
const t = await j(await post("/api/collections/users/auth-with-password",
  { identity: "u0@example.com", password: "user-password-1" }));
process.stdout.write(t.token);')
export USER_TOKEN

cat >"$BENCH_TMP/refresh.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = os.getenv("USER_TOKEN")
LUA
cat >"$BENCH_TMP/list.lua" <<'LUA'
wrk.headers["Authorization"] = os.getenv("USER_TOKEN")
LUA

ngx=$(wrk_rps "http://127.0.0.1:$nport/" "${WRK[@]}")
read -r refresh refresh_cpu refresh_bad < <(wrk_cpu "$TANDEM_PID" "$TANDEM_URL/api/collections/users/auth-refresh" "${WRK[@]}" -s "$BENCH_TMP/refresh.lua")
read -r list list_cpu list_bad < <(wrk_cpu "$TANDEM_PID" "$TANDEM_URL/api/collections/posts/records?perPage=30&skipTotal=1" "${WRK[@]}" -s "$BENCH_TMP/list.lua")
echo "nginx return-200: $ngx req/s (load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "auth-refresh: $refresh req/s, $refresh_cpu cpu-us/req, $refresh_bad non-2xx ($(ratio "$refresh" "$ngx") of nginx, target 15k)"
echo "rule-filtered list of $POSTS posts, perPage 30, skipTotal: $list req/s, $list_cpu cpu-us/req, $list_bad non-2xx ($(ratio "$list" "$ngx") of nginx, target 4k)"
