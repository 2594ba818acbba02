package crm

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Kind is how an option's Caddyfile arguments are read into its target.
type Kind int

const (
	Text       Kind = iota // one value → *string
	SecretText             // one value → *string; {env.X} placeholders resolved at Provision
	ID                     // one positive number → *int64 or *int
	List                   // one or more values, each a comma list → *[]string; repeatable
	Pairs                  // <key> <value> → *map[string]string; repeatable, a key once
	Switch                 // on|off → **bool
	Duration               // a Caddy duration → *caddy.Duration
)

var kindNames = [...]string{"string", "secret", "id", "list", "pairs", "on|off", "duration"}

func (k Kind) String() string { return kindNames[k] }

// Option declares one option of a destination's Caddyfile block: the one
// place its name, target, kind, requiredness, default and doc are written.
// Spec.Parse reads the block from these declarations, Spec.Resolve checks
// and resolves them at Provision, and docs/destinations.md's tables are
// checked against them by a test.
type Option struct {
	Name   string
	Kind   Kind
	Target any // a pointer into the config struct, of the kind's type
	// Into, for a SecretText, receives the resolved value at Provision: the
	// config keeps the placeholder, never the secret.
	Into     *string
	Required bool   // the block (or JSON config) must set it
	Inline   bool   // may also be given right after the type: `destination x bitrix24 <url> {`
	Default  string // what applies when unset, for the docs ("" = nothing)
	Doc      string // what the value is, short: "a long-lived token of a private integration"
	// Shape is the arguments as the "want ..." error gives them: "<NAME> <value>".
	Shape string
	// Check, if set, checks and normalises one value (for Pairs: the key).
	Check func(string) (string, error)
}

// Spec is one destination type's block: its own options, and the shared
// base_url, rate and timeout of Common. An Option of Options named base_url
// (or rate, timeout) replaces the shared one's doc, default and
// requiredness and fixes its place in the "want ..." list.
type Spec struct {
	Type    string // the module name: "amocrm"
	Common  *Common
	Options []Option
	// IDName names an id in errors: "an amoCRM id".
	IDName string
	// Check, if set, reports a combination of options one Option cannot
	// say ("token, or login and password"); has tells whether an option is
	// set. Parse runs it at the block's end (its error gets the block's
	// line; a placeholder counts as set), Resolve after resolving; both
	// before the Required checks.
	Check func(has func(name string) bool) error
}

// All is the block's options in order: the type's own, then those of
// base_url, rate and timeout the type does not redeclare.
func (s Spec) All() []Option {
	out := make([]Option, 0, len(s.Options)+3)
	seen := map[string]bool{}
	common := s.commonOptions()
	for _, o := range s.Options {
		if c, ok := common[o.Name]; ok {
			o.Kind, o.Target, o.Check = c.Kind, c.Target, c.Check
		}
		seen[o.Name] = true
		out = append(out, o)
	}
	for _, name := range []string{"base_url", "rate", "timeout"} {
		if !seen[name] {
			out = append(out, common[name])
		}
	}
	return out
}

func (s Spec) commonOptions() map[string]Option {
	c := s.Common
	if c == nil {
		c = new(Common)
	}
	return map[string]Option{
		"base_url": {Name: "base_url", Kind: SecretText, Target: &c.BaseURL, Doc: "the API's address"},
		"rate": {Name: "rate", Kind: Text, Target: &c.Rate, Default: "the CRM's documented limit", Doc: "<n>/<duration>, like 7/1s",
			Check: func(v string) (string, error) { _, _, err := ParseRate(v); return v, err }},
		"timeout": {Name: "timeout", Kind: Duration, Target: &c.Timeout, Default: "30s", Doc: "one delivery attempt"},
	}
}

// Names lists the options, for the "want ..." of an unknown option.
func (s Spec) Names() []string {
	var out []string
	for _, o := range s.All() {
		out = append(out, o.Name)
	}
	return out
}

// Parse reads the block at d, whose current token is before the type name:
// inline arguments, each option once (List and Pairs may repeat), then the
// required ones. Every error names the file and line; a missing option names
// the line of the block's type.
func (s Spec) Parse(d *caddyfile.Dispenser) error {
	d.Next() // type name
	start := *d
	opts := s.All()
	byName := map[string]*Option{}
	for i := range opts {
		byName[opts[i].Name] = &opts[i]
	}
	set := map[string]int{} // option → line it was given on
	var inline *Option
	for i := range opts {
		if opts[i].Inline {
			inline = &opts[i]
		}
	}
	if d.NextArg() {
		if inline == nil {
			return d.Errf("%s: unexpected argument %q; options go in the block", s.Type, d.Val())
		}
		if err := s.read(d, inline, []string{d.Val()}); err != nil {
			return err
		}
		set[inline.Name] = d.Line()
		if d.NextArg() {
			return d.Errf("%s: unexpected argument %q; options go in the block", s.Type, d.Val())
		}
	}
	prev := ""
	for d.NextBlock(0) {
		name := d.Val()
		o := byName[name]
		if name == "{" && prev != "" {
			return d.Errf("%s: takes no block; its value goes on its line", prev)
		}
		prev = name
		if o == nil {
			return d.Errf("%s: unknown option %q (want %s)", s.Type, name, strings.Join(s.Names(), ", "))
		}
		if line, dup := set[name]; dup && o.Kind != List && o.Kind != Pairs {
			return d.Errf("%s: given twice (first on line %d)", name, line)
		}
		set[name] = d.Line()
		if err := s.read(d, o, d.RemainingArgs()); err != nil {
			return err
		}
	}
	if err := s.check(func(name string) bool { _, ok := set[name]; return ok }); err != nil {
		return start.WrapErr(err)
	}
	for _, o := range opts {
		if _, ok := set[o.Name]; o.Required && !ok {
			return start.Err(s.missing(o))
		}
	}
	return nil
}

func (s Spec) missing(o Option) string {
	msg := s.Type + ": " + o.Name + " is required"
	if o.Doc != "" {
		msg += " (" + o.Doc + ")"
	}
	return msg
}

// read stores one option line's arguments into its target.
func (s Spec) read(d *caddyfile.Dispenser, o *Option, args []string) error {
	check := func(v string) (string, error) {
		if o.Check == nil {
			return v, nil
		}
		out, err := o.Check(v)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, o.Name+" ") && !strings.HasPrefix(msg, o.Name+":") {
				msg = o.Name + ": " + msg
			}
			return "", d.Err(msg)
		}
		return out, nil
	}
	switch o.Kind {
	case List:
		if len(args) == 0 {
			return d.Errf("%s: missing value", o.Name)
		}
		dst := o.Target.(*[]string)
		for _, a := range args {
			// "tags a b" and `tags "a, b"` both read as two.
			for _, v := range strings.Split(a, ",") {
				if v, err := check(v); err != nil {
					return err
				} else if v = strings.TrimSpace(v); v != "" {
					*dst = append(*dst, v)
				}
			}
		}
		return nil
	case Pairs:
		if len(args) != 2 {
			return d.Errf("%s: want %s", o.Name, o.Shape)
		}
		key, err := check(args[0])
		if err != nil {
			return err
		}
		dst := o.Target.(*map[string]string)
		if *dst == nil {
			*dst = map[string]string{}
		}
		if _, dup := (*dst)[key]; dup {
			return d.Errf("%s: %s given twice", o.Name, key)
		}
		(*dst)[key] = args[1]
		return nil
	}
	if len(args) == 0 {
		return d.Errf("%s: missing value", o.Name)
	}
	if len(args) > 1 {
		return d.Errf("%s: one value expected, got also %q", o.Name, args[1])
	}
	v, err := check(args[0])
	if err != nil {
		return err
	}
	switch o.Kind {
	case Text, SecretText:
		*o.Target.(*string) = v
	case ID:
		n, err := strconv.ParseInt(v, 10, 64)
		switch t := o.Target.(type) {
		case *int64:
			if err == nil && n > 0 {
				*t = n
				return nil
			}
		case *int:
			if err == nil && n > 0 && int64(int(n)) == n {
				*t = int(n)
				return nil
			}
		}
		what := s.IDName
		if what == "" {
			what = "an id"
		}
		return d.Errf("%s: %q is not %s (a positive number)", o.Name, v, what)
	case Switch:
		if v != "on" && v != "off" {
			return d.Errf("%s: want on or off, got %q", o.Name, v)
		}
		on := v == "on"
		*o.Target.(**bool) = &on
	case Duration:
		dur, err := caddy.ParseDuration(v)
		if err != nil {
			return d.Errf("%s: %v", o.Name, err)
		}
		*o.Target.(*caddy.Duration) = caddy.Duration(dur)
	}
	return nil
}

// Resolve is the Provision half of the table, for configs from the
// Caddyfile and JSON alike: it resolves the placeholders of every
// SecretText option into its Into (the config keeps the placeholder), names
// an {env.X} whose variable is unset when the value comes out empty, and
// reports a required option that is missing. Errors start with the type.
func (s Spec) Resolve() error {
	opts := s.All()
	has := map[string]bool{}
	for _, o := range opts {
		target := o.Target
		if o.Kind == SecretText {
			v, err := ResolveValue(*o.Target.(*string))
			if err != nil {
				return fmt.Errorf("%s: %s: %w", s.Type, o.Name, err)
			}
			if o.Into != nil {
				*o.Into = v
				target = o.Into
			}
		}
		has[o.Name] = !isZero(target)
	}
	if err := s.check(func(name string) bool { return has[name] }); err != nil {
		return err
	}
	for _, o := range opts {
		if o.Required && !has[o.Name] {
			return errors.New(s.missing(o))
		}
	}
	return nil
}

func (s Spec) check(has func(string) bool) error {
	if s.Check == nil {
		return nil
	}
	if err := s.Check(has); err != nil {
		return fmt.Errorf("%s: %w", s.Type, err)
	}
	return nil
}

func isZero(target any) bool {
	switch t := target.(type) {
	case *string:
		return strings.TrimSpace(*t) == ""
	case *int64:
		return *t == 0
	case *int:
		return *t == 0
	case *[]string:
		return len(*t) == 0
	case *map[string]string:
		return len(*t) == 0
	case **bool:
		return *t == nil
	case *caddy.Duration:
		return *t == 0
	}
	return false
}

var envPlaceholder = regexp.MustCompile(`\{env\.([^{}]+)\}`)

// ResolveValue resolves the placeholders of a config value, such as
// {env.AMOCRM_TOKEN}. A value that comes out empty while an {env.X} in it
// names an unset variable is an error naming that variable, rather than a
// later "is required".
func ResolveValue(s string) (string, error) {
	if !strings.Contains(s, "{") {
		return s, nil
	}
	out := caddy.NewReplacer().ReplaceAll(s, "")
	if strings.TrimSpace(out) == "" {
		for _, m := range envPlaceholder.FindAllStringSubmatch(s, -1) {
			if v, ok := os.LookupEnv(m[1]); !ok || strings.TrimSpace(v) == "" {
				return "", fmt.Errorf("environment variable %s is not set (from %s)", m[1], m[0])
			}
		}
	}
	return out, nil
}
