// Command caddy is Caddy with the leadproxy module compiled in: the same
// binary `xcaddy build --with github.com/leadproxy/leadproxy=./` makes.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/leadproxy/leadproxy/caddymodule"
)

func main() {
	caddycmd.Main()
}
