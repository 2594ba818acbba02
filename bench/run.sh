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
# Then the page shapes of issue 15 (SHAPES), leadproxy against plain Caddy
# only, in the same rounds: a WordPress-shaped page with a 70 KB head
# (bench/wppage.awk), static (wp) and with a per-request CSP nonce on its
# scripts (wpnonce); a small head with a per-request CSRF <meta> (csrf); a
# 60 KB page from an upstream that gzips, through site blocks without and
# with `encode` (gzip), with the bytes each visitor's Accept-Encoding gets
# (and, in the bytes table only, from upstreams that send br or zstd).
# The per-request values come from the upstream nginx (sub_filter with
# $request_id), so leadproxy's verdict cache misses on every request.
# It prints a markdown table of ratios against Caddy reverse_proxy, one of
# CPU per request, and one per page shape against the targets
# (req/s >= 0.95x, CPU per request <= 1.05x, bytes <= plain Caddy's + the tag).
#
# Needs: go, nginx (with the sub module, as Debian's), wrk, curl (with
# gzip, brotli and zstd, as Debian's).
#   apt-get update && apt-get install -y nginx wrk curl brotli zstd
# (brotli and zstd only make the br and zstd upstreams of the bytes table.)
# Knobs (environment): DURATION=2s CONNS=8 ROUNDS=5 TTFB_N=101 RSS_CONC=4
#   RSS_ROUNDS=2 PORT_BASE=18400 KEEP=1 (keep the work folder) NICE=-10 (priority)
#   SHAPES="wp wpnonce csrf gzip" (the page shapes to run; "" for none)
#   PIN=1 (the proxies on CPU 1, the upstream nginx and wrk on CPU 0, with
#   taskset: the server measured never shares its core with the load)
#   TOGETHER=1 (the page shapes: leadproxy and Caddy loaded at the same time,
#   one wrk each, so whatever else the machine does falls on both alike)
#   BASE=0 (skip the image, 50 KB page, TTFB, RSS and the replace-response
#   and nginx rows: only leadproxy and Caddy on the page shapes)
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
SHAPES=${SHAPES-wp wpnonce csrf gzip}
BASE=${BASE:-1}
TAG='<script src="/_leadproxy/c.js" defer></script>'
# The tag as leadproxy writes it, with a nonce when the page's CSP has one.
TAG_RE='<script src="/_leadproxy/c\.js" defer( nonce="[A-Za-z0-9+/_=-]*")?></script>'
HTML_ACCEPT='text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
IMG_ACCEPT='image/avif,image/webp,image/*,*/*;q=0.8'
# What a current browser sends on a navigation; the page shapes use it.
BROWSER_AE='gzip, deflate, br, zstd'

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in go nginx wrk curl awk; do
	command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y nginx wrk curl)"
done
nginx -V 2>&1 | grep -q -- --with-http_sub_module || die "this nginx has no sub_filter (http_sub_module)"
# The page shapes, and the measurements (one wrk run per server and round)
# they expand to: gzip is two, without and with `encode`.
declare -A SHAPE_KEYS=([wp]=wp [wpnonce]=wpnonce [csrf]=csrf [gzip]="gz gzenc")
MEASURE=()
[ "$BASE" = 1 ] && MEASURE+=(img html)
for s in $SHAPES; do
	[ -n "${SHAPE_KEYS[$s]:-}" ] || die "unknown shape $s in SHAPES (wp wpnonce csrf gzip)"
	[[ " ${MEASURE[*]} " == *" ${SHAPE_KEYS[$s]%% *} "* ]] || MEASURE+=(${SHAPE_KEYS[$s]})
done
has_shape() { [[ " $SHAPES " == *" $1 "* ]]; }
[ "${#MEASURE[@]}" -gt 0 ] || die "nothing to measure (BASE=0 and SHAPES empty)"
curl -V | grep -qw zstd && curl -V | grep -qw brotli || die "this curl cannot decode zstd and brotli"

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
# caddy_enc and leadproxy_enc are second sites (with `encode`) of the caddy
# and leadproxy processes; lp_metrics serves leadproxy's Prometheus metrics.
declare -A PORT=([caddy]=$((PORT_BASE + 1)) [leadproxy]=$((PORT_BASE + 2)) [replace]=$((PORT_BASE + 3))
	[nginx]=$((PORT_BASE + 4)) [nginx_sub]=$((PORT_BASE + 5)) [direct]=$UP
	[caddy_enc]=$((PORT_BASE + 6)) [leadproxy_enc]=$((PORT_BASE + 7)) [lp_metrics]=$((PORT_BASE + 8)))
for p in "${PORT[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (set PORT_BASE)"; fi
done

# --- builds -----------------------------------------------------------------
log "building leadproxy Caddy (./cmd/caddy)"
go build -o "$WORK/caddy-leadproxy" ./cmd/caddy
REPLACE_WHY=""
[ "$BASE" = 1 ] || REPLACE_WHY="BASE=0"
[ -n "$REPLACE_WHY" ] || log "building Caddy + replace-response (bench/replacecaddy)"
[ -n "$REPLACE_WHY" ] || cp -r "$ROOT/bench/replacecaddy" "$WORK/replacecaddy"
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
if [ -n "$REPLACE_WHY" ] || (cd "$WORK/replacecaddy" && get_replace &&
	go mod tidy && go build -o "$WORK/caddy-replace" .) >"$WORK/replace-build.log" 2>&1; then
	:
else
	# The last part of the first error ("403 Forbidden", "unknown revision"...).
	REPLACE_WHY="go get failed: $(grep -m1 '^go: ' "$WORK/replace-build.log" | sed 's/.*: //' | cut -c1-80 || true)"
	log "replace-response could not be built: $REPLACE_WHY"
fi

# --- pages ------------------------------------------------------------------
# A landing page of about $1 bytes: a real-looking head, a form, and rows.
# $2 goes into the head after the viewport <meta>, $3 into the form.
genpage() {
	LC_ALL=C awk -v size="$1" -v headx="${2:-}" -v formx="${3:-}" 'BEGIN {
		h = "<!DOCTYPE html>\n<html lang=\"ru\">\n<head>\n<meta charset=\"utf-8\">\n" \
		    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n" headx \
		    "<title>Окна ПВХ от производителя</title>\n<link rel=\"stylesheet\" href=\"/css/site.css\">\n" \
		    "<script src=\"/js/app.js\" defer></script>\n</head>\n<body>\n" \
		    "<header><nav><a href=\"/\">Главная</a> <a href=\"/catalog\">Каталог</a></nav></header>\n" \
		    "<form id=\"contact-form\" action=\"/contact\" method=\"post\">" formx "<input name=\"name\">" \
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
# The page shapes. NONCE_VALUE is what the upstream's sub_filter replaces with
# its $request_id (32 hex digits, new on every request).
mkdir -p "$WORK/www/nonce" "$WORK/www/csrf" "$WORK/www/gz"
LC_ALL=C awk -v nonce=0 -f "$ROOT/bench/wppage.awk" >"$WORK/www/wp.html"
LC_ALL=C awk -v nonce=1 -f "$ROOT/bench/wppage.awk" >"$WORK/www/nonce/wp.html"
genpage 51200 '<meta name="csrf-param" content="authenticity_token">\n<meta name="csrf-token" content="NONCE_VALUE">\n' '<input type="hidden" name="authenticity_token" value="NONCE_VALUE">' >"$WORK/www/csrf/page50k.html"
genpage 61440 >"$WORK/www/page60k.html"
cp "$WORK/www/page60k.html" "$WORK/www/gz/page60k.html"
# For the bytes table, the same page precompressed for an upstream that sends
# br or zstd to visitors who accept it: each at its nginx module's default
# level (ngx_brotli's brotli_comp_level 6, zstd-nginx-module's 1), as an
# upstream compressing on the fly would.
UP_CODINGS=(identity gzip)
UP_MISSING=""
declare -A UP_PATH=([identity]=page60k.html [gzip]=gz/page60k.html [br]=br/page60k.html [zstd]=zst/page60k.html)
if has_shape gzip; then
	mkdir -p "$WORK/www/br" "$WORK/www/zst"
	cp "$WORK/www/page60k.html" "$WORK/www/br/page60k.html"
	cp "$WORK/www/page60k.html" "$WORK/www/zst/page60k.html"
	if command -v brotli >/dev/null; then
		brotli -q 6 -c "$WORK/www/page60k.html" >"$WORK/www/br/page60k.html.br" && UP_CODINGS+=(br)
	else UP_MISSING="$UP_MISSING br (no brotli command: apt-get install -y brotli)"; fi
	if command -v zstd >/dev/null; then
		zstd -q -1 -c "$WORK/www/page60k.html" >"$WORK/www/zst/page60k.html.zst" && UP_CODINGS+=(zstd)
	else UP_MISSING="$UP_MISSING zstd (no zstd command: apt-get install -y zstd)"; fi
fi

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
# The upstream: static files; under /nonce/ and /csrf/ every NONCE_VALUE
# becomes the request's $request_id (/nonce/ also sends it in a CSP, as a
# site with nonce'd scripts does); /gz/ is gzipped (level 1, nginx's default;
# gzip_proxied any, since Caddy's proxy adds Via, which nginx otherwise
# answers uncompressed). These three answer from memory, as a dynamic
# upstream does, without sendfile: with sendfile and tcp_nopush on, nginx
# corked the end of every filtered response until the client's delayed ACK,
# 40 ms, and the upstream, not the proxy, set the pace. /br/ and /zst/ send
# the precompressed file to a request whose Accept-Encoding names br or zstd
# (q-values aside), else the page.
nginx_conf up 1 "map \$http_accept_encoding \$br_file { '~*(^|[ ,])br(\$|[ ,;])' .br; default ''; }
map \$http_accept_encoding \$zst_file { '~*(^|[ ,])zstd(\$|[ ,;])' .zst; default ''; }
map \$br_file \$br_coding { .br br; default ''; }
map \$zst_file \$zst_coding { .zst zstd; default ''; }
server { listen 127.0.0.1:$UP; root $WORK/www;
	location /br/ { types { } default_type text/html; add_header Vary Accept-Encoding; add_header Content-Encoding \$br_coding; try_files \$uri\$br_file \$uri =404; }
	location /zst/ { types { } default_type text/html; add_header Vary Accept-Encoding; add_header Content-Encoding \$zst_coding; try_files \$uri\$zst_file \$uri =404; }
	location /nonce/ {
		sendfile off;
		sub_filter 'NONCE_VALUE' '\$request_id'; sub_filter_once off; sub_filter_types text/html;
		add_header Content-Security-Policy \"script-src 'nonce-\$request_id' 'strict-dynamic'\";
	}
	location /csrf/ { sendfile off; sub_filter 'NONCE_VALUE' '\$request_id'; sub_filter_once off; sub_filter_types text/html; }
	location /gz/ { sendfile off; gzip on; gzip_types text/html; gzip_comp_level 1; gzip_min_length 256; gzip_proxied any; gzip_vary on; }
}" >"$WORK/nginx-up.conf"
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
http://127.0.0.1:${PORT[caddy_enc]} {
	encode
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
http://127.0.0.1:${PORT[leadproxy_enc]} {
	encode
	leadproxy {
		form "Заявка" {
			submit "#contact-form"
			phone  field phone
		}
	}
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:${PORT[lp_metrics]} {
	metrics
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

# PIN=1: the proxies on one CPU, the upstream and wrk on the other.
PIN_PROXY=() PIN_LOAD=()
if [ "${PIN:-0}" = 1 ]; then
	command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"
	[ "$(nproc)" -ge 2 ] || die "PIN=1 needs 2 CPUs"
	PIN_PROXY=(taskset -c 1) PIN_LOAD=(taskset -c 0)
fi
declare -A PID
start() { # name command...
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PID[$name]=$!
	PIDS+=($!)
}
start direct "${PIN_LOAD[@]}" nginx -p "$WORK" -c "$WORK/nginx-up.conf"
if [ "$BASE" = 1 ]; then
	start nginx nginx -p "$WORK" -c "$WORK/nginx-plain.conf"
	start nginx_sub nginx -p "$WORK" -c "$WORK/nginx-sub.conf"
fi
caddy_env=(env HOME="$WORK" XDG_DATA_HOME="$WORK/xdg-data" XDG_CONFIG_HOME="$WORK/xdg-config")
start caddy "${PIN_PROXY[@]}" "${caddy_env[@]}" "$WORK/caddy-leadproxy" run --config "$WORK/caddy.Caddyfile" --adapter caddyfile
start leadproxy "${PIN_PROXY[@]}" "${caddy_env[@]}" "$WORK/caddy-leadproxy" run --config "$WORK/leadproxy.Caddyfile" --adapter caddyfile
TARGETS=(caddy leadproxy)
if [ -z "$REPLACE_WHY" ]; then
	start replace "${PIN_PROXY[@]}" "${caddy_env[@]}" "$WORK/caddy-replace" run --config "$WORK/replace.Caddyfile" --adapter caddyfile
	TARGETS+=(replace)
fi
[ "$BASE" = 1 ] && TARGETS+=(nginx nginx_sub direct)

url() { echo "http://127.0.0.1:${PORT[$1]}/$2"; }
pid_of() { echo "${PID[${1%_enc}]}"; } # the `encode` sites are in the same processes
UP_CHECK=("${TARGETS[@]}" caddy_enc leadproxy_enc)
[ "$BASE" = 1 ] || UP_CHECK+=(direct)
for t in "${UP_CHECK[@]}"; do
	for _ in $(seq 100); do
		curl -sf -o /dev/null "$(url "$t" img.png)" && continue 2
		kill -0 "$(pid_of "$t")" 2>/dev/null || die "$t exited: $(tail -n5 "$WORK/${t%_enc}.log")"
		sleep 0.1
	done
	die "$t did not come up: $(tail -n5 "$WORK/${t%_enc}.log")"
done
curl -sf -o /dev/null "$(url lp_metrics metrics)" || die "leadproxy's metrics site does not answer"
log "servers up: ${UP_CHECK[*]}"

# --- correctness first --------------------------------------------------------
fetch() { curl -sf -H "Accept: $HTML_ACCEPT" -o "$2" "$(url "$1" "$3")"; }
if [ "$BASE" = 1 ]; then for t in "${TARGETS[@]}"; do
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
done; fi
[ "$BASE" = 1 ] && log "every target serves what it should (tag once where injecting, bytes otherwise intact)"

# The page shapes: what the visitor's client gets, decoded, must be the
# upstream's page (with that response's nonce or token), with leadproxy's tag
# once or not at all; the tag's nonce must be the response's CSP nonce.
# Whether leadproxy injected is recorded (TAGNOTE, TAGOK) for the table, not
# fatal: a page left as it came is not broken. Anything else stops the run.
declare -A SRC=([wp]=wp.html [wpnonce]=nonce/wp.html [csrf]=csrf/page50k.html [gz]=gz/page60k.html [gzenc]=gz/page60k.html)
declare -A TAGNOTE TAGOK BYTES CODING
# fetch_page target path accept-encoding: the body as the visitor's client
# decodes it in $WORK/got.html, the headers in $WORK/got.hdr; prints the
# body's bytes on the wire and its Content-Encoding. "none" sends no
# Accept-Encoding (and decodes nothing).
fetch_page() {
	local args=(-sf -H "Accept: $HTML_ACCEPT" -D "$WORK/got.hdr" -o "$WORK/got.html" -w '%{size_download}') size coding
	[ "$3" = none ] || args+=(--compressed -H "Accept-Encoding: $3")
	size=$(curl "${args[@]}" "$(url "$1" "$2")") || die "$1: GET /$2 (Accept-Encoding: $3) failed"
	coding=$(header content-encoding)
	[ "$3" != none ] || [ -z "$coding" ] || die "$1: /$2 came $coding to a client that sent no Accept-Encoding"
	echo "$size ${coding:-identity}"
}
header() { # name: its value in $WORK/got.hdr
	awk -v h="$1:" '{ sub(/\r$/, "") } tolower(substr($0, 1, length(h))) == h { sub(/^[^:]*: */, ""); print; exit }' "$WORK/got.hdr"
}
# untag what expected-file: $WORK/got.html is expected-file, or it with one
# tag spliced in; prints "none" or the tag.
untag() {
	local n pos tag
	n=$({ LC_ALL=C grep -oE "$TAG_RE" "$WORK/got.html" || true; } | wc -l)
	case $n in
	0)
		cmp -s "$WORK/got.html" "$2" || die "$1: differs from the upstream's page"
		echo none
		;;
	1)
		tag=$(LC_ALL=C grep -oE "$TAG_RE" "$WORK/got.html")
		pos=$(LC_ALL=C grep -boE "$TAG_RE" "$WORK/got.html" | cut -d: -f1)
		cmp -s <(head -c "$pos" "$WORK/got.html" && tail -c +$((pos + ${#tag} + 1)) "$WORK/got.html") "$2" ||
			die "$1: without the tag differs from the upstream's page"
		echo "$tag"
		;;
	*) die "$1: the tag $n times" ;;
	esac
}
page_value() { # shape: the per-request value of the page just fetched
	case $1 in
	wpnonce) header content-security-policy | sed -n "s/.*'nonce-\([^']*\)'.*/\1/p" ;;
	csrf) LC_ALL=C grep -o '<meta name="csrf-token" content="[^"]*"' "$WORK/got.html" | sed 's/.*content="//; s/"$//' ;;
	esac
}
for m in wp wpnonce csrf; do
	has_shape "$m" || continue
	seen=" " TAGOK[$m]=1 TAGNOTE[$m]=once
	[ "$m" = wpnonce ] && TAGNOTE[$m]="once, with the response's CSP nonce"
	# Twice each: the value must be new on every request, and leadproxy's tag
	# must carry the nonce of its own response, not one it saw before.
	for t in caddy leadproxy caddy leadproxy; do
		out=$(fetch_page "$t" "${SRC[$m]}" "$BROWSER_AE")
		read -r _ coding <<<"$out"
		[ "$coding" = identity ] || die "$t: /${SRC[$m]} came $coding; the upstream sends it uncompressed"
		v=$(page_value "$m")
		if [ "$m" != wp ]; then
			[ -n "$v" ] || die "$t: /${SRC[$m]} has no per-request value"
			[[ "$seen" != *" $v "* ]] || die "$t: /${SRC[$m]}: $v twice, not new per request"
			seen="$seen$v "
		fi
		sed "s/NONCE_VALUE/$v/g" "$WORK/www/${SRC[$m]}" >"$WORK/want.html"
		tag=$(untag "$t: /${SRC[$m]}" "$WORK/want.html")
		if [ "$t" = caddy ]; then
			[ "$tag" = none ] || die "Caddy: /${SRC[$m]} has leadproxy's tag"
			continue
		fi
		want_tag=$TAG
		[ "$m" = wpnonce ] && want_tag="<script src=\"/_leadproxy/c.js\" defer nonce=\"$v\"></script>"
		[ "${TAGOK[$m]}" = 1 ] || continue # the first failure is the one reported
		if [ "$tag" = none ]; then
			TAGNOTE[$m]="**not injected**" TAGOK[$m]=0
		elif [ "$tag" != "$want_tag" ]; then
			TAGNOTE[$m]="**wrong tag** \`$tag\`" TAGOK[$m]=0
			[ "$m" = wpnonce ] && TAGNOTE[$m]="**without its response's CSP nonce** (\`$tag\`, the CSP's: $v)"
		fi
	done
	log "$m: leadproxy's page: ${TAGNOTE[$m]}"
done
# gzip: the 60 KB page, identity (/page60k.html), gzipped (/gz/) and, for the
# bytes table, br and zstd (/br/, /zst/), through the sites without and with
# `encode`, for three visitors' Accept-Encoding; the bytes on the wire of
# each (curl's size_download: the body as sent).
AE_NAMES=(all gzip none)
declare -A AE_VALUE=([all]=$BROWSER_AE [gzip]=gzip [none]=none)
if has_shape gzip; then
	for up in "${UP_CODINGS[@]}"; do
		path=${UP_PATH[$up]}
		for site in "" _enc; do
			tagged=0
			for ae in "${AE_NAMES[@]}"; do
				for t in caddy leadproxy; do
					out=$(fetch_page "$t$site" "$path" "${AE_VALUE[$ae]}")
					key=$up$site.$ae.$t
					read -r "BYTES[$key]" "CODING[$key]" <<<"$out"
					tag=$(untag "$t$site: /$path (Accept-Encoding: ${AE_VALUE[$ae]})" "$WORK/www/page60k.html")
					if [ "$t" = caddy ]; then
						[ "$tag" = none ] || die "Caddy: /$path has leadproxy's tag"
					elif [ "$tag" = "$TAG" ]; then
						tagged=$((tagged + 1))
					elif [ "$tag" != none ]; then
						die "leadproxy$site: /$path: unexpected tag $tag"
					fi
				done
			done
			if [ "$up" = gzip ]; then
				m=gz
				[ -n "$site" ] && m=gzenc
				TAGOK[$m]=0 TAGNOTE[$m]="**not injected**"
				[ "$tagged" = 0 ] || TAGNOTE[$m]="**injected for $tagged of 3 Accept-Encodings**"
				[ "$tagged" = 3 ] && TAGOK[$m]=1 TAGNOTE[$m]="once"
			fi
		done
	done
	for up in "${UP_CODINGS[@]}"; do
		[ "$up" = identity ] && continue
		[ "${CODING[$up.all.caddy]}" = "$up" ] || die "the upstream sent /${UP_PATH[$up]} to Caddy as ${CODING[$up.all.caddy]}, not $up"
	done
	log "gzip: bytes on the wire measured; leadproxy's page: ${TAGNOTE[gz]} (no encode), ${TAGNOTE[gzenc]} (encode)"
fi

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
if [ "$BASE" = 1 ]; then # the RSS and TTFB sections
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
fi

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
wrk_run() { # url accept duration [accept-encoding]: prints "requests req/s non-2xx"
	local ae=()
	[ -z "${4:-}" ] || ae=(-H "Accept-Encoding: $4")
	"${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -d"$3" -H "Accept: $2" "${ae[@]}" "$1" |
		awk '/ requests in / { n = $1 } /^Requests\/sec:/ { r = $2 } /Non-2xx/ { bad = $NF } END { print n, r, bad + 0 }'
}
# What each measurement fetches, and from whom. The page shapes compare
# leadproxy with Caddy only, and send a browser's Accept-Encoding.
mtargets() { case $1 in img | html) echo "${TARGETS[@]}" ;; *) echo caddy leadproxy ;; esac; }
murl() { # measurement target
	case $1 in
	img) url "$2" img.png ;;
	html) url "$2" page50k.html ;;
	gzenc) url "${2}_enc" "${SRC[$1]}" ;;
	*) url "$2" "${SRC[$1]}" ;;
	esac
}
# leadproxy's own counters (its metrics site): HTML responses, of them
# injected, and heads read through the verdict cache and by the scanner.
lp_counts() {
	{ curl -sf "$(url lp_metrics metrics)" || true; } | awk '
		/^leadproxy_inject_total\{/ { t += $2; if ($1 ~ /result="injected"/) i += $2 }
		/^leadproxy_inject_scans_total\{/ { if ($1 ~ /source="cache"/) c += $2; else k += $2 }
		END { printf "%d %d %d %d\n", t, i, c, k }'
}
declare -A MET
for m in "${MEASURE[@]}"; do
	MET[$m]="0 0 0 0"
	for t in $(mtargets "$m"); do : >"$WORK/rps.$m.$t" && : >"$WORK/cpu.$m.$t"; done
done
# record measurement target round requests req/s non-2xx ticks [note]: one
# wrk run's req/s and CPU per request, into the files the tables read.
record() {
	local m=$1 t=$2 round=$3 n=$4 r=$5 bad=$6 ticks=$7 cpu
	[ "$bad" = 0 ] || die "$t: $bad non-2xx answers to $(murl "$m" "$t")"
	cpu=$(awk -v c="$ticks" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", (n > 0 ? 1e6 * c / hz / n : 0) }')
	echo "$r" >>"$WORK/rps.$m.$t"
	echo "$cpu" >>"$WORK/cpu.$m.$t"
	log "round $round $m $t${8:-}: $r req/s, $cpu µs CPU/request"
}
# leadproxy's counters (MET) gain what changed since before.
count_since() { # measurement before
	MET[$1]=$(echo "${MET[$1]} $2 $(lp_counts)" |
		awk '{ for (k = 1; k <= 4; k++) printf "%d ", $k + $(k + 8) - $(k + 4) }')
}
# TOGETHER=1: a page shape's two servers under load at once, one wrk each;
# each one's CPU ticks over the same seconds.
together() { # measurement round
	local m=$1 round=$2 a=$HTML_ACCEPT ae=$BROWSER_AE t before c1 n r bad
	local -A w0 pid_w
	if [ "$round" = 1 ]; then
		for t in caddy leadproxy; do wrk_run "$(murl "$m" "$t")" "$a" 1s "$ae" >/dev/null & pid_w[$t]=$!; done
		wait "${pid_w[caddy]}" "${pid_w[leadproxy]}"
	fi
	before=$(lp_counts)
	for t in caddy leadproxy; do w0[$t]=$(tree_ticks "$(pid_of "$t")"); done
	for t in caddy leadproxy; do
		wrk_run "$(murl "$m" "$t")" "$a" "$DURATION" "$ae" >"$WORK/wrk.$t" &
		pid_w[$t]=$!
	done
	wait "${pid_w[caddy]}" "${pid_w[leadproxy]}"
	count_since "$m" "$before"
	for t in caddy leadproxy; do
		c1=$(tree_ticks "$(pid_of "$t")")
		read -r n r bad <"$WORK/wrk.$t"
		record "$m" "$t" "$round" "$n" "$r" "$bad" $((c1 - w0[$t])) " (together)"
	done
}
for round in $(seq "$ROUNDS"); do
	for m in "${MEASURE[@]}"; do
		if [ "${TOGETHER:-0}" = 1 ] && [ "$m" != img ] && [ "$m" != html ]; then
			together "$m" "$round"
			continue
		fi
		read -ra order <<<"$(mtargets "$m")"
		if [ $((round % 2)) = 0 ]; then # drift cancels
			for ((i = ${#order[@]} - 1, j = 0; i >= 0; i--, j++)); do rev[j]=${order[i]}; done
			order=("${rev[@]:0:${#order[@]}}")
		fi
		for t in "${order[@]}"; do
			u=$(murl "$m" "$t") a=$HTML_ACCEPT ae=$BROWSER_AE
			case $m in img) a=$IMG_ACCEPT ae="" ;; html) ae="" ;; esac
			[ "$round" = 1 ] && wrk_run "$u" "$a" 1s "$ae" >/dev/null
			[ "$t" = leadproxy ] && before=$(lp_counts)
			c0=$(tree_ticks "$(pid_of "$t")")
			out=$(wrk_run "$u" "$a" "$DURATION" "$ae")
			c1=$(tree_ticks "$(pid_of "$t")")
			read -r n r bad <<<"$out"
			[ "$t" = leadproxy ] && count_since "$m" "$before"
			record "$m" "$t" "$round" "$n" "$r" "$bad" $((c1 - c0))
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

if [ "$BASE" = 1 ]; then
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
fi

# --- the page shapes' table: leadproxy against Caddy, and the targets --------------
med() { median <"$1" | awk -v f="$2" '{ printf f, $1 }'; }
mark() { # value ge|le limit
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { print ((op == "ge" ? v >= l : v <= l) ? "pass" : "**FAIL**") }'
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }'; }
kb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1000 }'; }
head_bytes() { LC_ALL=C grep -bo '</head>' "$1" | head -n1 | cut -d: -f1; }
declare -A SHAPE_NAME=(
	[html]="50 KB landing page, small head, static (the rows above)"
	[wp]="WordPress-shaped, $(kb "$(head_bytes "$WORK/www/wp.html")") KB head of $(kb "$(stat -c %s "$WORK/www/wp.html")") KB, static"
	[wpnonce]="the same WordPress-shaped head, per-request CSP nonce on its scripts"
	[csrf]="$(kb "$(stat -c %s "$WORK/www/csrf/page50k.html")") KB page, small head with a per-request CSRF \`<meta>\`"
	[gz]="60 KB page, gzip upstream, site without \`encode\`"
	[gzenc]="60 KB page, gzip upstream, site with \`encode\`"
)
TAGNOTE[html]=once TAGOK[html]=1 # checked before the measurements, or the run stopped
bytes_ok() { [ "$1" -le $(($2 + ${#TAG})) ]; } # leadproxy's bytes, plain Caddy's
cell_bytes() { # upstream[_enc]: "ratios (bytes) mark" over the three Accept-Encodings
	local key=$1 ae r=() lp=() pl=() ok=1
	for ae in "${AE_NAMES[@]}"; do
		r+=("$(ratio "${BYTES[$key.$ae.leadproxy]}" "${BYTES[$key.$ae.caddy]}")×")
		lp+=("${BYTES[$key.$ae.leadproxy]}") pl+=("${BYTES[$key.$ae.caddy]}")
		bytes_ok "${BYTES[$key.$ae.leadproxy]}" "${BYTES[$key.$ae.caddy]}" || ok=0
	done
	local IFS=/
	echo "${r[*]} (${lp[*]} B vs ${pl[*]} B) $([ $ok = 1 ] && echo pass || echo '**FAIL**')" | sed 's|/| / |g'
}
if [ "${#SHAPES}" -gt 0 ]; then
	echo
	echo "Page shapes (issue 15): leadproxy against Caddy reverse_proxy in the same rounds; targets req/s ≥ 0.95×, CPU per request ≤ 1.05×, bytes ≤ plain Caddy's + the tag (${#TAG} B)."
	echo "req/s and CPU: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds, Accept-Encoding: $BROWSER_AE (the 50 KB row: none, as above); medians, leadproxy vs Caddy, in parentheses."
	echo "Bytes: the page's body on the wire (curl size_download) for Accept-Encoding \"$BROWSER_AE\" / \"gzip\" / none, leadproxy vs Caddy."
	echo "leadproxy's counters over its measured runs: HTML responses injected, heads read through the verdict cache."
	echo
	echo "| page shape | req/s | CPU per request | bytes on the wire (all / gzip / none) | leadproxy's tag | injected; from cache | verdict |"
	echo "|---|---|---|---|---|---|---|"
	for m in "${MEASURE[@]}"; do
		[ "$m" = img ] && continue
		rr=$(pratio "$WORK/rps.$m.leadproxy" "$WORK/rps.$m.caddy")
		cr=$(pratio "$WORK/cpu.$m.leadproxy" "$WORK/cpu.$m.caddy")
		rm=$(mark "$rr" ge 0.95) cm=$(mark "$cr" le 1.05)
		BYTES_OK=1 bytes="-"
		case $m in gz) bytes=$(cell_bytes gzip) ;; gzenc) bytes=$(cell_bytes gzip_enc) ;; esac
		case $m in gz | gzenc) [[ "$bytes" == *FAIL* ]] && BYTES_OK=0 ;; esac
		read -r tot inj cache tok <<<"${MET[$m]}"
		counts="$(pct "$inj" "$tot") of $tot; $(pct "$cache" $((cache + tok))) of $((cache + tok)) scans"
		[ $((cache + tok)) -gt 0 ] || counts="$(pct "$inj" "$tot") of $tot; no scan counted"
		verdict=pass
		[ "$rm" = pass ] && [ "$cm" = pass ] && [ "$BYTES_OK" = 1 ] && [ "${TAGOK[$m]}" = 1 ] || verdict="**FAIL**"
		echo "| ${SHAPE_NAME[$m]} | ${rr}× ($(med "$WORK/rps.$m.leadproxy" %.0f) vs $(med "$WORK/rps.$m.caddy" %.0f)/s) $rm" \
			"| ${cr}× ($(med "$WORK/cpu.$m.leadproxy" %.0f) vs $(med "$WORK/cpu.$m.caddy" %.0f) µs) $cm" \
			"| $bytes | ${TAGNOTE[$m]} | $counts | $verdict |"
	done
fi
if has_shape gzip; then
	echo
	echo "Bytes on the wire, the 60 KB page (${BYTES[identity.none.caddy]} B): leadproxy vs Caddy, by upstream coding, site block and the visitor's Accept-Encoding (Content-Encoding sent in brackets); target: ≤ Caddy's + ${#TAG} B."
	echo "Upstream codings: gzip level 1 by nginx; br (quality 6) and zstd (level 1) precompressed, sent when the request's Accept-Encoding names them.${UP_MISSING:+ Not run:$UP_MISSING.}"
	echo
	echo "| upstream, site | Accept-Encoding: $BROWSER_AE | gzip | none |"
	echo "|---|---|---|---|"
	for key in $(for up in "${UP_CODINGS[@]}"; do echo "$up ${up}_enc"; done); do
		row="| ${key%_enc} upstream, $([ "$key" = "${key%_enc}" ] && echo "no \`encode\`" || echo "\`encode\`")"
		for ae in "${AE_NAMES[@]}"; do
			l=${BYTES[$key.$ae.leadproxy]} c=${BYTES[$key.$ae.caddy]}
			row="$row | $l B [${CODING[$key.$ae.leadproxy]}] vs $c B [${CODING[$key.$ae.caddy]}]: $(ratio "$l" "$c")× $(bytes_ok "$l" "$c" && echo pass || echo '**FAIL**')"
		done
		echo "$row |"
	done
fi
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -sr), $(go version | cut -d' ' -f3), nginx $(nginx -v 2>&1 | cut -d/ -f2), $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2); nice ${NICE:-0}; PIN ${PIN:-0}; TOGETHER ${TOGETHER:-0}; load average before: $LOAD_BEFORE, after: $(cut -d" " -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
