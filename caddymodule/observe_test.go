package caddymodule

// Observability: spans under Caddy's `tracing` directive (the real binary
// exporting OTLP/HTTP to a receiver in this test, which keeps the spans in
// memory), the span wiring in process with the SDK's in-memory exporter,
// the Prometheus metrics on the admin endpoint across a reload, and what
// the default log level says about a lead.

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/leadproxy/leadproxy/lead"
)

// obsSite has a post rule, the Roistat API and a webhook destination at
// {{HOOK}}; {{TRACING}} and {{GLOBAL}} add Caddy's tracing and global options.
const obsSite = `{
	admin {{ADMIN}}
	{{GLOBAL}}
	leadproxy {
		storage {{STORAGE}}
		destination hook webhook {
			url {{HOOK}}
			secret {env.TEST_WEBHOOK_SECRET}
		}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	{{TRACING}}
	leadproxy {
		api_key obs-key
		form "Обратный звонок" {
			post    /callback
			require phone
		}
		{{FORMS}}
	}
	reverse_proxy {{UPSTREAM}}
}
`

// obsHook is the destination: it answers its first n requests with a 503
// that echoes the lead's phone (as CRMs echo invalid values), then deal ids.
type obsHook struct {
	*httptest.Server
	failFirst, deals atomic.Int64
}

func newObsHook(t *testing.T, failFirst int) *obsHook {
	h := &obsHook{}
	h.failFirst.Store(int64(failFirst))
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		phone := regexp.MustCompile(`"phone":"([^"]*)"`).FindSubmatch(body)
		if h.failFirst.Add(-1) >= 0 {
			http.Error(w, fmt.Sprintf("phone %s is not allowed", phone[1]), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"deal-%d"}`, h.deals.Add(1))
	}))
	t.Cleanup(h.Close)
	return h
}

func obsVars(up *upstream, hook *obsHook, extra map[string]string) map[string]string {
	v := map[string]string{"UPSTREAM": up.URL, "HOOK": hook.URL, "TRACING": "", "GLOBAL": "", "FORMS": ""}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

func obsPost(t *testing.T, c *caddyProc, form url.Values, header http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", c.URL("PORT_SITE")+"/callback", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noCompress.Do(req)
	dashExpect(t, resp, err, 200)
}

func obsOnlyLead(t *testing.T, c *caddyProc) lead.Lead {
	t.Helper()
	var list leadList
	c.AdminJSON("/leadproxy/leads", &list)
	if len(list.Leads) != 1 {
		t.Fatalf("%d leads, want 1", len(list.Leads))
	}
	return list.Leads[0]
}

// otlpSpan is a span as the receiver got it.
type otlpSpan struct {
	Name, TraceID, SpanID, Parent string
	Kind                          tracepb.Span_SpanKind
	Status                        *tracepb.Status
	Attrs                         map[string]string
}

// otlpReceiver is an OTLP/HTTP trace endpoint that keeps what it gets.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	o := &otlpReceiver{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", 400)
			return
		}
		o.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					sp := otlpSpan{Name: s.Name, TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
						Parent: hex.EncodeToString(s.ParentSpanId), Kind: s.Kind, Status: s.Status, Attrs: map[string]string{}}
					for _, a := range s.Attributes {
						sp.Attrs[a.Key] = anyValueString(a.Value)
					}
					o.spans = append(o.spans, sp)
				}
			}
		}
		o.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	t.Cleanup(o.Close)
	return o
}

func anyValueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, anyValueString(e))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.GetValue())
}

func (o *otlpReceiver) named(name string) []otlpSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []otlpSpan
	for _, s := range o.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestObserveTracingUnderCaddy: the binary with Caddy's `tracing`
// directive exports OTLP/HTTP (Caddy's own exporter setup, from the
// OTEL_* environment) to a receiver in this test. A form post with a
// browser's traceparent gives capture and store spans under Caddy's
// request span, in the browser's trace; the stored traceparent puts each
// delivery attempt (a failure, then a success) under the capture span.
func TestObserveTracingUnderCaddy(t *testing.T) {
	otlp := newOTLPReceiver(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.URL+"/v1/traces")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	t.Setenv("TEST_WEBHOOK_SECRET", dashSecret)
	up, hook := newUpstream(t), newObsHook(t, 1)
	c := startCaddy(t, obsSite, obsVars(up, hook, map[string]string{"TRACING": "tracing {\n\t\tspan leadproxy_site\n\t}"}))

	const browserTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	obsPost(t, c, url.Values{"name": {"Иван"}, "phone": {"+7 999 123-45-67"}},
		http.Header{"Traceparent": {"00-" + browserTrace + "-00f067aa0ba902b7-01"}})
	l := obsOnlyLead(t, c)
	waitFor(t, "the lead delivered after one failure", 60*time.Second, func() bool {
		if c.AdminJSON("/leadproxy/leads/"+l.ID, &l); l.Status() == lead.StatusDelivered {
			return true
		}
		// Retry now rather than after the backoff.
		if d := l.Delivery("hook"); d != nil && d.Status == lead.StatusRetrying {
			resp, err := http.Post(c.Admin+"/leadproxy/leads/"+l.ID+"/retry", "", nil)
			if err == nil {
				resp.Body.Close()
			}
		}
		return false
	})
	waitFor(t, "spans exported", 30*time.Second, func() bool {
		return len(otlp.named(spanDelivery)) == 2 && len(otlp.named(spanStore)) == 1
	})

	server, capture, store := otlp.named("leadproxy_site"), otlp.named(spanCapture), otlp.named(spanStore)
	var req otlpSpan
	for _, s := range server {
		if s.TraceID == browserTrace {
			req = s
		}
	}
	if req.SpanID == "" || len(capture) != 1 {
		t.Fatalf("request span %+v, capture spans %+v", req, capture)
	}
	cs, ss := capture[0], store[0]
	if cs.TraceID != browserTrace || cs.Parent != req.SpanID {
		t.Errorf("capture span not under Caddy's request span: %+v (request %s)", cs, req.SpanID)
	}
	if cs.Attrs["leadproxy.form"] != "Обратный звонок" || cs.Attrs["leadproxy.mechanism"] != "post" || cs.Attrs["leadproxy.lead_id"] != l.ID || cs.Attrs["url.path"] != "/callback" {
		t.Errorf("capture attributes %v", cs.Attrs)
	}
	if ss.TraceID != browserTrace || ss.Parent != cs.SpanID || ss.Attrs["leadproxy.lead_id"] != l.ID {
		t.Errorf("store span %+v, capture %s", ss, cs.SpanID)
	}
	if want := "00-" + browserTrace + "-" + cs.SpanID + "-01"; l.Traceparent != want {
		t.Errorf("stored traceparent %q, want %q", l.Traceparent, want)
	}
	outcomes := map[string]otlpSpan{}
	for _, d := range otlp.named(spanDelivery) {
		if d.TraceID != browserTrace || d.Parent != cs.SpanID || d.Kind != tracepb.Span_SPAN_KIND_CLIENT ||
			d.Attrs["leadproxy.destination"] != "hook" || d.Attrs["leadproxy.lead_id"] != l.ID {
			t.Errorf("delivery span not linked to the capture: %+v", d)
		}
		outcomes[d.Attrs["leadproxy.outcome"]] = d
	}
	if f := outcomes["retry"]; f.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || f.Status.GetMessage() != "delivery retry" || f.Attrs["http.response.status_code"] != "503" {
		t.Errorf("failed attempt span: %+v", f)
	}
	if ok := outcomes["delivered"]; ok.Attrs["leadproxy.crm_id"] != "deal-1" || ok.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("delivered attempt span: %+v", ok)
	}
	otlp.mu.Lock()
	defer otlp.mu.Unlock()
	for _, s := range otlp.spans {
		for k, v := range s.Attrs {
			if strings.Contains(v, "9991234567") || strings.Contains(v, "Иван") || strings.Contains(s.Status.GetMessage(), "9991234567") {
				t.Errorf("span %s carries the visitor's data in %s: %q", s.Name, k, v)
			}
		}
	}
}

// TestObserveSpansInProcess drives the hooks with the SDK's in-memory
// exporter: a request span as Caddy's tracing makes one, the capture and
// store spans under it, the traceparent on the lead, and delivery attempts
// as children of the capture span from the remembered provider, with their
// metrics and the dashboard's attempt records. Without a request span
// nothing is traced.
func TestObserveSpansInProcess(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { lastTracerProvider.Store(tracerProviderBox{}) })

	r := httptest.NewRequest("POST", "/contact", nil)
	reqCtx, reqSpan := tp.Tracer("caddy").Start(r.Context(), "handler", trace.WithSpanKind(trace.SpanKindServer))
	r = r.WithContext(reqCtx)
	l := &lead.Lead{Form: "Заявка", Mechanism: lead.MechSubmit, Phone: "+79991234567"}
	ctx, end := startCaptureSpan(r.Context(), r, l)
	_, endStore := startStoreSpan(ctx, []string{"amo"})
	l.ID = "01TESTLEAD"
	endStore(l, false, nil)
	end(nil)
	reqSpan.End()

	before := counterValue(deliveriesTotal.WithLabelValues("amo", outcomeFailed))
	_, endAttempt := observeDelivery(context.Background(), "amo", l)
	endAttempt("", lead.Permanent(422, "phone +79991234567 rejected"))
	_, endAttempt = observeDelivery(context.Background(), "amo", l)
	endAttempt("555", nil)

	spans := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		spans[s.Name] = append(spans[s.Name], s)
	}
	capture, store, attempts := spans[spanCapture], spans[spanStore], spans[spanDelivery]
	if len(capture) != 1 || len(store) != 1 || len(attempts) != 2 {
		t.Fatalf("spans: %v", spans)
	}
	if capture[0].Parent.SpanID() != reqSpan.SpanContext().SpanID() || store[0].Parent.SpanID() != capture[0].SpanContext.SpanID() {
		t.Error("capture not under the request, or store not under the capture")
	}
	if want := "00-" + capture[0].SpanContext.TraceID().String() + "-" + capture[0].SpanContext.SpanID().String() + "-01"; l.Traceparent != want {
		t.Errorf("traceparent %q, want %q", l.Traceparent, want)
	}
	for _, a := range attempts {
		if a.Parent.SpanID() != capture[0].SpanContext.SpanID() || a.Parent.TraceID() != reqSpan.SpanContext().TraceID() || !a.Parent.IsRemote() {
			t.Errorf("attempt %v not a child of the stored capture span", a.Parent)
		}
	}
	if attempts[0].Status.Description != "delivery failed" || strings.Contains(fmt.Sprint(attempts[0].Attributes, attempts[0].Events), "79991234567") {
		t.Errorf("failed attempt: %+v %+v", attempts[0].Status, attempts[0].Attributes)
	}
	if got := counterValue(deliveriesTotal.WithLabelValues("amo", outcomeFailed)); got != before+1 {
		t.Errorf("deliveries_total{amo,failed} %v, want %v", got, before+1)
	}

	// No request span: nothing traced, no traceparent.
	exp.Reset()
	plain := &lead.Lead{Form: "x"}
	r2 := httptest.NewRequest("POST", "/contact", nil)
	_, end2 := startCaptureSpan(r2.Context(), r2, plain)
	end2(nil)
	if plain.Traceparent != "" || len(exp.GetSpans()) != 0 {
		t.Errorf("traced without a request span: %q %v", plain.Traceparent, exp.GetSpans())
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// promSample reads one sample from the text exposition; ok is false when
// the series is absent.
func promSample(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

func scrape(t *testing.T, c *caddyProc) string {
	t.Helper()
	resp, err := http.Get(c.Admin + "/metrics")
	return dashExpect(t, resp, err, 200)
}

// TestMetricsSurviveReload scrapes the admin endpoint's /metrics of the
// real binary: every leadproxy metric is there with its exact name, and
// after a config reload the counts go on from where they were.
func TestMetricsSurviveReload(t *testing.T) {
	t.Setenv("TEST_WEBHOOK_SECRET", dashSecret)
	up, hook := newUpstream(t), newObsHook(t, 0)
	vars := obsVars(up, hook, nil)
	c := startCaddy(t, obsSite, vars)

	// One of each: a capture, its delivery, an injected page, a rejected report.
	obsPost(t, c, url.Values{"name": {"Анна"}, "phone": {"+7 999 765-43-21"}}, nil)
	resp, err := noCompress.Get(c.URL("PORT_SITE") + "/page")
	dashExpect(t, resp, err, 200)
	resp, err = noCompress.Get(c.URL("PORT_SITE") + "/_leadproxy/collect")
	dashExpect(t, resp, err, http.StatusMethodNotAllowed)
	l := obsOnlyLead(t, c)
	waitFor(t, "delivery", 30*time.Second, func() bool { c.AdminJSON("/leadproxy/leads/"+l.ID, &l); return l.Status() == lead.StatusDelivered })

	counters := map[string]float64{
		`leadproxy_leads_captured_total{form="Обратный звонок",mechanism="post"}`: 1,
		`leadproxy_deliveries_total{destination="hook",outcome="delivered"}`:      1,
		`leadproxy_deliveries_total{destination="hook",outcome="failed"}`:         0,
		`leadproxy_deliveries_total{destination="hook",outcome="retry"}`:          0,
		`leadproxy_delivery_duration_seconds_count{destination="hook"}`:           1,
		`leadproxy_collect_rejected_total{reason="method"}`:                       1,
	}
	const injected = `leadproxy_inject_total{result="injected"}`
	check := func(when string, bump map[string]float64) map[string]float64 {
		t.Helper()
		text := scrape(t, c)
		for _, name := range []string{"leadproxy_leads_captured_total", "leadproxy_deliveries_total", "leadproxy_queue_depth",
			"leadproxy_oldest_pending_seconds", "leadproxy_delivery_duration_seconds", "leadproxy_inject_total", "leadproxy_collect_rejected_total"} {
			if !strings.Contains(text, "# TYPE "+name+" ") {
				t.Errorf("%s: %s missing", when, name)
			}
		}
		got := map[string]float64{}
		for s, want := range counters {
			want += bump[s]
			if v, ok := promSample(text, s); !ok || v != want {
				t.Errorf("%s: %s = %v (present %v), want %v", when, s, v, ok, want)
			}
		}
		for _, s := range []string{injected, "leadproxy_queue_depth", "leadproxy_oldest_pending_seconds"} {
			v, ok := promSample(text, s)
			if !ok {
				t.Errorf("%s: %s absent", when, s)
			}
			got[s] = v
		}
		return got
	}
	first := check("before the reload", nil)
	if first[injected] < 1 || first["leadproxy_queue_depth"] != 0 || first["leadproxy_oldest_pending_seconds"] != 0 {
		t.Errorf("gauges and inject count: %v", first)
	}

	vars["FORMS"] = "form \"Заказ\" {\n\t\t\tpost /order\n\t\t\trequire phone\n\t\t}"
	if err := c.Reload(obsSite); err != nil {
		t.Fatal(err)
	}
	if again := check("after the reload", nil); again[injected] != first[injected] {
		t.Errorf("inject count %v after the reload, was %v", again[injected], first[injected])
	}
	if strings.Count(c.Logs(t), `"msg":"lead store ready"`) != 2 {
		t.Errorf("want two configs started (a real reload)")
	}

	// The new config's handlers count into the same series.
	obsPost(t, c, url.Values{"name": {"Борис"}, "phone": {"+7 999 765-43-22"}}, nil)
	waitFor(t, "second delivery", 30*time.Second, func() bool {
		v, _ := promSample(scrape(t, c), `leadproxy_deliveries_total{destination="hook",outcome="delivered"}`)
		return v == 2
	})
	check("after a capture on the new config", map[string]float64{
		`leadproxy_leads_captured_total{form="Обратный звонок",mechanism="post"}`: 1,
		`leadproxy_deliveries_total{destination="hook",outcome="delivered"}`:      1,
		`leadproxy_delivery_duration_seconds_count{destination="hook"}`:           1,
	})
	// Heads read again or matched: the new config's handler starts with an
	// empty cache, so the tokenizer reads /page once, then the cache answers.
	scans := func() [2]float64 {
		text := scrape(t, c)
		tok, _ := promSample(text, `leadproxy_inject_scans_total{source="tokenizer"}`)
		cached, _ := promSample(text, `leadproxy_inject_scans_total{source="cache"}`)
		return [2]float64{tok, cached}
	}
	before := scans()
	resp, err = noCompress.Get(c.URL("PORT_SITE") + "/page")
	dashExpect(t, resp, err, 200)
	resp, err = noCompress.Get(c.URL("PORT_SITE") + "/page") // the same head again: the cache answers
	dashExpect(t, resp, err, 200)
	if after := scans(); after[0]-before[0] != 1 || after[1]-before[1] != 1 {
		t.Errorf("page heads read by the tokenizer and the cache: %v → %v, want one more each", before, after)
	}
}

// TestObserveLogs: the log names each lead and its outcome, never the
// visitor's values (not even in a CRM's error text), at the default level
// and at `debug` alike.
func TestObserveLogs(t *testing.T) {
	t.Setenv("TEST_WEBHOOK_SECRET", dashSecret)
	values := []string{"Светлана", "9161112233", "svetlana@example.com", "Позвоните мне"}
	send := func(t *testing.T, c *caddyProc) lead.Lead {
		obsPost(t, c, url.Values{"name": {values[0]}, "phone": {"8 (916) 111-22-33"}, "email": {values[2]}, "comment": {values[3]}}, nil)
		resp, err := noCompress.Get(c.URL("PORT_SITE") + "/_leadproxy/api/proxy/1.0/leads/add?" +
			url.Values{"key": {"obs-key"}, "name": {values[0]}, "phone": {"+7 916 111-22-34"}, "email": {"api-" + values[2]}, "comment": {values[3]}}.Encode())
		dashExpect(t, resp, err, 200)
		var list leadList
		waitFor(t, "both delivered after a failure each", 60*time.Second, func() bool {
			c.AdminJSON("/leadproxy/leads", &list)
			done := len(list.Leads) == 2
			for _, l := range list.Leads {
				if l.Status() != lead.StatusDelivered {
					done = false
					if l.Status() == lead.StatusRetrying {
						resp, err := http.Post(c.Admin+"/leadproxy/leads/"+l.ID+"/retry", "", nil)
						if err == nil {
							resp.Body.Close()
						}
					}
				}
			}
			return done
		})
		return list.Leads[0]
	}

	t.Run("info", func(t *testing.T) {
		up, hook := newUpstream(t), newObsHook(t, 2)
		c := startCaddy(t, obsSite, obsVars(up, hook, nil))
		l := send(t, c)
		logs := c.Logs(t)
		for _, want := range []string{`"msg":"lead captured","id":"` + l.ID + `"`, `"msg":"lead delivered","lead":"` + l.ID + `"`, `"msg":"delivery attempt failed"`, `"http_status":503`} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %s", want)
			}
		}
		for _, v := range values {
			if strings.Contains(logs, v) {
				t.Errorf("the default log carries the visitor's %q", v)
			}
		}
	})

	t.Run("debug", func(t *testing.T) {
		up, hook := newUpstream(t), newObsHook(t, 2)
		c := startCaddy(t, obsSite, obsVars(up, hook, map[string]string{"GLOBAL": "debug"}))
		send(t, c)
		logs := c.Logs(t)
		if !strings.Contains(logs, `"level":"debug"`) || !strings.Contains(logs, `"msg":"delivery attempt failed"`) {
			t.Fatal("no debug lines, or no failed attempt: the test sees nothing")
		}
		for _, v := range append(values, "+79161112233", "is not allowed") {
			if strings.Contains(logs, v) {
				t.Errorf("the debug log carries %q", v)
			}
		}
	})
}
