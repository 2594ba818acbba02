package caddymodule

import (
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/leadproxy/leadproxy/intercept"
)

// clientAddr is the visitor's address as Caddy computed it: the client_ip
// variable, which follows the server's trusted_proxies and
// client_ip_headers (X-Forwarded-For from a trusted proxy), else the
// connection's address. Every limit and every stored address uses it.
func clientAddr(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if a := intercept.ParseClientAddr(r.RemoteAddr); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}

// clientNetAddr is clientAddr parsed for the limiters (the zero Addr, one
// shared client, when it does not parse).
func clientNetAddr(r *http.Request) netip.Addr {
	return intercept.ParseClientAddr(clientAddr(r))
}
