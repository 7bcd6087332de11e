#!/usr/bin/env bash
# A static site served compressed (issue 17): a 20 KB CSS file asked for with `Accept-Encoding: gzip`, from nginx with `gzip_static on`
# and a precompressed .gz, against gatehouse compressing it itself (its stored gzip form after the first request) and gatehouse serving
# the same .gz beside the file; each server one process, pinned to the same core, interleaved rounds in the same run.
# Writes bench/STATIC.md and the static row of bench/RESULTS.md's table.
# Usage: bench/static.sh [ROUNDS] [SECONDS]   (defaults 5 and 5). Needs nginx, wrk, curl, gzip, taskset; builds the binary from the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-5} SECS=${2:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/static.sh [ROUNDS] [SECONDS] (positive integers)" >&2; exit 2; }
[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
for tool in nginx wrk curl gzip taskset; do command -v "$tool" > /dev/null || { echo "bench/static.sh: $tool is missing" >&2; exit 1; }; done
NGX_PORT=18261 GH_PORT=18262 GH_ADMIN=18263 CONNS=64
for port in $NGX_PORT $GH_PORT $GH_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "bench/static.sh: port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
done
CORES=$(nproc)
# Both servers on the last core (they never run at the same time); wrk on the others (all of them on a 1-core machine).
SRV_CPU=$((CORES - 1)) REST_CPU=$([ "$CORES" -gt 1 ] && echo "0-$((CORES - 2))" || echo 0)
T0=$(date +%s)
WORK=$(mktemp -d /tmp/gatehouse-static.XXXXXX); chmod 755 "$WORK"   # nginx workers run as www-data
NGINX="" GH=""
cleanup() {
  local p
  for p in $NGINX $GH; do kill "$p" 2> /dev/null || true; done
  for p in $NGINX $GH; do
    for _ in $(seq 30); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$p" 2> /dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench/static.sh: $*" >&2; for f in "$WORK/ngx/error.log" "$WORK/gatehouse.log"; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done; exit 1; }

# The file: 20,000 bytes of varied CSS rules (compresses about 5:1, like real stylesheets). pre/ also holds `gzip -9` of it.
mkdir -p "$WORK/otf" "$WORK/pre" "$WORK/ngx" "$WORK/routes"
awk 'BEGIN { srand(17); while (n < 20000) { s = sprintf(".c%d-%x { color: #%06x; margin: %dpx %dpx; font-size: %.2frem; }\n", NR++, int(rand() * 65536), int(rand() * 16777216), int(rand() * 40), int(rand() * 40), 0.5 + rand()); printf "%s", s; n += length(s) } }' |
  head -c 20000 > "$WORK/otf/app.css"
cp "$WORK/otf/app.css" "$WORK/pre/app.css"
gzip -9 -k -n "$WORK/pre/app.css"
touch -r "$WORK/pre/app.css" "$WORK/pre/app.css.gz"   # not older than the file: gatehouse serves it

echo "building the binary" >&2
timeout 600 node_modules/.bin/bun build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig \
  --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile "$WORK/gatehouse" > "$WORK/build.log" 2>&1 || die "cannot build: $(tail -5 "$WORK/build.log")"

nginx_conf "$WORK/ngx" "server { listen 127.0.0.1:$NGX_PORT; root $WORK/pre; gzip_static on; gzip_vary on; }
  types { text/css css; }"
gh_config "" ""
printf 'hosts = ["otf.test"]\nstatic = "%s"\n' "$WORK/otf" > "$WORK/routes/otf.toml"
printf 'hosts = ["pre.test"]\nstatic = "%s"\n' "$WORK/pre" > "$WORK/routes/pre.toml"
taskset -c "$SRV_CPU" nginx -c "$WORK/ngx/nginx.conf" & NGINX=$!
(cd "$WORK" && exec taskset -c "$SRV_CPU" "$WORK/gatehouse" run -c "$WORK/config.toml" > "$WORK/gatehouse.log" 2>&1) & GH=$!

# name → pid, URL and Host of each contestant.
declare -A PID=([nginx]=$NGINX [gh-otf]=$GH [gh-pre]=$GH)
declare -A URL=([nginx]="http://127.0.0.1:$NGX_PORT/app.css" [gh-otf]="http://127.0.0.1:$GH_PORT/app.css" [gh-pre]="http://127.0.0.1:$GH_PORT/app.css")
declare -A HOSTN=([nginx]=static.test [gh-otf]=otf.test [gh-pre]=pre.test)
NAMES="nginx gh-otf gh-pre"
probe() { curl -s --max-time 2 -H "Host: ${HOSTN[$1]}" -H "Accept-Encoding: gzip" -o "$WORK/$1.body" -D "$WORK/$1.head" -w '%{http_code}' "${URL[$1]}"; }
for _ in $(seq 100); do [ "$(probe nginx || true)" = 200 ] && [ "$(probe gh-otf || true)" = 200 ] && break; sleep 0.1; done
for n in $NAMES; do
  [ "$(probe "$n")" = 200 ] || die "$n does not answer 200"
  grep -qi '^content-encoding: gzip' "$WORK/$n.head" || die "$n does not answer with gzip"
  grep -qi '^vary: accept-encoding' "$WORK/$n.head" || die "$n sends no Vary: Accept-Encoding"
  gzip -dc < "$WORK/$n.body" | cmp -s - "$WORK/otf/app.css" || die "$n's body does not decode to the file"
done
SIZE_NGX=$(stat -c %s "$WORK/nginx.body") SIZE_OTF=$(stat -c %s "$WORK/gh-otf.body") SIZE_PRE=$(stat -c %s "$WORK/gh-pre.body")

wrk_as() { taskset -c "$REST_CPU" bash -c "$(declare -f run_wrk tree_pids cpu_ticks passive_opens); TICK=$TICK; run_wrk ${PID[$2]} $1 $CONNS ${URL[$2]} -H 'Host: ${HOSTN[$2]}' -H 'Accept-Encoding: gzip'"; }
for n in $NAMES; do wrk_as 2 "$n" > /dev/null; done
for n in $NAMES; do : > "$WORK/$n"; done
ORDERS=("nginx gh-otf gh-pre" "gh-otf gh-pre nginx" "gh-pre nginx gh-otf")
for r in $(seq "$ROUNDS"); do
  for n in ${ORDERS[$(((r - 1) % 3))]}; do wrk_as "$SECS" "$n" >> "$WORK/$n"; done
done
ratio() { awk -v a="$(col "$WORK/nginx" 1)" -v b="$(col "$WORK/$1" 1)" 'BEGIN {printf "%.2f", b / a}'; }
paired() { paste -d' ' "$WORK/nginx" "$WORK/$1" | awk '{print $10 / $1}' | sort -n | awk 'NR==1{a=$1} {b=$1} END {printf "%.2f–%.2f", a, b}'; }
bad=$(cat "$WORK/nginx" "$WORK/gh-otf" "$WORK/gh-pre" | awk '{n += $6 + $7} END {print n + 0}')
RATIO_OTF=$(ratio gh-otf) RATIO_PRE=$(ratio gh-pre)
row() { echo "| $2 | $(col "$WORK/$1" 1) | $(col "$WORK/$1" 2) | $(col "$WORK/$1" 3) | $(col "$WORK/$1" 4) | $3 | $4 |"; }
{
  echo "# A static site served compressed: 20 KB of CSS with \`Accept-Encoding: gzip\`"
  echo
  echo "Same run, $(date -u '+%Y-%m-%d %H:%M') UTC; gatehouse \`$(git rev-parse --short HEAD)\` (working tree, compiled binary, access log off),"
  echo "$(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //') (1 worker, \`sendfile off\`, access log off), both pinned to core $SRV_CPU; wrk \`-t2 -c$CONNS\` on cores $REST_CPU;"
  echo "$CORES cores, $(uname -sr), Bun $(node_modules/.bin/bun --version). The file: \`app.css\`, 20,000 bytes of CSS rules."
  echo
  echo "- **nginx**: \`gzip_static on; gzip_vary on\`, with \`app.css.gz\` (\`gzip -9\`, $SIZE_NGX bytes on the wire) beside the file."
  echo "- **gatehouse, compressed by itself** (\`otf.test\`): a \`static\` site whose directory holds only \`app.css\`; the first request"
  echo "  compresses it (gzip level 9, $SIZE_OTF bytes) and every later one is answered from the stored form."
  echo "- **gatehouse, precompressed** (\`pre.test\`): the directory nginx serves, \`app.css.gz\` beside the file ($SIZE_PRE bytes)."
  echo
  echo "Each answer was checked first: 200, \`Content-Encoding: gzip\`, \`Vary: Accept-Encoding\`, decoding to the file. A 2 s warm-up"
  echo "each, then $ROUNDS rounds of $SECS s, the order rotating. Medians over the rounds; ratio = gatehouse ÷ nginx req/s; \"paired\" is"
  echo "that ratio within each round. \`bench/static.sh $ROUNDS $SECS\`, $(($(date +%s) - T0)) s."
  echo
  echo "| server | req/s | p50 ms | p99 ms | CPU µs/req | ratio | paired |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
  row nginx "nginx \`gzip_static\`" "1.00" "—"
  row gh-otf "gatehouse, compressed by itself" "**$RATIO_OTF**" "$(paired gh-otf)"
  row gh-pre "gatehouse, precompressed \`.gz\`" "**$RATIO_PRE**" "$(paired gh-pre)"
  echo
  echo "Non-2xx responses and socket errors over all rounds: $bad. Server CPU per request is the steadiest figure: req/s and p99 move"
  echo "with whatever else runs on the machine (the paired spread shows how much in this run)."
  echo
  echo "Raw records (req/s, p50, p99, CPU µs/req, new connections/req, non-2xx, socket errors, MiB/s, max ms): nginx, then gatehouse"
  echo "compressed by itself, then precompressed."
  echo
  echo '```'
  cat "$WORK/nginx"; echo; cat "$WORK/gh-otf"; echo; cat "$WORK/gh-pre"
  echo '```'
} > bench/STATIC.md

# The row in bench/RESULTS.md's first table (replaced when there, else added after the table's last row).
ROW="| static 20 KB CSS, gzip (\`Accept-Encoding: gzip\`, HTTP, -c$CONNS; nginx \`gzip_static\`; gatehouse compressed by itself, precompressed: $RATIO_PRE×; its own run: \`bench/static.sh $ROUNDS $SECS\`, [STATIC.md](STATIC.md)) | $(col "$WORK/nginx" 1) | $(col "$WORK/gh-otf" 1) | **$RATIO_OTF** | $(col "$WORK/nginx" 2) / $(col "$WORK/nginx" 3) | $(col "$WORK/gh-otf" 2) / $(col "$WORK/gh-otf" 3) | — |"
if [ -f bench/RESULTS.md ]; then
  awk -v row="$ROW" '
    /^\| static 20 KB CSS/ { if (!done) print row; done = 1; next }
    /^\| scenario \|/ { table = 1 }
    table && !/^\|/ { if (!done) print row; done = 1; table = 0 }
    { print }
    END { if (!done) print row }' bench/RESULTS.md > "$WORK/RESULTS.md" && cp "$WORK/RESULTS.md" bench/RESULTS.md
fi
cat bench/STATIC.md
