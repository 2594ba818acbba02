package moysklad

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

// This file maps a form's crm fields (Roistat's МойСклад list) onto the order.

// orderFields is what a lead's crm map says about the order.
type orderFields struct {
	order        CustomerOrder
	counterparty string // existing_counterparty_uuid
	ownerLogin   string // owner_uid that is a login, to look up
	notes        []string
}

// ref fields by crm key: the order field each fills and the entity type.
var refKeys = map[string]struct {
	typ string
	set func(o *CustomerOrder, r *Ref)
}{
	"state_uuid":                 {"state", func(o *CustomerOrder, r *Ref) { o.State = r }},
	"currency_uuid":              {"currency", func(o *CustomerOrder, r *Ref) { o.Rate = &Rate{Currency: r} }},
	"project_uuid":               {"project", func(o *CustomerOrder, r *Ref) { o.Project = r }},
	"contract_uuid":              {"contract", func(o *CustomerOrder, r *Ref) { o.Contract = r }},
	"existing_store_uuid":        {"store", func(o *CustomerOrder, r *Ref) { o.Store = r }},
	"existing_organization_uuid": {"organization", func(o *CustomerOrder, r *Ref) { o.Organization = r }},
}

// parseCRM reads a lead's crm fields. Malformed ids and field objects are
// permanent errors: MoySklad would refuse them on every attempt.
func parseCRM(m map[string]string) (*orderFields, error) {
	f := &orderFields{}
	for _, k := range lead.SortedKeys(m) {
		v := strings.TrimSpace(m[k])
		if v == "" {
			continue
		}
		if rk, ok := refKeys[k]; ok {
			if !IsUUID(v) {
				return nil, lead.Permanent(0, fmt.Sprintf("crm %s %q: want a UUID", k, v))
			}
			if rk.typ == "state" {
				rk.set(&f.order, orderMetaRef("states", "state", v))
			} else {
				rk.set(&f.order, EntityRef(rk.typ, v))
			}
			continue
		}
		switch k {
		case "existing_counterparty_uuid":
			if !IsUUID(v) {
				return nil, lead.Permanent(0, fmt.Sprintf("crm %s %q: want a UUID", k, v))
			}
			f.counterparty = v
		case "owner_uid":
			if IsUUID(v) {
				f.order.Owner = EntityRef("employee", v)
			} else {
				f.ownerLogin = v
			}
		case "existing_good_uuid":
			ps, err := parsePositions(v)
			if err != nil {
				return nil, lead.Permanent(0, "crm existing_good_uuid: "+err.Error())
			}
			f.order.Positions = ps
		default:
			if !strings.HasPrefix(v, "{") {
				f.notes = append(f.notes, k+": "+v)
				continue
			}
			a, err := parseAttribute(v)
			if err != nil {
				return nil, lead.Permanent(0, fmt.Sprintf("crm %s: %v", k, err))
			}
			f.order.Attributes = append(f.order.Attributes, a)
		}
	}
	return f, nil
}

// parsePositions reads Roistat's goods list: a JSON array of
// {uuid, count, discount, vat, sum} whose numbers may be strings; a single
// object or a bare UUID is taken as a list of one. "type" picks the
// assortment kind (product, service, variant, bundle); default product.
func parsePositions(v string) ([]Position, error) {
	var items []map[string]any
	switch {
	case IsUUID(v):
		items = []map[string]any{{"uuid": v}}
	case strings.HasPrefix(v, "{"):
		var one map[string]any
		if err := json.Unmarshal([]byte(v), &one); err != nil {
			return nil, errors.New("want a JSON array of {uuid, count, discount, vat, sum}")
		}
		items = []map[string]any{one}
	default:
		if err := json.Unmarshal([]byte(v), &items); err != nil {
			return nil, errors.New("want a JSON array of {uuid, count, discount, vat, sum}")
		}
	}
	var out []Position
	for i, it := range items {
		id, _ := it["uuid"].(string)
		if !IsUUID(id) {
			return nil, fmt.Errorf("item %d: uuid %q is not a UUID", i+1, id)
		}
		typ, _ := it["type"].(string)
		if typ == "" {
			typ = "product"
		}
		p := Position{Quantity: 1, Assortment: EntityRef(typ, id)}
		for _, field := range []string{"count", "discount", "vat", "sum"} {
			x, ok, err := number(it[field])
			if err != nil {
				return nil, fmt.Errorf("item %d: %s: %v", i+1, field, err)
			}
			if !ok {
				continue
			}
			switch field {
			case "count":
				if x <= 0 {
					return nil, fmt.Errorf("item %d: count must be positive", i+1)
				}
				p.Quantity = x
			case "discount":
				p.Discount = &x
			case "vat":
				n := int(x)
				p.VAT = &n
			case "sum":
				kopecks := float64(int64(x*100 + 0.5))
				p.Price = &kopecks
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// number reads a JSON number or a numeric string; ok is false when absent.
func number(v any) (x float64, ok bool, err error) {
	switch v := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		return v, true, nil
	case string:
		if strings.TrimSpace(v) == "" {
			return 0, false, nil
		}
		x, ok := crm.ParseNumber(v) // "10 000" and "1 500,50" as elsewhere
		if !ok {
			return 0, false, fmt.Errorf("%q is not a number", strings.TrimSpace(v))
		}
		return x, true, nil
	}
	return 0, false, fmt.Errorf("%v is not a number", v)
}

// parseAttribute reads Roistat's {uuid, value, type} and converts the value
// to the JSON type MoySklad wants for that attribute type.
func parseAttribute(v string) (Attribute, error) {
	var spec struct {
		UUID  string `json:"uuid"`
		Value any    `json:"value"`
		Type  string `json:"type"`
	}
	if err := json.Unmarshal([]byte(v), &spec); err != nil {
		return Attribute{}, errors.New("want a JSON object {uuid, value, type}")
	}
	if !IsUUID(spec.UUID) {
		return Attribute{}, fmt.Errorf("uuid %q is not a UUID", spec.UUID)
	}
	a := Attribute{Meta: orderMetaRef("attributes", "attributemetadata", spec.UUID).Meta}
	var s string
	switch v := spec.Value.(type) {
	case nil:
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	default:
		s = strings.TrimSpace(fmt.Sprint(v))
	}
	switch strings.ToLower(spec.Type) {
	case "", "string", "text", "link", "time", "file":
		a.Value = s
	case "long":
		x, ok, err := number(spec.Value)
		if err != nil || !ok || x != float64(int64(x)) {
			return Attribute{}, fmt.Errorf("value %q is not an integer", s)
		}
		a.Value = int64(x)
	case "double":
		x, ok, err := number(spec.Value)
		if err != nil || !ok {
			return Attribute{}, fmt.Errorf("value %q is not a number", s)
		}
		a.Value = x
	case "boolean":
		switch strings.ToLower(s) {
		case "1", "true", "y", "yes", "да", "on":
			a.Value = true
		case "0", "false", "n", "no", "нет", "off", "":
			a.Value = false
		default:
			return Attribute{}, fmt.Errorf("value %q is not a flag (1 or 0)", s)
		}
	default: // a directory: the value names an object of that type
		r, err := directoryRef(spec.Type, s)
		if err != nil {
			return Attribute{}, err
		}
		a.Value = r
	}
	return a, nil
}

// directoryRef turns a directory attribute's value into a reference: a
// full href as given, "<dictionary id>/<entry id>" for a custom directory,
// or the object's UUID.
func directoryRef(typ, s string) (*Ref, error) {
	if strings.HasPrefix(s, HrefBase+"/entity/") {
		return &Ref{Meta{Href: s, Type: typ, MediaType: "application/json"}}, nil
	}
	if typ == "customentity" {
		dict, entry, _ := strings.Cut(s, "/")
		if !IsUUID(dict) || !IsUUID(entry) {
			return nil, fmt.Errorf("value %q: want <directory id>/<entry id>", s)
		}
		return EntityRef(typ, dict+"/"+entry), nil
	}
	if !IsUUID(s) {
		return nil, fmt.Errorf("value %q: want the UUID of a %s", s, typ)
	}
	return EntityRef(typ, s), nil
}
