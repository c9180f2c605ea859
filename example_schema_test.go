package hub_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
)

type ArticleV1 struct {
	Title string `json:"title"`
}

func (ArticleV1) HubSchema() hub.Schema { return hub.Schema{Name: "Article", Version: 1} }

type ArticleV2 struct {
	Title    string `json:"title"`
	Language string `json:"language"`
}

func (ArticleV2) HubSchema() hub.Schema { return hub.Schema{Name: "Article", Version: 2} }

// Payloads evolve: a consumer of version 2 reads version 1 messages through
// an upcaster, and dead-letters versions it does not know.
func ExampleRegisterSchema() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t)

	_ = hub.RegisterSchema[ArticleV2](th.Hub, "Article", 2, hub.Upcaster{From: 1, Func: func(p []byte) ([]byte, error) {
		var a map[string]any
		if err := json.Unmarshal(p, &a); err != nil {
			return nil, err
		}
		a["language"] = "en" // version 1 was English only
		return json.Marshal(a)
	}})
	_ = hub.Handle(th.Hub, "articles", func(ctx context.Context, m hub.Message[ArticleV2]) error {
		fmt.Printf("%s (%s) from schema v%s\n", m.Payload.Title, m.Payload.Language, m.Metadata.Get(hub.KeySchemaVersion))
		return nil
	})
	th.Start()
	hubtest.Send(t, th, "articles", ArticleV1{Title: "Old article"})
	th.Settle(t)
	hubtest.Send(t, th, "articles", ArticleV2{Title: "Nouvel article", Language: "fr"})
	th.Settle(t)
	// Output:
	// Old article (en) from schema v1
	// Nouvel article (fr) from schema v2
}
