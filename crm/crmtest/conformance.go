package crmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

// Destination is what every destination type is: a Caddy guest module
// with a Caddyfile block declared by a crm.Spec, that provisions, sends
// and knows its CRM's rate.
type Destination interface {
	caddy.Module
	caddy.Provisioner
	caddyfile.Unmarshaler
	lead.Sender
	lead.Rated
	lead.Accounted
	Spec() crm.Spec
}

// Conformance describes one destination type to Run.
type Conformance struct {
	// New returns a zero config of the type.
	New func() Destination
	// Fake starts the type's fake server and returns the Caddyfile lines
	// that point a destination at it (every required option set), the
	// faults it renders, and how to stop it.
	Fake func() (lines string, faults *Faults, stop func())
	// Rate and Per are DefaultRate of the config of the fake's lines;
	// PerLead is how many requests one lead takes (a rate option counts
	// requests, so rate 5/1s gives 5 per PerLead seconds).
	Rate    int
	Per     time.Duration
	PerLead int
	// Lead returns a lead the fake accepts; default SampleLead.
	Lead func() *lead.Lead
	// NoFaults lists the faults of CommonFaults the vendor has no
	// answer for (a webhook answers any body 2xx as delivered).
	NoFaults []Fault
	// PreviewIDs are the example ids the type's preview answers carry,
	// where the fake's own ids may stand (PreviewMatches).
	PreviewIDs []string
	// OtherAccount returns the fake's lines changed to point at another
	// account of the vendor (another host, token or key): its Account()
	// must differ. SameAccount, if set, returns them changed in what does
	// not make another account (a pipeline, a second token of one
	// subdomain): its Account() must be the fake's. Required:
	// OtherAccount.
	OtherAccount, SameAccount func(lines string) string
}

// WithOption returns Caddyfile lines with option name's line set to
// "name value" (appended when the lines have no such option).
func WithOption(lines, name, value string) string {
	var out []string
	found := false
	for _, l := range strings.Split(lines, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			if !found {
				out = append(out, name+" "+value)
			}
			found = true
			continue
		}
		out = append(out, l)
	}
	if !found {
		out = append(out, name+" "+value)
	}
	return strings.Join(out, "\n")
}

// OptionValue is the value of option name in Caddyfile lines ("" if none).
func OptionValue(lines, name string) string {
	for _, l := range strings.Split(lines, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == name {
			return strings.Join(f[1:], " ")
		}
	}
	return ""
}

// account: lead.Accounted's key names the type, is the same for two
// destinations on one account, differs for another account, and shows no
// secret.
func account(t *testing.T, c Conformance, typ string) {
	lines, _, stop := c.Fake()
	defer stop()
	if c.OtherAccount == nil {
		t.Fatal("the conformance case sets no OtherAccount: every type says what another account of its vendor is")
	}
	key := func(lines string) string {
		t.Helper()
		d, ok := Provisioned(t, c, block(typ, lines)).(lead.Accounted)
		if !ok {
			t.Fatalf("%s does not implement lead.Accounted", typ)
		}
		return d.Account()
	}
	k := key(lines)
	if !strings.HasPrefix(k, typ+":") {
		t.Errorf("account key %q does not start with the type %q", k, typ+":")
	}
	for name, val := range secretLines(c, lines) {
		if name != "base_url" && len(val) > 3 && strings.Contains(k, val) {
			t.Errorf("account key %q shows the secret of %s", k, name)
		}
	}
	same := []string{WithOption(lines, "timeout", "7s"), WithOption(lines, "rate", "1/1s")}
	if c.SameAccount != nil {
		same = append(same, c.SameAccount(lines))
	}
	for _, s := range same {
		if got := key(s); got != k {
			t.Errorf("one account, two keys:\n%s\n -> %q\n%s\n -> %q", lines, k, s, got)
		}
	}
	other := c.OtherAccount(lines)
	if got := key(other); got == k {
		t.Errorf("another account, the same key %q:\n%s\n%s", k, lines, other)
	}
}

// SampleLead is a lead with every main field, as a form would make it.
func SampleLead() *lead.Lead {
	return &lead.Lead{
		ID:        lead.NewID(time.Now()),
		CreatedAt: time.Now(),
		Form:      "Обратный звонок",
		Title:     "Заявка с сайта: Обратный звонок",
		Name:      "Иван Петров",
		Phone:     "+7 (999) 123-45-67",
		Email:     "ivan@example.com",
		Comment:   "Перезвоните после 18:00",
		Visit: &lead.Visit{
			Page: "https://example.com/contacts",
			UTM:  map[string]string{"source": "yandex", "medium": "cpc", "campaign": "spring"},
		},
	}
}

// CommonFaults is the fault set every vendor answers, and whether each
// is permanent: what the queue does with it does not depend on the CRM.
// Vendor-specific faults (402, 403, 503 with a limit code) and messages
// stay in each type's own tests.
var CommonFaults = []struct {
	Fault     Fault
	Permanent bool
}{
	{Unauthorized, true},
	{Validation, true},
	{RateJSON, false},
	{RateHTML, false},
	{ServerError, false},
	{Unavailable, false},
	{Slow, false},
	{Garbage, false},
	{Reset, false},
}

// Run is the conformance suite: the same cases for every destination type.
func Run(t *testing.T, c Conformance) {
	if c.Lead == nil {
		c.Lead = SampleLead
	}
	if c.PerLead == 0 {
		c.PerLead = 1
	}
	typ := c.New().CaddyModule().ID.Name()
	t.Run("ModuleID", func(t *testing.T) {
		if id := string(c.New().CaddyModule().ID); id != crm.Namespace+"."+typ || c.New().Spec().Type != typ {
			t.Errorf("module %s, spec type %q", id, c.New().Spec().Type)
		}
	})
	t.Run("Spec", func(t *testing.T) { checkSpec(t, c.New()) })
	t.Run("DefaultRate", func(t *testing.T) { defaultRate(t, c, typ) })
	t.Run("CaddyfileRoundTrip", func(t *testing.T) { roundTrip(t, c, typ) })
	t.Run("CaddyfileRefusals", func(t *testing.T) { refusals(t, c, typ) })
	t.Run("ProvisionErrors", func(t *testing.T) { provisionErrors(t, c, typ) })
	t.Run("EnvPlaceholders", func(t *testing.T) { envPlaceholders(t, c, typ) })
	t.Run("NetworkErrorRetryableAndRedacted", func(t *testing.T) { networkError(t, c, typ) })
	t.Run("Faults", func(t *testing.T) { faults(t, c, typ) })
	t.Run("PreviewMatchesSend", func(t *testing.T) { previewMatchesSend(t, c, typ) })
	t.Run("Account", func(t *testing.T) { account(t, c, typ) })
}

// Parse reads a Caddyfile block into a new config of the type.
func Parse(c Conformance, block string) (Destination, error) {
	d := c.New()
	return d, d.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block))
}

// Provisioned parses block and provisions it.
func Provisioned(t testing.TB, c Conformance, block string) Destination {
	t.Helper()
	d, err := Parse(c, block)
	if err != nil {
		t.Fatalf("%s: %v", block, err)
	}
	if err := d.Provision(caddy.Context{}); err != nil {
		t.Fatalf("provision %s: %v", block, err)
	}
	return d
}

// ProvisionedAs parses block into d, a new config of its type, and
// provisions it: the set-up of a type's own tests.
func ProvisionedAs[T Destination](t testing.TB, d T, block string) T {
	t.Helper()
	if err := d.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block)); err != nil {
		t.Fatalf("%s: %v", block, err)
	}
	if err := d.Provision(caddy.Context{}); err != nil {
		t.Fatalf("provision %s: %v", block, err)
	}
	return d
}

// Send sends l through d, bounded in time.
func Send(d lead.Sender, l *lead.Lead) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return d.Send(ctx, l)
}

func send(d Destination, l *lead.Lead) (string, error) { return Send(d, l) }

// checkSpec: every option points into the config struct at a JSON field,
// has a kind whose type matches its target, and a unique name.
func checkSpec(t *testing.T, d Destination) {
	v := reflect.ValueOf(d).Elem()
	lo, hi := v.UnsafeAddr(), v.UnsafeAddr()+v.Type().Size()
	fields := jsonFields(v)
	seen := map[string]bool{}
	for _, o := range d.Spec().All() {
		if seen[o.Name] {
			t.Errorf("%s declared twice", o.Name)
		}
		seen[o.Name] = true
		p := reflect.ValueOf(o.Target)
		if p.Kind() != reflect.Pointer || p.IsNil() {
			t.Errorf("%s: target %T is not a pointer", o.Name, o.Target)
			continue
		}
		if a := p.Pointer(); a < lo || a >= hi {
			t.Errorf("%s: target is not a field of the config", o.Name)
		} else if name, ok := fields[a]; !ok {
			t.Errorf("%s: target is not a JSON field of the config", o.Name)
		} else if name != o.Name && name != o.Name+"s" { // utm_field → utm_fields, header → headers
			t.Errorf("%s: target is the JSON field %q", o.Name, name)
		}
		want := map[crm.Kind]string{crm.Text: "*string", crm.SecretText: "*string", crm.List: "*[]string",
			crm.Pairs: "*map[string]string", crm.Switch: "**bool", crm.Duration: "*caddy.Duration"}[o.Kind]
		got := fmt.Sprintf("%T", o.Target)
		if o.Kind == crm.ID {
			if got != "*int64" && got != "*int" {
				t.Errorf("%s: an id into %s", o.Name, got)
			}
		} else if got != want {
			t.Errorf("%s: a %s option into %s", o.Name, o.Kind, got)
		}
		if o.Kind == crm.Pairs && o.Shape == "" {
			t.Errorf("%s: a pairs option needs its Shape for the error", o.Name)
		}
	}
}

// jsonFields maps the address of every JSON field (embedded structs too)
// to its JSON name.
func jsonFields(v reflect.Value) map[uintptr]string {
	out := map[uintptr]string{}
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for a, n := range jsonFields(v.Field(i)) {
				out[a] = n
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "" && name != "-" {
			out[v.Field(i).UnsafeAddr()] = name
		}
	}
	return out
}

func block(typ, lines string) string { return typ + " {\n" + lines + "\n}" }

func defaultRate(t *testing.T, c Conformance, typ string) {
	lines, _, stop := c.Fake()
	defer stop()
	d := Provisioned(t, c, block(typ, lines))
	if n, per := d.DefaultRate(); n != c.Rate || per != c.Per {
		t.Errorf("DefaultRate = %d/%v, want %d/%v", n, per, c.Rate, c.Per)
	}
	d = Provisioned(t, c, Block(typ, lines, "rate 5/1s"))
	if n, per := d.DefaultRate(); n != 5 || per != time.Duration(c.PerLead)*time.Second {
		t.Errorf("with rate 5/1s: DefaultRate = %d/%v, want 5/%v", n, per, time.Duration(c.PerLead)*time.Second)
	}
}

// roundTrip: the Caddyfile block becomes JSON that reads back into the
// same config, and the config provisions and delivers.
func roundTrip(t *testing.T, c Conformance, typ string) {
	lines, _, stop := c.Fake()
	defer stop()
	d, err := Parse(c, block(typ, lines+"\ntimeout 20s"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	back := c.New()
	if err := json.Unmarshal(raw, back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if string(again) != string(raw) {
		t.Errorf("JSON round trip:\n %s\n %s", raw, again)
	}
	for _, l := range strings.Split(lines, "\n") {
		if f := strings.Fields(l); len(f) > 0 && !strings.Contains(string(raw), `"`+f[0]) {
			t.Errorf("option %s is not in the JSON %s", f[0], raw)
		}
	}
	if err := back.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if _, err := send(back, c.Lead()); err != nil {
		t.Errorf("send from the JSON config: %v", err)
	}
}

// refusals: what the one parser refuses, each with the file and line.
func refusals(t *testing.T, c Conformance, typ string) {
	lines, _, stop := c.Fake()
	defer stop()
	spec := c.New().Spec()
	type refusal struct{ in, want string }
	cases := []refusal{
		{typ + " a b c {\n" + lines + "\n}", "unexpected argument"},
		{block(typ, lines+"\ncolour red"), fmt.Sprintf("%s: unknown option %q (want %s)", typ, "colour", strings.Join(spec.Names(), ", "))},
	}
	for _, o := range spec.All() {
		bare := Block(typ, lines, o.Name)
		switch o.Kind {
		case crm.Pairs:
			cases = append(cases, refusal{bare, o.Name + ": want " + o.Shape})
		default:
			cases = append(cases, refusal{bare, o.Name + ": missing value"})
		}
		if o.Kind != crm.List && o.Kind != crm.Pairs {
			cases = append(cases, refusal{Block(typ, lines, o.Name+" a b"), o.Name + `: one value expected, got also "b"`})
		}
		if o.Kind == crm.ID {
			cases = append(cases, refusal{Block(typ, lines, o.Name+" -1"), o.Name + `: "-1" is not`})
		}
		if o.Required {
			var kept []string
			for _, l := range strings.Split(lines, "\n") {
				if f := strings.Fields(l); len(f) > 0 && f[0] != o.Name {
					kept = append(kept, l)
				}
			}
			cases = append(cases, refusal{"\n" + block(typ, strings.Join(kept, "\n")), o.Name + " is required"})
		}
	}
	for _, l := range strings.Split(lines, "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			cases = append(cases, refusal{block(typ, lines+"\n"+l), f[0] + ": given twice"})
		}
	}
	for _, r := range cases {
		_, err := Parse(c, r.in)
		if err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%q:\n err = %v\n want %q", r.in, err, r.want)
			continue
		}
		if !strings.Contains(err.Error(), ", at Testfile:") {
			t.Errorf("%q: %v names no file and line", r.in, err)
		}
		if strings.Contains(r.want, "is required") && !strings.HasSuffix(err.Error(), "Testfile:2") {
			t.Errorf("%q: %v: a missing option is reported at the block's line (2)", r.in, err)
		}
	}
}

// provisionErrors: a JSON config that lacks what the type requires fails
// Provision, with the type named first.
func provisionErrors(t *testing.T, c Conformance, typ string) {
	err := c.New().Provision(caddy.Context{})
	if err == nil || !strings.HasPrefix(err.Error(), typ+": ") || !strings.Contains(err.Error(), "required") {
		t.Errorf("zero config: err = %v, want %q... required", err, typ+": ")
	}
	lines, _, stop := c.Fake()
	defer stop()
	for _, o := range c.New().Spec().All() {
		if !o.Required {
			continue
		}
		d, err := Parse(c, block(typ, lines))
		if err != nil {
			t.Fatal(err)
		}
		unset(d, o)
		err = d.Provision(caddy.Context{})
		if err == nil || !strings.HasPrefix(err.Error(), typ+": ") || !strings.Contains(err.Error(), o.Name) {
			t.Errorf("without %s: err = %v", o.Name, err)
		}
	}
	bad := Block(typ, lines, "base_url ftp://example.com")
	if d, err := Parse(c, bad); err == nil {
		if err := d.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "base_url") {
			t.Errorf("ftp base_url: err = %v", err)
		}
	}
}

// unset clears the option o in the config d, through its Spec.
func unset(d Destination, o crm.Option) {
	for _, opt := range d.Spec().All() {
		if opt.Name == o.Name {
			p := reflect.ValueOf(opt.Target).Elem()
			p.Set(reflect.Zero(p.Type()))
		}
	}
}

// secretLines are the fake's lines of SecretText options, by name.
func secretLines(c Conformance, lines string) map[string]string {
	out := map[string]string{}
	kinds := map[string]crm.Kind{}
	for _, o := range c.New().Spec().All() {
		kinds[o.Name] = o.Kind
	}
	for _, l := range strings.Split(lines, "\n") {
		if f := strings.Fields(l); len(f) == 2 && kinds[f[0]] == crm.SecretText {
			out[f[0]] = f[1]
		}
	}
	return out
}

// envPlaceholders: every secret option reads {env.X}; the config keeps
// the placeholder; an unset X is named in the error.
func envPlaceholders(t *testing.T, c Conformance, typ string) {
	lines, _, stop := c.Fake()
	defer stop()
	secrets := secretLines(c, lines)
	if len(secrets) == 0 {
		t.Fatal("the fake's lines set no secret option")
	}
	var extra []string
	for name, val := range secrets {
		env := "LEADPROXY_CONFORMANCE_" + strings.ToUpper(name)
		t.Setenv(env, val)
		extra = append(extra, name+" {env."+env+"}")
	}
	d := Provisioned(t, c, Block(typ, lines, strings.Join(extra, "\n")))
	if _, err := send(d, c.Lead()); err != nil {
		t.Fatalf("placeholders not resolved: %v", err)
	}
	raw, _ := json.Marshal(d)
	for name, val := range secrets {
		if name != "base_url" && strings.Contains(string(raw), val) {
			t.Errorf("the config holds the secret of %s, not its placeholder: %s", name, raw)
		}
	}
	for name := range secrets {
		d, err := Parse(c, Block(typ, lines, name+" {env.LEADPROXY_CONFORMANCE_UNSET}"))
		if err != nil {
			t.Fatal(err)
		}
		err = d.Provision(caddy.Context{})
		want := typ + ": " + name + ": environment variable LEADPROXY_CONFORMANCE_UNSET is not set"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s from an unset variable: err = %v, want %q", name, err, want)
		}
	}
}

// networkError: a CRM that cannot be reached is retried, and the error
// (stored on the lead, shown on the dashboard) carries no secret.
func networkError(t *testing.T, c Conformance, typ string) {
	lines, _, stop := c.Fake()
	d := Provisioned(t, c, block(typ, lines))
	stop()
	_, err := send(d, c.Lead())
	if err == nil || lead.IsPermanent(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	for name, val := range secretLines(c, lines) {
		if name == "base_url" {
			continue
		}
		// A URL's secret is its path (a webhook's token, Bitrix24's code).
		if u, perr := url.Parse(val); perr == nil && u.Host != "" && len(u.Path) > 1 {
			val = u.Path
		}
		if strings.Contains(err.Error(), val) {
			t.Errorf("error shows %s: %v", name, err)
		}
	}
}

// faults: the common fault set is classified the same way everywhere.
func faults(t *testing.T, c Conformance, typ string) {
	lines, fs, stop := c.Fake()
	defer stop()
	fs.SlowFor = time.Minute // held until the client gives up
	d := Provisioned(t, c, Block(typ, lines, "timeout 500ms"))
	skip := map[Fault]bool{}
	for _, f := range c.NoFaults {
		skip[f] = true
	}
	for _, fc := range CommonFaults {
		if skip[fc.Fault] {
			continue
		}
		t.Run(string(fc.Fault), func(t *testing.T) {
			fs.Set(fc.Fault)
			defer fs.Set(None)
			_, err := send(d, c.Lead())
			var se *lead.SendError
			if err == nil || !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *lead.SendError", err)
			}
			if se.Permanent != fc.Permanent {
				t.Errorf("permanent = %v, want %v: %v", se.Permanent, fc.Permanent, err)
			}
		})
	}
	if _, err := send(d, c.Lead()); err != nil {
		t.Errorf("after the faults: %v", err)
	}
}
