# Helpers for bench/run.sh (sourced): nginx config for one worker, the median of a column of numbers, the gatehouse config.

nginx_conf() { # $1 dir, $2 http-level config (servers, upstreams, caches)
  cat > "$1/nginx.conf" <<NGX
worker_processes 1;
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
