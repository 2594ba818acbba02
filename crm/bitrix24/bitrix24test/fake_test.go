package bitrix24test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The fake takes what Bitrix24 takes: a form body in PHP bracket notation,
// the .json suffix or none, FIELDS or fields.
func TestFormAndQueryParams(t *testing.T) {
	f := New()
	defer f.Close()
	form := url.Values{
		"FIELDS[TITLE]":                {"Заявка"},
		"FIELDS[PHONE][0][VALUE]":      {"+79991234567"},
		"FIELDS[PHONE][0][VALUE_TYPE]": {"WORK"},
		"FIELDS[UF_CRM_1700000000]":    {"x"},
		"params[REGISTER_SONET_EVENT]": {"Y"},
	}
	resp, err := http.PostForm(f.WebhookURL()+"crm.lead.add", form)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Result int }
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 200 || out.Result == 0 {
		t.Fatalf("status %d result %d", resp.StatusCode, out.Result)
	}
	got := f.Leads()[0]
	if phones, types := got.Multi("PHONE"); got.Str("TITLE") != "Заявка" || len(phones) != 1 || phones[0] != "+79991234567" || types[0] != "WORK" {
		t.Fatalf("decoded %v", got)
	}

	resp, err = http.Get(f.WebhookURL() + "crm.contact.add.json?fields[NAME]=Ivan")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || f.Contacts()[0].Str("NAME") != "Ivan" {
		t.Fatalf("GET: status %d, %v", resp.StatusCode, f.Contacts())
	}
}

func TestRejects(t *testing.T) {
	f := New()
	defer f.Close()
	cases := []struct {
		path, body string
		status     int
		desc       string
	}{
		{"/rest/1/wrong/crm.lead.add.json", `{"fields":{}}`, 401, "Wrong authorization data"},
		{"/rest/1/" + f.Code + "/crm.lead.delete.json", `{"id":1}`, 404, "Method not found!"},
		{"/rest/1/" + f.Code + "/crm.lead.add.json", `{"fields":"TITLE"}`, 400, "Parameter 'fields' must be array."},
		{"/rest/1/" + f.Code + "/crm.lead.add.json", `{"fields":{"PHONE":"+79991234567"}}`, 400, "Field 'PHONE' must be array."},
		{"/rest/1/" + f.Code + "/crm.duplicate.findbycomm.json", `{"entity_type":"CONTACT","values":["x"]}`, 400, "Parameter 'type' is required."},
	}
	for _, c := range cases {
		resp, err := http.Post(f.URL+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.status || e.ErrorDescription != c.desc {
			t.Errorf("%s %s: %d %+v, want %d %q", c.path, c.body, resp.StatusCode, e, c.status, c.desc)
		}
	}
	if len(f.Leads()) != 0 {
		t.Fatal("a rejected call was recorded")
	}
}
