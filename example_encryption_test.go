package hub_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/middleware"
)

// With Config.Encryption set, the broker and the dead-letter topic only
// ever see ciphertext; handlers get the plaintext.
func ExampleConfig_encryption() {
	t := hubtest.NewStandalone()
	defer t.Close()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyring, _ := middleware.NewKeyring("k1", map[string][]byte{"k1": key}) // or KeyringFromEnv("HUB_ENC")
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Encryption = keyring }))

	type Patient struct{ Name string }
	_ = hub.Handle(th.Hub, "patients", func(ctx context.Context, m hub.Message[Patient]) error {
		fmt.Println("handler sees:", m.Payload.Name)
		return nil
	})
	th.Start()
	hubtest.Send(t, th, "patients", Patient{Name: "Ada Lovelace"})
	th.Settle(t)

	raw := th.Messages("patients")[0]
	fmt.Println("key id:", raw.Metadata.Get(hub.KeyEncKeyID))
	fmt.Println("plaintext in the broker:", strings.Contains(string(raw.Payload), "Ada"))
	// Output:
	// handler sees: Ada Lovelace
	// key id: k1
	// plaintext in the broker: false
}
