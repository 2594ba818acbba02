package oauth

import (
	"context"
	"encoding/json"
	"testing"
)

// The store joins the tokens under "<type>/<name>" whether the app hands
// it over before or after Provision.
func TestKeeperEitherOrder(t *testing.T) {
	for _, storeFirst := range []bool{true, false} {
		raw, _ := json.Marshal(record{Seed: Seed("a"), Token: Token{Access: "from-store"}})
		store := &MemoryStore{}
		if err := store.SaveToken("megaplan/mp", string(raw)); err != nil {
			t.Fatal(err)
		}
		var k Keeper
		if storeFirst {
			k.SetTokenStore("mp", store)
		}
		k.Keep("megaplan", New(Token{Access: "from-config"}, Seed("a"), nil, nil))
		if !storeFirst {
			k.SetTokenStore("mp", store)
		}
		if got, err := k.Tokens().Get(context.Background()); err != nil || got != "from-store" {
			t.Errorf("store first %v: token %q, %v; want the stored one", storeFirst, got, err)
		}
	}
	var k Keeper
	k.SetTokenStore("x", &MemoryStore{}) // before Provision: nothing to join yet
	if k.Tokens() != nil {
		t.Fatal("tokens before Keep")
	}
}
