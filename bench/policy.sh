#!/usr/bin/env bash
# The cost of a route's policy (issue 14): proxied 1 KB through one gatehouse, on a route with a rate limit and an IP rule against the same
# route without them, interleaved in the same run. Writes bench/POLICY.md.
# Usage: bench/policy.sh [ROUNDS] [SECONDS]   (defaults 5 and 5). Needs nginx and wrk; builds the binary from the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-5} SECS=${2:-5}
WORK=$(mktemp -d /tmp/gatehouse-policy.XXXXXX); chmod 755 "$WORK"
ORIGIN_PORT=18251 GH_PORT=18252 GH_ADMIN=18253
CORES=$(nproc)
# gatehouse on the last core; nginx (the origin) and wrk share the others (all of them on a 1-core machine).
GH_CPU=$((CORES - 1)) REST_CPU=$([ "$CORES" -gt 1 ] && echo "0-$((CORES - 2))" || echo 0)
die() { echo "policy.sh: $*" >&2; exit 1; }
T0=$(date +%s)
mkdir -p "$WORK/www/nostore" "$WORK/origin" "$WORK/routes"
head -c 1024 /dev/zero | tr '\0' x > "$WORK/www/nostore/1k"
nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; location / { add_header Cache-Control no-store; } }"
taskset -c "$REST_CPU" /usr/sbin/nginx -c "$WORK/origin/nginx.conf" & NGINX=$!
echo "building the binary" >&2
timeout 600 npm run -s build > "$WORK/build.log" 2>&1 || die "cannot build: $(tail -5 "$WORK/build.log")"
gh_config "" ""
up="upstreams = [\"http://127.0.0.1:$ORIGIN_PORT\"]"
printf 'hosts = ["plain.test"]\n%s\n' "$up" > "$WORK/routes/plain.toml"
# The limit is far above what the run reaches: every request takes a token, none is refused.
printf 'hosts = ["policy.test"]\n%s\n[[rate_limit]]\nkey = "client"\nrate = "1000000/s"\nburst = 1000000\n[access]\nallow = ["127.0.0.0/8", "fd00::/8"]\ndeny = ["10.9.0.0/16"]\n' "$up" > "$WORK/routes/policy.toml"
(cd "$WORK" && exec taskset -c "$GH_CPU" /work/main/dist/gatehouse run -c "$WORK/config.toml" > "$WORK/gatehouse.log" 2>&1) & GH=$!
trap 'kill $NGINX $GH 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf --max-time 1 -H "Host: plain.test" "http://127.0.0.1:$GH_PORT/nostore/1k" > /dev/null && break; sleep 0.1; done
for h in plain policy; do [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $h.test" "http://127.0.0.1:$GH_PORT/nostore/1k")" = 200 ] || die "$h.test does not answer 200"; done
url="http://127.0.0.1:$GH_PORT/nostore/1k"
wrk_as() { taskset -c "$REST_CPU" bash -c "$(declare -f run_wrk tree_pids cpu_ticks passive_opens); TICK=$TICK; run_wrk $GH $1 64 $url -H 'Host: $2'"; }
for h in plain policy; do wrk_as 2 "$h.test" > /dev/null; done
: > "$WORK/plain"; : > "$WORK/policy"
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then order="plain policy"; else order="policy plain"; fi
  for h in $order; do wrk_as "$SECS" "$h.test" >> "$WORK/$h"; done
done
paired=$(paste -d' ' "$WORK/plain" "$WORK/policy" | awk '{print $10 / $1}' | sort -n | awk 'NR==1{a=$1} {b=$1} END {printf "%.3f–%.3f", a, b}')
ratio=$(awk -v a="$(col "$WORK/plain" 1)" -v b="$(col "$WORK/policy" 1)" 'BEGIN {printf "%.3f", b / a}')
bad=$(awk '{n += $6 + $7} END {print n + 0}' "$WORK/plain" "$WORK/policy")
{
  echo "# The cost of a route's policy: a rate limit and an IP rule on proxied 1 KB"
  echo
  echo "Same run, one gatehouse (\`$(git rev-parse --short HEAD)\`, compiled binary, access log off, one process pinned to core $GH_CPU; nginx"
  echo "origin and wrk on cores $REST_CPU), $(date -u '+%Y-%m-%d %H:%M') UTC; $CORES cores, $(uname -sr); $(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //'),"
  echo "Bun $(node_modules/.bin/bun --version). Two sites proxy \`/nostore/1k\` (\`Cache-Control: no-store\`, no \`[cache]\`) to the same origin:"
  echo "\`plain.test\` with no policy, \`policy.test\` with \`[[rate_limit]] key = \"client\"\` (a bucket per address, never empty in this run)"
  echo "and \`[access]\` (an allow list and a deny list). wrk \`-t2 -c64\`, a 2 s warm-up each, then $ROUNDS rounds of $SECS s, the order"
  echo "alternating. Medians over the rounds; \"paired\" is policy ÷ plain within each round. \`bench/policy.sh $ROUNDS $SECS\`, $(( $(date +%s) - T0 )) s."
  echo
  echo "| route | req/s | p50 ms | p99 ms | CPU µs/req |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for h in plain policy; do echo "| $h.test | $(col "$WORK/$h" 1) | $(col "$WORK/$h" 2) | $(col "$WORK/$h" 3) | $(col "$WORK/$h" 4) |"; done
  echo
  echo "**policy ÷ plain: $ratio** (paired $paired); non-2xx and socket errors over all rounds: $bad."
  echo
  echo "Raw records (req/s, p50, p99, CPU µs/req, …), plain then policy:"
  echo
  echo '```'
  cat "$WORK/plain"; echo; cat "$WORK/policy"
  echo '```'
} > bench/POLICY.md
cat bench/POLICY.md
