package oauth

import "github.com/leadproxy/leadproxy/crm"

// Keeper is what a destination that renews tokens embeds: its Tokens, made
// at Provision, and the app's TokenStore, handed over by SetTokenStore
// before or after that; whichever comes second joins them. It makes the
// destination a crm.TokenKeeper.
type Keeper struct {
	tokens *Tokens
	typ    string
	name   string
	store  crm.TokenStore
}

// Keep takes the tokens of a destination of type typ (Provision).
func (k *Keeper) Keep(typ string, t *Tokens) {
	k.tokens, k.typ = t, typ
	k.join()
}

// SetTokenStore keeps the renewed tokens in ts, under "<type>/<name>".
func (k *Keeper) SetTokenStore(name string, ts crm.TokenStore) {
	k.name, k.store = name, ts
	k.join()
}

func (k *Keeper) join() {
	if k.tokens != nil && k.store != nil {
		k.tokens.SetStore(k.typ+"/"+k.name, k.store)
	}
}

// Tokens returns the kept tokens; nil before Provision.
func (k *Keeper) Tokens() *Tokens { return k.tokens }

var _ crm.TokenKeeper = (*Keeper)(nil)
