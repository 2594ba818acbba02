// Command replacecaddy is Caddy v2 with github.com/caddyserver/replace-response,
// for the benchmark harness (bench/run.sh): the same injection done by a
// generic response-rewriting module. It is its own module so the project's
// go.mod does not carry replace-response.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/caddyserver/replace-response"
)

func main() {
	caddycmd.Main()
}
