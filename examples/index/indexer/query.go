package indexer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search/query"
)

// Limits of the query language (see ParseQuery).
const (
	// MaxQueryBytes bounds q.
	MaxQueryBytes = 512
	// MaxClauses bounds the clauses of one query.
	MaxClauses = 16
	// MaxPrefixClauses bounds the prefix clauses (pre*) of one query: each
	// expands to the index terms it matches.
	MaxPrefixClauses = 4
	// MinPrefix is the least number of characters before a '*'.
	MinPrefix = 3
	// MaxSize is the most hits one page returns.
	MaxSize = 100
	// MaxResultWindow bounds from+size: deeper pages cost the backend a
	// sort of every hit before them (Elasticsearch's default is the same).
	MaxResultWindow = 10000
)

// Occur says how a clause takes part in a query.
type Occur int

// Occurrences: a clause without + or - should match (at least one of those
// must, when the query has no + clause).
const (
	Should Occur = iota
	Must
	MustNot
)

// Kind is what a clause matches.
type Kind int

// Clause kinds.
const (
	Term   Kind = iota // a word, analysed like the field
	Phrase             // words in order
	Prefix             // words starting with Text
)

// Clause is one parsed part of a query.
type Clause struct {
	Occur Occur
	// Field is empty (title, body and tags) or one of SearchFields.
	Field string
	Kind  Kind
	Text  string
}

// SearchFields are the fields a clause may name ("tags:flooding").
var SearchFields = []string{"title", "body", "tags", "source", "language"}

// forbidden are characters of richer query syntaxes (Bleve's and Lucene's
// regexps, wildcards, fuzziness, boosts, ranges, grouping) that this
// language does not have: a query using them is refused, never passed on.
const forbidden = `*?~/\^(){}[]<>=!&|:"`

// ParseQuery parses the search language API clients use. It is small on
// purpose: every query it accepts is cheap to run.
//
//	flood          a word: matched in title, body and tags
//	"flood risk"   a phrase: these words in this order
//	eng*           a prefix: words starting with eng (at least MinPrefix characters)
//	+word -word    required, excluded (plain clauses: at least one matches)
//	tags:flooding  a clause on one field: title, body, tags, source, language
//
// Regexps, wildcards other than a trailing '*', fuzzy matching, boosts and
// ranges are refused, as are more than MaxClauses clauses (MaxPrefixClauses
// prefixes) or MaxQueryBytes bytes. The error wraps ErrBadQuery and says
// what to change.
func ParseQuery(q string) ([]Clause, error) {
	if len(q) > MaxQueryBytes {
		return nil, fmt.Errorf("%w: q has %d bytes; at most %d are allowed", ErrBadQuery, len(q), MaxQueryBytes)
	}
	if !utf8.ValidString(q) {
		return nil, fmt.Errorf("%w: q is not valid UTF-8", ErrBadQuery)
	}
	var (
		out      []Clause
		prefixes int
	)
	rest := q
	for {
		rest = strings.TrimLeft(rest, " \t\r\n")
		if rest == "" {
			break
		}
		var c Clause
		switch rest[0] {
		case '+':
			c.Occur, rest = Must, rest[1:]
		case '-':
			c.Occur, rest = MustNot, rest[1:]
		}
		// An optional field name.
		if i := strings.IndexAny(rest, ": \t\r\n\""); i > 0 && rest[i] == ':' {
			field := rest[:i]
			if !contains(SearchFields, field) {
				return nil, fmt.Errorf("%w: unknown field %q; use %s", ErrBadQuery, field, strings.Join(SearchFields, ", "))
			}
			c.Field, rest = field, rest[i+1:]
		}
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("%w: a phrase is not closed; end it with '\"'", ErrBadQuery)
			}
			c.Kind, c.Text, rest = Phrase, strings.Join(strings.Fields(rest[1:1+end]), " "), rest[2+end:]
			if c.Text == "" {
				return nil, fmt.Errorf("%w: an empty phrase", ErrBadQuery)
			}
			if i := strings.IndexAny(c.Text, `\`); i >= 0 {
				return nil, fmt.Errorf("%w: '\\' is not allowed in a phrase", ErrBadQuery)
			}
		} else {
			word := rest
			if i := strings.IndexAny(rest, " \t\r\n"); i >= 0 {
				word, rest = rest[:i], rest[i:]
			} else {
				rest = ""
			}
			c.Kind, c.Text = Term, word
			if stem, ok := strings.CutSuffix(word, "*"); ok {
				c.Kind, c.Text = Prefix, stem
				if n := utf8.RuneCountInString(stem); n < MinPrefix {
					return nil, fmt.Errorf("%w: prefix %q has %d characters before '*'; at least %d are needed", ErrBadQuery, word, n, MinPrefix)
				}
				if prefixes++; prefixes > MaxPrefixClauses {
					return nil, fmt.Errorf("%w: more than %d prefix clauses", ErrBadQuery, MaxPrefixClauses)
				}
			}
			if c.Text == "" {
				return nil, fmt.Errorf("%w: a '+', '-' or field name without a word after it", ErrBadQuery)
			}
			if i := strings.IndexAny(c.Text, forbidden); i >= 0 {
				return nil, fmt.Errorf("%w: %q holds %q; the query language has words, \"phrases\", prefix* (a trailing '*' only), +required, -excluded and field:word, and no regexps, wildcards, fuzziness or boosts", ErrBadQuery, word, c.Text[i:i+1])
			}
		}
		if out = append(out, c); len(out) > MaxClauses {
			return nil, fmt.Errorf("%w: more than %d clauses", ErrBadQuery, MaxClauses)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// bleveQuery builds the Bleve query of clauses within tenant t. It never
// uses Bleve's query-string syntax.
func bleveQuery(t string, clauses []Clause) query.Query {
	tq := bleve.NewTermQuery(t)
	tq.SetField("tenant")
	if len(clauses) == 0 {
		return tq
	}
	var must, should, mustNot []query.Query
	for _, c := range clauses {
		var cq query.Query
		switch c.Kind {
		case Phrase:
			p := bleve.NewMatchPhraseQuery(c.Text)
			p.SetField(c.Field)
			cq = p
		case Prefix:
			p := bleve.NewPrefixQuery(strings.ToLower(c.Text))
			p.SetField(c.Field)
			cq = p
		default:
			m := bleve.NewMatchQuery(c.Text)
			m.SetField(c.Field)
			cq = m
		}
		switch c.Occur {
		case Must:
			must = append(must, cq)
		case MustNot:
			mustNot = append(mustNot, cq)
		default:
			should = append(should, cq)
		}
	}
	b := bleve.NewBooleanQuery()
	if len(must) > 0 {
		b.AddMust(must...)
	}
	if len(should) > 0 {
		b.AddShould(should...)
		if len(must) == 0 {
			b.SetMinShould(1)
		}
	}
	if len(mustNot) > 0 {
		b.AddMustNot(mustNot...)
	}
	return bleve.NewConjunctionQuery(tq, b)
}

// elasticQuery builds the Elasticsearch query DSL of clauses within tenant
// t (never query_string: the language is ours, not Lucene's).
func elasticQuery(t string, clauses []Clause) map[string]any {
	filter := []any{map[string]any{"term": map[string]any{"tenant": t}}}
	var must, should, mustNot []any
	for _, c := range clauses {
		fields := []string{"title^2", "body", "tags"}
		if c.Field != "" {
			fields = []string{c.Field}
		}
		var cq map[string]any
		switch c.Kind {
		case Phrase:
			cq = map[string]any{"multi_match": map[string]any{"query": c.Text, "fields": fields, "type": "phrase"}}
		case Prefix:
			var ors []any
			for _, f := range fields {
				f, _, _ = strings.Cut(f, "^")
				ors = append(ors, map[string]any{"prefix": map[string]any{f: map[string]any{"value": strings.ToLower(c.Text)}}})
			}
			cq = map[string]any{"bool": map[string]any{"should": ors, "minimum_should_match": 1}}
		default:
			cq = map[string]any{"multi_match": map[string]any{"query": c.Text, "fields": fields}}
		}
		switch c.Occur {
		case Must:
			must = append(must, cq)
		case MustNot:
			mustNot = append(mustNot, cq)
		default:
			should = append(should, cq)
		}
	}
	b := map[string]any{"filter": filter}
	if len(must) > 0 {
		b["must"] = must
	}
	if len(should) > 0 {
		b["should"] = should
		if len(must) == 0 {
			b["minimum_should_match"] = 1
		}
	}
	if len(mustNot) > 0 {
		b["must_not"] = mustNot
	}
	return map[string]any{"bool": b}
}
