#!/usr/bin/env bash
# bench/run.sh: the injection benchmark (issue 3). See BENCHMARKS.md.
#
# Starts, on 127.0.0.1:
#   nginx serving static files (the upstream for everyone),
#   Caddy reverse_proxy (the baseline: the leadproxy binary, no leadproxy directive),
#   leadproxy Caddy (./cmd/caddy, leadproxy + reverse_proxy),
#   Caddy + caddyserver/replace-response (stream mode) doing the same injection,
#   nginx proxy_pass, plain and with sub_filter doing the same injection,
# checks that each one injects (or not) what it should, then measures, in this
# order so that each number is taken in the same run:
#   peak RSS while serving a 50 MB page, TTFB of a 5 MB page (curl, median),
#   4 KB image and 50 KB HTML throughput (wrk, ROUNDS rounds), and the
#   server's CPU time per request during those runs.
# It prints a markdown table of ratios against Caddy reverse_proxy, and one of
# CPU per request.
#
# Needs: go, nginx (with the sub module, as Debian's), wrk, curl.
#   apt-get update && apt-get install -y nginx wrk curl
# Knobs (environment): DURATION=2s CONNS=8 ROUNDS=5 TTFB_N=101 RSS_CONC=4
#   RSS_ROUNDS=2 PORT_BASE=18400 KEEP=1 (keep the work folder) NICE=-10 (priority)
#   WORK=<folder> (use it, and keep it, instead of a temporary one)
#   REPLACE_RESPONSE_DIR=<folder> (a local checkout of caddyserver/replace-response,
#   used instead of the module proxy, which refuses it on some machines).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-2s}
CONNS=${CONNS:-8}
ROUNDS=${ROUNDS:-5}
TTFB_N=${TTFB_N:-101}
RSS_CONC=${RSS_CONC:-4}
RSS_ROUNDS=${RSS_ROUNDS:-2}
PORT_BASE=${PORT_BASE:-18400}
TAG='<script src="/_leadproxy/c.js" defer></script>'
HTML_ACCEPT='text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
IMG_ACCEPT='image/avif,image/webp,image/*,*/*;q=0.8'

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in go nginx wrk curl awk; do
	command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y nginx wrk curl)"
done
nginx -V 2>&1 | grep -q -- --with-http_sub_module || die "this nginx has no sub_filter (http_sub_module)"

# NICE=-10 (root only) runs everything started here ahead of other work on
# the machine: ratios then suffer less from a neighbour's compile.
if [ -n "${NICE:-}" ]; then renice -n "$NICE" -p $$ >/dev/null || die "renice $NICE failed"; fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
OWN_WORK=""
[ -n "${WORK:-}" ] || { WORK=$(mktemp -d /tmp/leadproxy-bench.XXXXXX) && OWN_WORK=1; }
mkdir -p "$WORK"/{www,tmp,xdg-data,xdg-config,leads}
chmod 755 "$WORK" "$WORK/www" # nginx workers may run as another user

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$OWN_WORK" ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else log "work folder: $WORK"; fi
}
trap cleanup EXIT

# Ports.
UP=$PORT_BASE
declare -A PORT=([caddy]=$((PORT_BASE + 1)) [leadproxy]=$((PORT_BASE + 2)) [replace]=$((PORT_BASE + 3))
	[nginx]=$((PORT_BASE + 4)) [nginx_sub]=$((PORT_BASE + 5)) [direct]=$UP)
for p in "${PORT[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (set PORT_BASE)"; fi
done

# --- builds -----------------------------------------------------------------
log "building leadproxy Caddy (./cmd/caddy)"
go build -o "$WORK/caddy-leadproxy" ./cmd/caddy
log "building Caddy + replace-response (bench/replacecaddy)"
cp -r "$ROOT/bench/replacecaddy" "$WORK/replacecaddy"
REPLACE_WHY=""
# REPLACE_RESPONSE_DIR: a local checkout of replace-response, for when the
# module proxy will not serve it (it answers 403 on some machines).
get_replace() {
	if [ -n "${REPLACE_RESPONSE_DIR:-}" ]; then
		go mod edit -require=github.com/caddyserver/replace-response@v0.0.0-local \
			-replace="github.com/caddyserver/replace-response=$(cd "$REPLACE_RESPONSE_DIR" && pwd)"
	else
		go get github.com/caddyserver/replace-response@latest
	fi
}
if (cd "$WORK/replacecaddy" && get_replace &&
	go mod tidy && go build -o "$WORK/caddy-replace" .) >"$WORK/replace-build.log" 2>&1; then
	:
else
	# The last part of the first error ("403 Forbidden", "unknown revision"...).
	REPLACE_WHY="go get failed: $(grep -m1 '^go: ' "$WORK/replace-build.log" | sed 's/.*: //' | cut -c1-80 || true)"
	log "replace-response could not be built: $REPLACE_WHY"
fi

# --- pages ------------------------------------------------------------------
# A landing page of about $1 bytes: a real-looking head, a form, and rows.
genpage() {
	LC_ALL=C awk -v size="$1" 'BEGIN {
		h = "<!DOCTYPE html>\n<html lang=\"ru\">\n<head>\n<meta charset=\"utf-8\">\n" \
		    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n" \
		    "<title>Окна ПВХ от производителя</title>\n<link rel=\"stylesheet\" href=\"/css/site.css\">\n" \
		    "<script src=\"/js/app.js\" defer></script>\n</head>\n<body>\n" \
		    "<header><nav><a href=\"/\">Главная</a> <a href=\"/catalog\">Каталог</a></nav></header>\n" \
		    "<form id=\"contact-form\" action=\"/contact\" method=\"post\"><input name=\"name\">" \
		    "<input name=\"phone\" type=\"tel\"><button>Отправить</button></form>\n"
		printf "%s", h; n = length(h)
		for (i = 0; n < size - 16; i++) {
			l = sprintf("<p class=\"item-%d\">Позиция %d: окна ПВХ, замер бесплатно, монтаж за один день. <a href=\"/p/%d\">Подробнее</a></p>\n", i % 9, i, i)
			printf "%s", l; n += length(l)
		}
		printf "</body></html>\n"
	}'
}
log "generating pages"
head -c 4096 /dev/urandom >"$WORK/www/img.png"
genpage 51200 >"$WORK/www/page50k.html"
genpage 5242880 >"$WORK/www/page5m.html"
genpage 52428800 >"$WORK/www/page50m.html"

# --- servers ----------------------------------------------------------------
NGINX_USER=""
[ "$(id -u)" = 0 ] && NGINX_USER="user root root;"
nginx_conf() { # name workers server-block
	cat <<-EOF
		$NGINX_USER
		worker_processes $2;
		daemon off;
		pid $WORK/nginx-$1.pid;
		error_log $WORK/nginx-$1.err warn;
		events { worker_connections 4096; }
		http {
			access_log off;
			types { text/html html; image/png png; }
			default_type application/octet-stream;
			sendfile on;
			tcp_nopush on;
			keepalive_requests 1000000;
			client_body_temp_path $WORK/tmp/$1-body;
			proxy_temp_path $WORK/tmp/$1-proxy;
			fastcgi_temp_path $WORK/tmp/$1-fcgi;
			uwsgi_temp_path $WORK/tmp/$1-uwsgi;
			scgi_temp_path $WORK/tmp/$1-scgi;
			upstream up { server 127.0.0.1:$UP; keepalive 64; }
			$3
		}
	EOF
}
PROXY_LOC='proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
nginx_conf up 1 "server { listen 127.0.0.1:$UP; root $WORK/www; }" >"$WORK/nginx-up.conf"
nginx_conf plain auto "server { listen 127.0.0.1:${PORT[nginx]}; location / { $PROXY_LOC } }" >"$WORK/nginx-plain.conf"
nginx_conf sub auto "server { listen 127.0.0.1:${PORT[nginx_sub]}; location / { $PROXY_LOC
	proxy_set_header Accept-Encoding \"\";
	sub_filter '<head>' '<head>$TAG';
	sub_filter_once on;
} }" >"$WORK/nginx-sub.conf"

cat >"$WORK/caddy.Caddyfile" <<EOF
{
	admin off
}
http://127.0.0.1:${PORT[caddy]} {
	reverse_proxy 127.0.0.1:$UP
}
EOF
cat >"$WORK/leadproxy.Caddyfile" <<EOF
{
	admin off
	leadproxy {
		storage $WORK/leads
	}
}
http://127.0.0.1:${PORT[leadproxy]} {
	leadproxy {
		form "Заявка" {
			submit "#contact-form"
			phone  field phone
		}
	}
	reverse_proxy 127.0.0.1:$UP
}
EOF
cat >"$WORK/replace.Caddyfile" <<EOF
{
	admin off
	order replace after encode
}
http://127.0.0.1:${PORT[replace]} {
	@html path *.html
	replace @html stream {
		\`<head>\` \`<head>$TAG\`
	}
	reverse_proxy 127.0.0.1:$UP {
		header_up Accept-Encoding identity
	}
}
EOF

declare -A PID
start() { # name command...
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PID[$name]=$!
	PIDS+=($!)
}
start direct nginx -p "$WORK" -c "$WORK/nginx-up.conf"
start nginx nginx -p "$WORK" -c "$WORK/nginx-plain.conf"
start nginx_sub nginx -p "$WORK" -c "$WORK/nginx-sub.conf"
caddy_env=(env HOME="$WORK" XDG_DATA_HOME="$WORK/xdg-data" XDG_CONFIG_HOME="$WORK/xdg-config")
start caddy "${caddy_env[@]}" "$WORK/caddy-leadproxy" run --config "$WORK/caddy.Caddyfile" --adapter caddyfile
start leadproxy "${caddy_env[@]}" "$WORK/caddy-leadproxy" run --config "$WORK/leadproxy.Caddyfile" --adapter caddyfile
TARGETS=(caddy leadproxy)
if [ -z "$REPLACE_WHY" ]; then
	start replace "${caddy_env[@]}" "$WORK/caddy-replace" run --config "$WORK/replace.Caddyfile" --adapter caddyfile
	TARGETS+=(replace)
fi
TARGETS+=(nginx nginx_sub direct)

url() { echo "http://127.0.0.1:${PORT[$1]}/$2"; }
for t in "${TARGETS[@]}"; do
	for _ in $(seq 100); do
		curl -sf -o /dev/null "$(url "$t" img.png)" && continue 2
		kill -0 "${PID[$t]}" 2>/dev/null || die "$t exited: $(tail -n5 "$WORK/$t.log")"
		sleep 0.1
	done
	die "$t did not come up: $(tail -n5 "$WORK/$t.log")"
done
log "servers up: ${TARGETS[*]}"

# --- correctness first --------------------------------------------------------
fetch() { curl -sf -H "Accept: $HTML_ACCEPT" -o "$2" "$(url "$1" "$3")"; }
for t in "${TARGETS[@]}"; do
	curl -sf -o "$WORK/got.png" "$(url "$t" img.png)"
	cmp -s "$WORK/got.png" "$WORK/www/img.png" || die "$t changed the image"
	want=0
	case $t in leadproxy | replace | nginx_sub) want=1 ;; esac
	for page in page50k.html page5m.html; do
		fetch "$t" "$WORK/got.html" "$page"
		n=$({ grep -oF "$TAG" "$WORK/got.html" || true; } | wc -l)
		[ "$n" = "$want" ] || die "$t: $page has the tag $n times, want $want"
		if [ "$want" = 1 ]; then
			pos=$(grep -boF "$TAG" "$WORK/got.html" | cut -d: -f1)
			cmp -s <(head -c "$pos" "$WORK/got.html") <(head -c "$pos" "$WORK/www/$page") &&
				cmp -s <(tail -c +$((pos + ${#TAG} + 1)) "$WORK/got.html") <(tail -c +$((pos + 1)) "$WORK/www/$page") ||
				die "$t: $page without the tag differs from the upstream's"
		else
			cmp -s "$WORK/got.html" "$WORK/www/$page" || die "$t changed $page"
		fi
	done
done
log "every target serves what it should (tag once where injecting, bytes otherwise intact)"

# --- peak RSS while serving the 50 MB page -------------------------------------
# The process tree's pids: Caddy is one process, nginx a master and workers.
tree_pids() { echo "$1" $(pgrep -P "$1" || true); }
sum_status() { # field pids...
	local f=$1 s=0 p v
	shift
	for p in "$@"; do
		v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
		s=$((s + ${v:-0}))
	done
	echo "$s"
}
declare -A RSS_PEAK RSS_GROW
for t in "${TARGETS[@]}"; do
	[ "$t" = direct ] && continue
	curl -sf -o /dev/null -H "Accept: $HTML_ACCEPT" "$(url "$t" page50k.html)"
	pids=$(tree_pids "${PID[$t]}")
	for p in $pids; do echo 5 >"/proc/$p/clear_refs"; done # reset VmHWM to VmRSS
	base=$(sum_status VmRSS $pids)
	for _ in $(seq "$RSS_ROUNDS"); do
		clients=()
		for _ in $(seq "$RSS_CONC"); do
			curl -sf -o /dev/null -H "Accept: $HTML_ACCEPT" "$(url "$t" page50m.html)" &
			clients+=($!)
		done
		for c in "${clients[@]}"; do wait "$c" || die "$t: downloading the 50 MB page failed"; done
	done
	peak=$(sum_status VmHWM $pids)
	RSS_PEAK[$t]=$peak
	RSS_GROW[$t]=$((peak - base))
	log "rss $t: peak $((peak / 1024)) MB, +$(((peak - base) / 1024)) MB while serving"
done

# --- TTFB of the 5 MB page ---------------------------------------------------------
for t in "${TARGETS[@]}"; do : >"$WORK/ttfb.$t"; done
reversed=()
for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do reversed+=("${TARGETS[$i]}"); done
for i in $(seq "$TTFB_N"); do
	order=("${TARGETS[@]}")
	[ $((i % 2)) = 0 ] && order=("${reversed[@]}")
	for t in "${order[@]}"; do
		curl -sf -o /dev/null -H "Accept: $HTML_ACCEPT" -w '%{time_starttransfer}\n' "$(url "$t" page5m.html)" >>"$WORK/ttfb.$t"
	done
done
log "ttfb: $TTFB_N iterations done"

# --- throughput -------------------------------------------------------------------
# Besides req/s, the CPU time the server's processes used per request
# (utime + stime from /proc, the whole tree for nginx): the machine is shared
# (wrk, the upstream, the proxy, and whatever else runs), and CPU per request
# moves much less with a neighbour's load than req/s does.
CLK_TCK=$(getconf CLK_TCK)
tree_ticks() { # pid: utime + stime of it and its children
	local s=0 p v
	for p in $(tree_pids "$1"); do
		v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)
		s=$((s + ${v:-0}))
	done
	echo "$s"
}
wrk_run() { # url accept duration: prints "requests req/s"
	wrk -t1 -c"$CONNS" -d"$3" -H "Accept: $2" "$1" |
		awk '/ requests in / { n = $1 } /^Requests\/sec:/ { r = $2 } END { print n, r }'
}
for t in "${TARGETS[@]}"; do
	for m in img html; do : >"$WORK/rps.$m.$t" && : >"$WORK/cpu.$m.$t"; done
done
for round in $(seq "$ROUNDS"); do
	order=("${TARGETS[@]}")
	[ $((round % 2)) = 0 ] && order=("${reversed[@]}") # drift cancels
	for m in img html; do
		for t in "${order[@]}"; do
			if [ $m = img ]; then u=$(url "$t" img.png) a=$IMG_ACCEPT; else u=$(url "$t" page50k.html) a=$HTML_ACCEPT; fi
			[ "$round" = 1 ] && wrk_run "$u" "$a" 1s >/dev/null
			c0=$(tree_ticks "${PID[$t]}")
			read -r n r < <(wrk_run "$u" "$a" "$DURATION")
			c1=$(tree_ticks "${PID[$t]}")
			cpu=$(awk -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", (n > 0 ? 1e6 * c / hz / n : 0) }')
			echo "$r" >>"$WORK/rps.$m.$t"
			echo "$cpu" >>"$WORK/cpu.$m.$t"
			log "round $round $m $t: $r req/s, $cpu µs CPU/request"
		done
	done
done

# --- the table ---------------------------------------------------------------------
# Each ratio is the median of ratios of two numbers taken close together (the
# same round, or the same TTFB iteration), so load from elsewhere on the
# machine cancels as far as it can; absolute values are medians.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
pratio() { # file-a file-b: median of line-by-line a/b
	paste "$1" "$2" | awk '$2 > 0 { print $1 / $2 }' | median | awk '{ printf "%.2f", $1 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
declare -A NAME=([caddy]="Caddy reverse_proxy (baseline)" [leadproxy]="leadproxy + reverse_proxy"
	[replace]="Caddy replace-response (stream) + reverse_proxy" [nginx]="nginx proxy_pass"
	[nginx_sub]="nginx proxy_pass + sub_filter" [direct]="nginx static, no proxy (the upstream)")
cell_rps() { # target metric
	local t=$1 m=$2 s
	s="$(pratio "$WORK/rps.$m.$t" "$WORK/rps.$m.caddy")× ($(median <"$WORK/rps.$m.$t" | awk '{ printf "%.0f", $1 }')/s"
	[ "$t" = nginx_sub ] && s="$s; $(pratio "$WORK/rps.$m.$t" "$WORK/rps.$m.nginx")× nginx"
	echo "$s)"
}
cell_cpu() { # target metric
	local t=$1 m=$2 s
	s="$(pratio "$WORK/cpu.$m.$t" "$WORK/cpu.$m.caddy")× ($(median <"$WORK/cpu.$m.$t" | awk '{ printf "%.0f", $1 }') µs"
	[ "$t" = nginx_sub ] && s="$s; $(pratio "$WORK/cpu.$m.$t" "$WORK/cpu.$m.nginx")× nginx"
	echo "$s)"
}
cell_ttfb() {
	local t=$1 s
	s="$(pratio "$WORK/ttfb.$t" "$WORK/ttfb.caddy")× ($(median <"$WORK/ttfb.$t" | awk '{ printf "%.2f", 1000 * $1 }') ms"
	[ "$t" = nginx_sub ] && s="$s; $(pratio "$WORK/ttfb.$t" "$WORK/ttfb.nginx")× nginx"
	echo "$s)"
}
cell_rss() {
	local t=$1 s
	[ "$t" = direct ] && { echo "-"; return; }
	s="$(ratio "${RSS_PEAK[$t]}" "${RSS_PEAK[caddy]}")× ($(mb "${RSS_PEAK[$t]}") MB peak, +$(mb "${RSS_GROW[$t]}") MB while serving"
	[ "$t" = nginx_sub ] && s="$s; $(ratio "${RSS_PEAK[$t]}" "${RSS_PEAK[nginx]}")× nginx"
	echo "$s)"
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "Ratios against Caddy reverse_proxy measured in this run (absolute values in parentheses)."
echo "Ratios are medians of paired ratios (same round / same iteration); absolute values are medians."
echo "req/s: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds; TTFB: curl time_starttransfer, $TTFB_N iterations;"
echo "peak RSS: VmHWM of the process tree while $RSS_CONC clients download the 50 MB page, $RSS_ROUNDS times; \"while serving\": VmHWM minus VmRSS just before (VmHWM reset then)."
echo
echo "| server | 4 KB image, req/s | 50 KB HTML, req/s | TTFB, 5 MB page (lower is better) | peak RSS, 50 MB page (lower is better) |"
echo "|---|---|---|---|---|"
for t in caddy leadproxy replace nginx nginx_sub direct; do
	if [ "$t" = replace ] && [ -n "$REPLACE_WHY" ]; then
		echo "| ${NAME[$t]} | not run: module not fetchable ($REPLACE_WHY) | | | |"
		continue
	fi
	echo "| ${NAME[$t]} | $(cell_rps "$t" img) | $(cell_rps "$t" html) | $(cell_ttfb "$t") | $(cell_rss "$t") |"
done
echo
echo "CPU time of the server per request, during the same wrk runs (lower is better; median µs, ratio as above):"
echo
echo "| server | 4 KB image, CPU/request | 50 KB HTML, CPU/request |"
echo "|---|---|---|"
for t in "${TARGETS[@]}"; do
	echo "| ${NAME[$t]} | $(cell_cpu "$t" img) | $(cell_cpu "$t" html) |"
done
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -sr), $(go version | cut -d' ' -f3), nginx $(nginx -v 2>&1 | cut -d/ -f2), $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2); nice ${NICE:-0}; load average before: $LOAD_BEFORE, after: $(cut -d" " -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
