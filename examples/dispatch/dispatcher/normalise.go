package dispatcher

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
)

// ErrInvalidRecord is returned by Normalise for a record that cannot be
// indexed; the dispatcher dead-letters it.
var ErrInvalidRecord = errors.New("dispatcher: invalid record")

// Normalise turns an ingested record into an index job: ID, source and text
// fields are trimmed with inner whitespace collapsed to one space, the source
// is lowercased, tags are lowercased, collapsed and deduplicated in order,
// the DocID is "<tenant>/<source>:<id>" (tenant.DocID), and the language is guessed from the title
// and body.
func Normalise(r records.RecordIngested) (records.IndexJob, error) {
	id := collapse(r.ID)
	source := strings.ToLower(collapse(r.Source))
	title := collapse(r.Title)
	var missing []string
	if id == "" {
		missing = append(missing, "id")
	}
	if source == "" {
		missing = append(missing, "source")
	}
	if title == "" {
		missing = append(missing, "title")
	}
	owner := strings.TrimSpace(r.Tenant)
	if owner == "" {
		// A document without a tenant could be nobody's to search, or
		// everybody's: refuse it.
		missing = append(missing, "tenant")
	}
	if len(missing) > 0 {
		return records.IndexJob{}, fmt.Errorf("%w: empty %s", ErrInvalidRecord, strings.Join(missing, ", "))
	}
	body := collapse(r.Body)
	return records.IndexJob{
		DocID:      tenant.DocID(owner, source, id),
		Source:     source,
		Title:      title,
		Body:       body,
		Tags:       NormaliseTags(r.Tags),
		URL:        strings.TrimSpace(r.URL),
		Tenant:     owner,
		Language:   DetectLanguage(title + " " + body),
		IngestedAt: r.IngestedAt,
	}, nil
}

// collapse trims s and replaces every run of white space with one space.
func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// NormaliseTags lowercases and collapses each tag, drops empty ones and
// duplicates, and keeps the first occurrence's order. It returns nil for no
// tags.
func NormaliseTags(tags []string) []string {
	var out []string
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		t = strings.ToLower(collapse(t))
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}

// stopwords are frequent short words of each language the guesser knows.
var stopwords = map[string][]string{
	"en": {"the", "and", "of", "to", "in", "is", "for", "on", "with", "that", "are", "this", "by", "from", "be", "an", "as", "at", "or", "it", "was", "have", "has", "not", "your", "you", "we", "our", "will"},
	"fr": {"le", "la", "les", "et", "des", "du", "un", "une", "est", "pour", "dans", "sur", "avec", "que", "qui", "par", "au", "aux", "pas", "ce", "sont", "nous", "vous"},
	"de": {"der", "die", "das", "und", "ist", "nicht", "mit", "von", "für", "auf", "den", "dem", "ein", "eine", "zu", "im", "sich", "auch", "werden", "wird", "sind", "oder"},
	"es": {"el", "los", "las", "y", "del", "es", "para", "con", "por", "que", "una", "un", "en", "se", "su", "al", "como", "más", "sobre", "está", "son"},
	"nl": {"de", "het", "een", "en", "van", "is", "voor", "met", "op", "niet", "zijn", "dat", "die", "te", "aan", "ook", "worden", "wordt", "bij"},
}

var stopwordIndex = func() map[string][]string {
	idx := make(map[string][]string)
	for lang, words := range stopwords {
		for _, w := range words {
			idx[w] = append(idx[w], lang)
		}
	}
	return idx
}()

// Undetermined is the language DetectLanguage returns when it cannot tell
// (ISO 639-2 "und").
const Undetermined = "und"

// DetectLanguage guesses the language of text by counting stopwords of
// English, French, German, Spanish and Dutch. It is deliberately naive: it
// needs at least two stopword hits and a clear winner, or it answers
// Undetermined.
func DetectLanguage(text string) string {
	counts := make(map[string]int, len(stopwords))
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && r != '\''
	})
	for _, w := range words {
		for _, lang := range stopwordIndex[w] {
			counts[lang]++
		}
	}
	best, bestN, secondN := Undetermined, 0, 0
	for _, lang := range []string{"en", "fr", "de", "es", "nl"} { // fixed order: deterministic ties
		switch n := counts[lang]; {
		case n > bestN:
			best, bestN, secondN = lang, n, bestN
		case n > secondN:
			secondN = n
		}
	}
	if bestN < 2 || bestN == secondN {
		return Undetermined
	}
	return best
}
