# Helpers for bench/run.sh and bench/compare.sh (sourced): nginx config (one worker unless told), the median of a column of numbers,
# the gatehouse config, wrk with the server's CPU time, a wrk script that sends the site's name as SNI.

nginx_conf() { # $1 dir, $2 http-level config (servers, upstreams, caches), $3 worker_processes (default 1)
  cat > "$1/nginx.conf" <<NGX
worker_processes ${3:-1};
pid $1/nginx.pid;
error_log $1/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile off;
  keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
  $2
}
NGX
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { cut -d' ' -f"$2" "$1" | median; }   # $1 a file of records, $2 a column: its median

gh_config() { # $1 extra [listen] lines, $2 extra tables; writes $WORK/config.toml for $GH_PORT / $GH_ADMIN
  cat > "$WORK/config.toml" <<TOML
routes_dir = "routes"
pid_file = "gatehouse.pid"
[listen]
http = "127.0.0.1:$GH_PORT"
admin = "127.0.0.1:$GH_ADMIN"
$1
[log]
access = ${GH_ACCESS_LOG:-false}
$2
TOML
}

gh_site() { # $1 the route file to write, then prefixes whose cache is off besides /nostore/; the bench site on HTTP and HTTPS ($WORK/cert.pem, key.pem)
  local file=$1 p; shift
  { cat <<TOML
hosts = ["$HOST", "127.0.0.1"]
tls = "manual"
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
https_redirect = false
upstreams = ["http://127.0.0.1:$ORIGIN_PORT"]
[cache]
TOML
    for p in /nostore/ "$@"; do printf '[[paths]]\nprefix = "%s"\n[paths.cache]\nenabled = false\n' "$p"; done
  } > "$file"
}

# wrk connects to, sends as SNI and as Host the URL's host. With this script (wrk -s FILE) the URL may name the site
# (https://bench.test:PORT/…) while every connection goes to 127.0.0.1: the TLS handshake then carries the site's name as SNI,
# as a browser's would. gatehouse's HTTPS front end answers 421 on a connection whose SNI names no site (an IP address).
sni_script() { # $1 file to write
  echo 'wrk.resolve = function(host, service) wrk.addrs = wrk.lookup("127.0.0.1", service) end' > "$1"
}

# wrk against a server, with the server's CPU time and the new connections the run made.
tree_pids() { echo "$1" $(pgrep -P "$1" | tr '\n' ' '); }   # a process and its children (a supervisor's workers)
cpu_ticks() { local t=0 p; for p in $(tree_pids "$1"); do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo $t; }   # utime + stime, all threads
passive_opens() { awk '/^Tcp:/ {if (!h) {for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") c = i; h = 1} else print $c}' /proc/net/snmp; }
TICK=$(getconf CLK_TCK)
# One run prints one record: "rps p50ms p99ms server_cpu_us_per_req new_conns_per_req non2xx socket_errors MiB/s maxms".
run_wrk() { # $1 server pid, $2 seconds, $3 connections, $4 url, then extra wrk arguments
  local pid=$1 secs=$2 conns=$3 url=$4 c0 o0 out; shift 4
  c0=$(cpu_ticks "$pid"); o0=$(passive_opens)
  out=$(timeout $((secs + 30)) wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$url" 2>&1 || true)
  awk -v cpu=$(( $(cpu_ticks "$pid") - c0 )) -v opens=$(( $(passive_opens) - o0 )) -v tick="$TICK" '
    /requests in/ {n=$1}
    /Requests\/sec/ {rps=$2}
    /Transfer\/sec/ {v=$2; m=1/1048576; if (v ~ /KB$/) m=1/1024; else if (v ~ /MB$/) m=1; else if (v ~ /GB$/) m=1024; mibs=v*m}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /^ +Latency +[0-9]/ {max=$4}
    /Non-2xx or 3xx responses/ {bad=$NF}
    /Socket errors/ {gsub(",", ""); errs=$4+$6+$8+$10}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /m$/) return v*60000; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.0f %.3f %.3f %.0f %.2f %d %d %.1f %.3f\n", rps, ms(p50), ms(p99), n ? cpu*1e6/tick/n : 0, n ? opens/n : 0, bad, errs, mibs, ms(max)}' <<< "$out"
}
