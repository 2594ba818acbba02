package caddymodule

// Every destination type that ships with leadproxy. A third-party type
// registers itself in the leadproxy.destinations namespace the same way.
import (
	_ "github.com/leadproxy/leadproxy/crm/amocrm"
	_ "github.com/leadproxy/leadproxy/crm/bitrix24"
	_ "github.com/leadproxy/leadproxy/crm/email"
	_ "github.com/leadproxy/leadproxy/crm/freshoffice"
	_ "github.com/leadproxy/leadproxy/crm/megaplan"
	_ "github.com/leadproxy/leadproxy/crm/moysklad"
	_ "github.com/leadproxy/leadproxy/crm/retailcrm"
	_ "github.com/leadproxy/leadproxy/crm/roistat"
	_ "github.com/leadproxy/leadproxy/crm/salesforce"
	_ "github.com/leadproxy/leadproxy/crm/telegram"
	_ "github.com/leadproxy/leadproxy/crm/uon"
	_ "github.com/leadproxy/leadproxy/crm/webhook"
)
