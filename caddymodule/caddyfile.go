package caddymodule

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("leadproxy", parseGlobal)
	httpcaddyfile.RegisterHandlerDirective("leadproxy", parseHandler)
	// Inside encode, so encode compresses the injected page; before
	// templates, reverse_proxy, file_server, php_fastcgi and respond.
	httpcaddyfile.RegisterDirectiveOrder("leadproxy", httpcaddyfile.After, "encode")
	// Only to say where a destination goes, instead of "unrecognized directive".
	httpcaddyfile.RegisterDirective("destination", func(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
		return nil, h.Err(errDestinationInSite)
	})
}

const errDestinationInSite = "destination belongs in the global options block: { leadproxy { destination <name> <type> { ... } } }; a site picks destinations with send_to"

// parseGlobal parses the global options block:
//
//	leadproxy {
//		storage      <dir>
//		retry_for    <duration>
//		retention    <duration>
//		dedup_window <duration>
//		timezone     <IANA name>
//		marker_key   {env.LEADPROXY_MARKER_KEY}
//		visits { retention <duration>; max <n> }
//		destination <name> <type> { ... }
//		cluster <dsn> { node <name>; schema <name>; fallback_after <duration> }
//	}
func parseGlobal(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("leadproxy: global options given twice; put everything in one block")
	}
	app := new(App)
	d.Next() // "leadproxy"
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "storage":
			if err := crm.SingleArg(d, &app.Storage); err != nil {
				return nil, err
			}
		case "retry_for", "retention", "dedup_window":
			var s string
			if err := crm.SingleArg(d, &s); err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil || dur <= 0 {
				return nil, d.Errf("%s: %q is not a positive duration (like 72h or 30d)", opt, s)
			}
			*map[string]*caddy.Duration{"retry_for": &app.RetryFor, "retention": &app.Retention, "dedup_window": &app.DedupWindow}[opt] = caddy.Duration(dur)
		case "marker_key":
			if err := crm.SingleArg(d, &app.MarkerKey); err != nil {
				return nil, err
			}
			if !strings.Contains(app.MarkerKey, "{") {
				return nil, d.Err("marker_key: give the key through a placeholder, like {env.LEADPROXY_MARKER_KEY}, so the config never holds it")
			}
		case "timezone":
			if err := crm.SingleArg(d, &app.Timezone); err != nil {
				return nil, err
			}
			if _, err := loadTimezone(app.Timezone); err != nil {
				return nil, d.Errf("%v", err)
			}
		case "visits":
			o, err := parseVisitOptions(d)
			if err != nil {
				return nil, err
			}
			app.Visits = o
		case "max_store", "leads_per_client", "leads_per_site":
			if err := parseBudget(d, app, opt); err != nil {
				return nil, err
			}
		case "destination":
			if !d.NextArg() {
				return nil, d.Err("destination: want <name> <type> { ... }")
			}
			name := d.Val()
			if !d.NextArg() {
				return nil, d.Errf("destination %s: missing type (one of %s)", name, strings.Join(destinationTypes(), ", "))
			}
			typ := d.Val()
			if _, dup := app.DestinationsRaw[name]; dup {
				return nil, d.Errf("destination %q defined twice", name)
			}
			modID := crm.Namespace + "." + typ
			if _, err := caddy.GetModule(modID); err != nil {
				return nil, d.Errf("destination %s: unknown type %q (one of %s)", name, typ, strings.Join(destinationTypes(), ", "))
			}
			unm, err := caddyfile.UnmarshalModule(d, modID)
			if err != nil {
				return nil, err
			}
			if app.DestinationsRaw == nil {
				app.DestinationsRaw = map[string]json.RawMessage{}
			}
			app.DestinationsRaw[name] = caddyconfig.JSONModuleObject(unm, "type", typ, nil)
		case "cluster":
			if app.Cluster != nil {
				return nil, d.Err("cluster given twice; one cluster per node")
			}
			c, err := parseCluster(d)
			if err != nil {
				return nil, err
			}
			app.Cluster = c
		default:
			return nil, d.Errf("leadproxy: unknown global option %q (want storage, retry_for, retention, dedup_window, timezone, visits, max_store, leads_per_client, leads_per_site, marker_key, destination, cluster)", opt)
		}
	}
	return httpcaddyfile.App{Name: "leadproxy", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseBudget reads max_store <size>|off, leads_per_client <n>|off or
// leads_per_site <n>|off into app (off is stored as -1).
func parseBudget(d *caddyfile.Dispenser, app *App, opt string) error {
	var s string
	if err := crm.SingleArg(d, &s); err != nil {
		return err
	}
	if opt == "max_store" {
		n, err := humanize.ParseBytes(s)
		switch {
		case s == "off":
			app.MaxStore = -1
		case err != nil || n == 0 || n > 1<<62:
			return d.Errf("max_store: %q is not a size (like 1GB) or off", s)
		default:
			app.MaxStore = int64(n)
		}
		return nil
	}
	n, err := strconv.Atoi(s)
	switch {
	case s == "off":
		n = -1
	case err != nil || n <= 0:
		return d.Errf("%s: %q is not a positive number of leads a minute, or off", opt, s)
	}
	if opt == "leads_per_client" {
		app.LeadsPerClient = n
	} else {
		app.LeadsPerSite = n
	}
	return nil
}

// destinationTypes lists the registered destination types.
func destinationTypes() []string {
	var out []string
	for _, m := range caddy.GetModules(crm.Namespace) {
		out = append(out, m.ID.Name())
	}
	sort.Strings(out)
	return out
}

// globalDestinations returns the destination names of the global block,
// so the handler's send_to can be checked with its file and line.
func globalDestinations(h httpcaddyfile.Helper) (map[string]bool, bool) {
	opt, ok := h.Option("leadproxy").(httpcaddyfile.App)
	if !ok {
		return nil, false
	}
	var app App
	if err := json.Unmarshal(opt.Value, &app); err != nil {
		return nil, false
	}
	names := map[string]bool{}
	for n := range app.DestinationsRaw {
		names[n] = true
	}
	return names, true
}

func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hd := new(Handler)
	dests, _ := globalDestinations(h)
	if dests == nil {
		dests = map[string]bool{}
	}
	hd.knownDests = dests
	err := hd.UnmarshalCaddyfile(h.Dispenser)
	return hd, err
}

// UnmarshalCaddyfile parses the site handler:
//
//	leadproxy {
//		prefix  /_leadproxy
//		send_to <dest>...
//		inject  on|off
//		visits  on|off
//		api_key <key>
//		auto    on|off
//		max_body <size>
//		max_upload <size>
//		phone_region <CC>
//		charset <fallback charset>
//		dry_run [on|off]
//		form "<title>" { ... }
//	}
func (hd *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "leadproxy"
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "prefix":
			if err := crm.SingleArg(d, &hd.Prefix); err != nil {
				return err
			}
			if !strings.HasPrefix(hd.Prefix, "/") || strings.HasSuffix(hd.Prefix, "/") || len(hd.Prefix) < 2 {
				return d.Errf("prefix %q: want a path like /_leadproxy (leading /, no trailing /)", hd.Prefix)
			}
		case "send_to":
			names := d.RemainingArgs()
			if err := hd.checkSendTo(d, names); err != nil {
				return err
			}
			hd.SendTo = names
		case "inject", "auto", "visits":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			switch opt {
			case "inject":
				hd.Inject = &on
			case "visits":
				hd.Visits = &on
			default:
				hd.Auto = on
			}
		case "api_key":
			if err := crm.SingleArg(d, &hd.APIKey); err != nil {
				return err
			}
		case "max_body", "max_upload":
			var s string
			if err := crm.SingleArg(d, &s); err != nil {
				return err
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n == 0 {
				return d.Errf("%s: %q is not a size (like 1MB)", opt, s)
			}
			if opt == "max_body" {
				hd.MaxBody = int64(n)
			} else {
				hd.MaxUpload = int64(n)
			}
		case "phone_region":
			if err := crm.SingleArg(d, &hd.PhoneRegion); err != nil {
				return err
			}
			hd.PhoneRegion = strings.ToUpper(hd.PhoneRegion)
			if err := lead.CheckRegion(hd.PhoneRegion); err != nil {
				return d.Errf("%v", err)
			}
		case "charset":
			if err := crm.SingleArg(d, &hd.Charset); err != nil {
				return err
			}
			if err := intercept.CheckCharset(hd.Charset); err != nil {
				return d.Errf("%v", err)
			}
		case "dry_run":
			on, err := parseSwitch(d)
			if err != nil {
				return err
			}
			hd.DryRun = on
		case "audit":
			o, err := parseAudit(d)
			if err != nil {
				return err
			}
			hd.Audit = o
		case "form":
			rule, err := hd.parseForm(d)
			if err != nil {
				return err
			}
			for _, r := range hd.Forms {
				if r.Title == rule.Title {
					return d.Errf("form %q defined twice: titles name leads and must be unique", rule.Title)
				}
			}
			hd.Forms = append(hd.Forms, rule)
		case "destination":
			return d.Err(errDestinationInSite)
		default:
			return d.Errf("leadproxy: unknown option %q (want prefix, send_to, inject, visits, api_key, auto, max_body, max_upload, phone_region, charset, audit, dry_run, form)", opt)
		}
	}
	return nil
}

// checkSendTo rejects an empty list and names the global block lacks.
func (hd *Handler) checkSendTo(d *caddyfile.Dispenser, names []string) error {
	if len(names) == 0 {
		return d.Err("send_to: name at least one destination")
	}
	for _, n := range names {
		if hd.knownDests != nil && !hd.knownDests[n] {
			known := make([]string, 0, len(hd.knownDests))
			for k := range hd.knownDests {
				known = append(known, k)
			}
			sort.Strings(known)
			if len(known) == 0 {
				return d.Errf("send_to: unknown destination %q: the global leadproxy block defines none", n)
			}
			return d.Errf("send_to: unknown destination %q (defined: %s)", n, strings.Join(known, ", "))
		}
	}
	return nil
}

// parseSwitch reads an option that is on when given alone: `dry_run`,
// `dry_run on`, `dry_run off`.
func parseSwitch(d *caddyfile.Dispenser) (bool, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	switch {
	case len(args) == 0:
		return true, nil
	case len(args) == 1 && (args[0] == "on" || args[0] == "off"):
		return args[0] == "on", nil
	}
	return false, d.Errf("%s: want %s, %s on or %s off", opt, opt, opt, opt)
}

func parseOnOff(d *caddyfile.Dispenser) (bool, error) {
	opt := d.Val()
	var v string
	if err := crm.SingleArg(d, &v); err != nil {
		return false, err
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s: want on or off, got %q", opt, v)
}

// parseForm parses one form block. Each error names the line at fault.
func (hd *Handler) parseForm(d *caddyfile.Dispenser) (*intercept.Rule, error) {
	if !d.NextArg() {
		return nil, d.Err(`form: want form "<title>" { ... }`)
	}
	r := &intercept.Rule{Title: d.Val()}
	if d.NextArg() {
		return nil, d.Errf("form %q: one title expected, got also %q (quote titles with spaces)", r.Title, d.Val())
	}
	line := d.Line()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		args := d.RemainingArgs()
		switch opt {
		case "submit", "click", "post":
			if len(args) == 0 {
				// "submit #form" reads as a comment: # starts one in a Caddyfile.
				return nil, d.Errf("form %q: %s needs a value; quote a selector that starts with # (%s \"#contact-form\"), a bare # starts a Caddyfile comment", r.Title, opt, opt)
			}
			if len(args) != 1 {
				return nil, d.Errf("form %q: %s takes one value (quote a selector with spaces)", r.Title, opt)
			}
			v := args[0]
			switch opt {
			case "submit":
				r.Submit = v
			case "click":
				r.Click = v
			case "post":
				r.Post = v
			}
			probe := intercept.Rule{Title: r.Title, Submit: r.Submit, Click: r.Click, Post: r.Post}
			if err := probe.Validate(); err != nil {
				return nil, d.Err(err.Error())
			}
		case "require":
			if len(args) == 0 {
				return nil, d.Errf("form %q: require: name at least one field", r.Title)
			}
			r.Require = append(r.Require, args...)
		case "name", "phone", "email", "comment":
			src, err := intercept.ParseSource(args)
			if err != nil {
				return nil, d.Errf("form %q: %s: %v", r.Title, opt, err)
			}
			*map[string]**intercept.Source{"name": &r.Name, "phone": &r.Phone, "email": &r.Email, "comment": &r.Comment}[opt] = &src
		case "extra", "crm":
			if len(args) < 1 {
				return nil, d.Errf("form %q: %s: want %s <label> <source>", r.Title, opt, opt)
			}
			src, err := intercept.ParseSource(args[1:])
			if err != nil {
				return nil, d.Errf("form %q: %s %q: %v", r.Title, opt, args[0], err)
			}
			f := intercept.Labeled{Label: args[0], Source: src}
			if opt == "extra" {
				r.Extra = append(r.Extra, f)
			} else {
				r.CRM = append(r.CRM, f)
			}
		case "send_to":
			if err := hd.checkSendTo(d, args); err != nil {
				return nil, err
			}
			r.SendTo = args
		case "allow_no_contact":
			if len(args) != 0 {
				return nil, d.ArgErr()
			}
			r.AllowNoContact = true
		case "dry_run":
			on := true
			switch {
			case len(args) == 1 && (args[0] == "on" || args[0] == "off"):
				on = args[0] == "on"
			case len(args) != 0:
				return nil, d.Errf("form %q: dry_run: want dry_run, dry_run on or dry_run off", r.Title)
			}
			r.DryRun = &on
		default:
			return nil, d.Errf("form %q: unknown option %q (want submit, click, post, require, name, phone, email, comment, extra, crm, send_to, allow_no_contact, dry_run)", r.Title, opt)
		}
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%v, at %s:%d", err, d.File(), line)
	}
	return r, nil
}
