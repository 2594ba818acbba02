package caddymodule

// The Roistat-compatible API through the real binary: Roistat's own PHP
// sample (the query string its http_build_query builds, byte for byte),
// POST as urlencoded, multipart and without a Content-Type, the key check,
// fields[...], client_fields[...], is_skip_sending, is_need_callback with
// callback_phone, fields[charset], and both answer formats.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/encoding/charmap"

	"github.com/leadproxy/leadproxy/lead"
)

// roiKey looks like a Roistat integration key: base64 with padding, which
// the query must carry percent-encoded.
const roiKey = "MTAxNTU6MTU2NDk6YmZiMWJiNmUxNWU3ZTFkYjk4YjBmNWE4NzNlODcxODI="

const roiSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		destination hook webhook {
			url {{HOOK}}
			secret {env.TEST_WEBHOOK_SECRET}
		}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		api_key {env.TEST_ROISTAT_KEY}
		max_body 64KB
	}
	respond "site" 200
}
http://127.0.0.1:{{PORT_NOKEY}} {
	leadproxy
	respond "site" 200
}
`

// roiPHPSample is what Roistat's manual sample sends, its array unchanged
// but for the key and the absent roistat_visit cookie:
//
//	$roistatData = array(
//	    'roistat' => isset($_COOKIE['roistat_visit']) ? $_COOKIE['roistat_visit'] : 'nocookie',
//	    'key'     => '<key>',
//	    'title'   => 'Название сделки',
//	    'comment' => 'Комментарий к сделке',
//	    'name'    => 'Имя клиента',
//	    'email'   => 'client@email.ru',
//	    'phone'   => '79999999999',
//	    'order_creation_method' => '',
//	    'is_need_callback' => '0',
//	    'callback_phone' => '<Номер для переадресации>',
//	    'sync'    => '0',
//	    'is_need_check_order_in_processing' => '1',
//	    'is_need_check_order_in_processing_append' => '1',
//	    'is_skip_sending' => '1',
//	    'fields'  => array(
//	        "charset" => "Windows-1251",
//	    ),
//	);
//	file_get_contents("https://cloud.roistat.com/api/proxy/1.0/leads/add?" . http_build_query($roistatData));
//
// http_build_query encodes like urlencode (RFC 1738: a space is "+",
// everything but letters, digits and -_. is %XX) and writes the nested
// array as fields%5Bcharset%5D. The PHP file is UTF-8.
const roiPHPSample = "roistat=nocookie" +
	"&key=MTAxNTU6MTU2NDk6YmZiMWJiNmUxNWU3ZTFkYjk4YjBmNWE4NzNlODcxODI%3D" +
	"&title=%D0%9D%D0%B0%D0%B7%D0%B2%D0%B0%D0%BD%D0%B8%D0%B5+%D1%81%D0%B4%D0%B5%D0%BB%D0%BA%D0%B8" +
	"&comment=%D0%9A%D0%BE%D0%BC%D0%BC%D0%B5%D0%BD%D1%82%D0%B0%D1%80%D0%B8%D0%B9+%D0%BA+%D1%81%D0%B4%D0%B5%D0%BB%D0%BA%D0%B5" +
	"&name=%D0%98%D0%BC%D1%8F+%D0%BA%D0%BB%D0%B8%D0%B5%D0%BD%D1%82%D0%B0" +
	"&email=client%40email.ru" +
	"&phone=79999999999" +
	"&order_creation_method=" +
	"&is_need_callback=0" +
	"&callback_phone=%3C%D0%9D%D0%BE%D0%BC%D0%B5%D1%80+%D0%B4%D0%BB%D1%8F+%D0%BF%D0%B5%D1%80%D0%B5%D0%B0%D0%B4%D1%80%D0%B5%D1%81%D0%B0%D1%86%D0%B8%D0%B8%3E" +
	"&sync=0" +
	"&is_need_check_order_in_processing=1" +
	"&is_need_check_order_in_processing_append=1" +
	"&is_skip_sending=1" +
	"&fields%5Bcharset%5D=Windows-1251"

// phpURLEncode is PHP's urlencode, to build the windows-1251 variant.
func phpURLEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// phpBuildQuery is http_build_query of a flat ordered array.
func phpBuildQuery(pairs ...string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		parts = append(parts, phpURLEncode(pairs[i])+"="+phpURLEncode(pairs[i+1]))
	}
	return strings.Join(parts, "&")
}

type roiAnswer struct {
	Status string            `json:"status"`
	Data   map[string]string `json:"data"`
	Error  string            `json:"error"`
}

type roiSetup struct {
	c    *caddyProc
	api  string
	mu   sync.Mutex
	sent map[string]int // lead id → deliveries received
}

func newRoiSetup(t *testing.T) *roiSetup {
	s := &roiSetup{sent: map[string]int{}}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct{ Data lead.Lead }
		json.NewDecoder(r.Body).Decode(&env)
		s.mu.Lock()
		s.sent[env.Data.ID]++
		s.mu.Unlock()
		w.WriteHeader(204)
	}))
	t.Cleanup(hook.Close)
	t.Setenv("TEST_WEBHOOK_SECRET", dashSecret)
	t.Setenv("TEST_ROISTAT_KEY", roiKey)
	s.c = startCaddy(t, roiSite, map[string]string{"HOOK": hook.URL})
	s.api = s.c.URL("PORT_SITE") + "/_leadproxy/api/proxy/1.0/leads/add"
	return s
}

// call sends a request and decodes the answer, which is JSON whatever the status.
func (s *roiSetup) call(t *testing.T, req *http.Request, wantStatus int) roiAnswer {
	t.Helper()
	resp, err := noCompress.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s: status %d, want %d: %s", req.URL.RawQuery, resp.StatusCode, wantStatus, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	var a roiAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	// Exactly Roistat's two shapes.
	var shape map[string]json.RawMessage
	json.Unmarshal(body, &shape)
	switch {
	case a.Status == "success" && len(shape) == 2 && len(a.Data) == 1 && a.Data["id"] != "":
	case a.Status == "error" && len(shape) == 2 && a.Error != "":
	default:
		t.Fatalf("answer %s is neither success nor error", body)
	}
	return a
}

func (s *roiSetup) get(t *testing.T, rawQuery string, wantStatus int) roiAnswer {
	t.Helper()
	req, _ := http.NewRequest("GET", s.api+"?"+rawQuery, nil)
	return s.call(t, req, wantStatus)
}

func (s *roiSetup) lead(t *testing.T, id string) lead.Lead {
	t.Helper()
	var l lead.Lead
	if code := s.c.AdminJSON("/leadproxy/leads/"+id, &l); code != 200 {
		t.Fatalf("lead %s: admin API %d", id, code)
	}
	return l
}

func TestRoistatAPIPHPSample(t *testing.T) {
	s := newRoiSetup(t)
	// The sample's query, as PHP builds it.
	built := phpBuildQuery("roistat", "nocookie", "key", roiKey, "title", "Название сделки", "comment", "Комментарий к сделке",
		"name", "Имя клиента", "email", "client@email.ru", "phone", "79999999999", "order_creation_method", "",
		"is_need_callback", "0", "callback_phone", "<Номер для переадресации>", "sync", "0",
		"is_need_check_order_in_processing", "1", "is_need_check_order_in_processing_append", "1", "is_skip_sending", "1",
		"fields[charset]", "Windows-1251")
	if built != roiPHPSample {
		t.Fatalf("phpBuildQuery disagrees with the literal:\n%s\n%s", built, roiPHPSample)
	}
	a := s.get(t, roiPHPSample, 200)
	if a.Status != "success" {
		t.Fatalf("%+v", a)
	}
	l := s.lead(t, a.Data["id"])
	want := lead.Lead{ID: a.Data["id"], CreatedAt: l.CreatedAt, Site: "127.0.0.1", Form: "api", Title: "Название сделки", Mechanism: lead.MechAPI,
		Name: "Имя клиента", Phone: "+79999999999", Email: "client@email.ru", Comment: "Комментарий к сделке",
		Fields: map[string]string{"sync": "0", "is_need_check_order_in_processing": "1", "is_need_check_order_in_processing_append": "1"}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("lead\n got %+v\nwant %+v", l, want)
	}
	if l.Status() != lead.StatusSkipped {
		t.Errorf("is_skip_sending=1: status %s, deliveries %+v", l.Status(), l.Deliveries)
	}

	// The same sample from a windows-1251 site, with the visit cookie and
	// sending on: fields[charset] decodes the values.
	cp := func(s string) string { b, _ := charmap.Windows1251.NewEncoder().String(s); return b }
	q := phpBuildQuery("roistat", "283741", "key", roiKey, "title", cp("Заявка с сайта"), "comment", cp("Перезвоните, пожалуйста"),
		"name", cp("Пётр Иванов"), "email", "petr@example.ru", "phone", "8 (916) 555-44-33", "is_need_callback", "1",
		"callback_phone", "+7 495 123-45-67", "is_skip_sending", "0", "fields[charset]", "Windows-1251", "fields[Источник]", "",
		"fields[UF_CRM_1425989455]", cp("Текст"), cp("client_fields[Город]"), cp("Москва"))
	a = s.get(t, q, 200)
	l = s.lead(t, a.Data["id"])
	if l.Title != "Заявка с сайта" || l.Name != "Пётр Иванов" || l.Comment != "Перезвоните, пожалуйста" || l.Phone != "+79165554433" ||
		l.Visit == nil || l.Visit.ID != "283741" || l.Callback == nil || l.Callback.Phone != "+74951234567" ||
		!reflect.DeepEqual(l.CRM, map[string]string{"UF_CRM_1425989455": "Текст", "Источник": ""}) ||
		!reflect.DeepEqual(l.Extra, map[string]string{"Город": "Москва"}) {
		t.Errorf("windows-1251 lead: %+v visit %+v callback %+v", l, l.Visit, l.Callback)
	}
	if len(l.Deliveries) != 1 || l.Deliveries[0].Destination != "hook" {
		t.Errorf("deliveries %+v", l.Deliveries)
	}
	waitFor(t, "the lead sent to the destination", 30*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.sent[l.ID] == 1
	})
}

func TestRoistatAPI(t *testing.T) {
	s := newRoiSetup(t)
	form := func(v url.Values) url.Values {
		if !v.Has("key") {
			v.Set("key", roiKey)
		}
		return v
	}
	post := func(ctype string, body []byte) *http.Request {
		req, _ := http.NewRequest("POST", s.api, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		return req
	}
	multipartBody := func(v url.Values) (string, []byte) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for k, vs := range v {
			for _, x := range vs {
				mw.WriteField(k, x)
			}
		}
		mw.Close()
		return mw.FormDataContentType(), b.Bytes()
	}

	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			name   string
			req    *http.Request
			status int
			msg    string
		}{
			{"no key", post("application/x-www-form-urlencoded", []byte("phone=79990000001")), 403, "invalid key"},
			{"wrong key", post("application/x-www-form-urlencoded", []byte("key=nope&phone=79990000001")), 403, "invalid key"},
			{"key only in a field", post("application/x-www-form-urlencoded", []byte("fields[key]="+url.QueryEscape(roiKey))), 403, "invalid key"},
			{"malformed", post("application/x-www-form-urlencoded", []byte("key="+url.QueryEscape(roiKey)+"&phone=%zz")), 400, "malformed parameters"},
			{"too large", post("application/x-www-form-urlencoded", []byte("key="+url.QueryEscape(roiKey)+"&comment="+strings.Repeat("a", 70<<10))), 413, "request too large"},
		}
		put, _ := http.NewRequest("PUT", s.api+"?key="+url.QueryEscape(roiKey), nil)
		cases = append(cases, struct {
			name   string
			req    *http.Request
			status int
			msg    string
		}{"PUT", put, 405, "use GET or POST"})
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if a := s.call(t, c.req, c.status); a.Status != "error" || a.Error != c.msg {
					t.Fatalf("%+v", a)
				}
			})
		}
		var list leadList
		s.c.AdminJSON("/leadproxy/leads", &list)
		if len(list.Leads) != 0 {
			t.Fatalf("refused calls stored %d leads", len(list.Leads))
		}
	})

	t.Run("no api_key: the site answers", func(t *testing.T) {
		resp, err := noCompress.Get(s.c.URL("PORT_NOKEY") + "/_leadproxy/api/proxy/1.0/leads/add?" + roiPHPSample)
		if body := dashExpect(t, resp, err, 200); body != "site" {
			t.Fatalf("body %q", body)
		}
	})

	full := url.Values{"title": {"Заказ звонка"}, "name": {"Ольга"}, "phone": {"+7 926 000-00-0X"}, "email": {"olga@example.com"}, "comment": {"после 18"},
		"roistat": {"99881"}, "is_need_callback": {"1"}, "fields[status_id]": {"123123"}, "fields[1276733]": {"Текст"},
		"fields[goods][0][uuid]": {"g-1"}, "client_fields[position]": {"CEO"}, "order_creation_method": {"api"}}
	cases := []struct {
		name string
		req  func(phone string) *http.Request
	}{
		{"POST urlencoded", func(phone string) *http.Request {
			v := form(cloneValues(full))
			v.Set("phone", phone)
			return post("application/x-www-form-urlencoded", []byte(v.Encode()))
		}},
		{"POST without Content-Type", func(phone string) *http.Request {
			v := form(cloneValues(full))
			v.Set("phone", phone)
			return post("", []byte(v.Encode()))
		}},
		{"POST multipart (curl with an array)", func(phone string) *http.Request {
			v := form(cloneValues(full))
			v.Set("phone", phone)
			return post(multipartBody(v))
		}},
		{"GET", func(phone string) *http.Request {
			v := form(cloneValues(full))
			v.Set("phone", phone)
			req, _ := http.NewRequest("GET", s.api+"?"+v.Encode(), nil)
			return req
		}},
		{"POST, key in the query", func(phone string) *http.Request {
			v := cloneValues(full)
			v.Set("phone", phone)
			req := post("application/x-www-form-urlencoded", []byte(v.Encode()))
			req.URL.RawQuery = "key=" + url.QueryEscape(roiKey)
			return req
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			phone := fmt.Sprintf("+7926000000%d", i)
			a := s.call(t, c.req(phone), 200)
			l := s.lead(t, a.Data["id"])
			if l.Title != "Заказ звонка" || l.Name != "Ольга" || l.Phone != phone || l.Email != "olga@example.com" || l.Comment != "после 18" ||
				l.Mechanism != lead.MechAPI || l.Visit == nil || l.Visit.ID != "99881" || l.Visit.IP != "" ||
				l.Callback == nil || l.Callback.Phone != phone ||
				!reflect.DeepEqual(l.CRM, map[string]string{"status_id": "123123", "1276733": "Текст", "goods[0][uuid]": "g-1"}) ||
				!reflect.DeepEqual(l.Extra, map[string]string{"position": "CEO"}) ||
				!reflect.DeepEqual(l.Fields, map[string]string{"order_creation_method": "api"}) {
				t.Errorf("lead %+v visit %+v callback %+v", l, l.Visit, l.Callback)
			}
			if _, kept := l.CRM["key"]; kept || strings.Contains(fmt.Sprint(l), roiKey) {
				t.Error("the key was kept on the lead")
			}
			if len(l.Deliveries) != 1 {
				t.Errorf("deliveries %+v", l.Deliveries)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		a := s.get(t, url.Values{"key": {roiKey}, "phone": {"89031112233"}, "is_need_callback": {"0"}, "callback_phone": {"+79990000000"}}.Encode(), 200)
		l := s.lead(t, a.Data["id"])
		if l.Title != "Заявка с сайта" || l.Callback != nil || l.Visit != nil || l.Phone != "+79031112233" {
			t.Errorf("%+v", l)
		}
	})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
