package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Record is one record as clients post it. Every other field is refused.
type Record struct {
	// ID is the record's ID in its source system. Required, at most 256
	// characters.
	ID string `json:"id"`
	// Source names the system the record comes from. Required; it must not
	// contain ':', which separates it from the ID in the default
	// idempotency key "<source>:<id>".
	Source string `json:"source"`
	// Title is required.
	Title string   `json:"title"`
	Body  string   `json:"body,omitempty"`
	Tags  []string `json:"tags,omitempty"`
	// URL, if present, is an absolute http or https URL.
	URL string `json:"url,omitempty"`
}

// validate appends the record's field errors, for line (0 for a single
// JSON body).
func (r Record) validate(line int, errs []FieldError) []FieldError {
	add := func(field, detail string) { errs = append(errs, FieldError{Line: line, Field: field, Detail: detail}) }
	required := func(field, v string) bool {
		if strings.TrimSpace(v) == "" {
			add(field, "is required")
			return false
		}
		return true
	}
	if required("id", r.ID) && utf8.RuneCountInString(r.ID) > maxIDLength {
		add("id", fmt.Sprintf("has %d characters; at most %d are allowed", utf8.RuneCountInString(r.ID), maxIDLength))
	}
	if required("source", r.Source) && strings.Contains(r.Source, ":") {
		add("source", "must not contain ':'")
	}
	required("title", r.Title)
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("url", "must be an absolute http or https URL")
		}
	}
	// Bounded fields and words keep the index small and searches fast: a
	// single 1 MB title would grow the index tenfold and slow every search.
	maxLen := func(field, v string, n int) {
		if c := utf8.RuneCountInString(v); c > n {
			add(field, fmt.Sprintf("has %d characters; at most %d are allowed", c, n))
		}
	}
	maxLen("source", r.Source, MaxSourceLength)
	maxLen("title", r.Title, MaxTitleLength)
	maxLen("body", r.Body, MaxBodyLength)
	maxLen("url", r.URL, MaxURLLength)
	if len(r.Tags) > MaxTags {
		add("tags", fmt.Sprintf("has %d tags; at most %d are allowed", len(r.Tags), MaxTags))
	}
	for _, t := range r.Tags {
		if c := utf8.RuneCountInString(t); c > MaxTagLength {
			add("tags", fmt.Sprintf("has a tag of %d characters; at most %d are allowed", c, MaxTagLength))
			break
		}
	}
	for _, f := range [...]struct{ name, v string }{{"title", r.Title}, {"body", r.Body}} {
		if w := longestWord(f.v); w > MaxWordLength {
			add(f.name, fmt.Sprintf("has a word of %d characters; at most %d are allowed", w, MaxWordLength))
		}
	}
	return errs
}

// Limits of a record's fields, in characters.
const (
	MaxSourceLength = 128
	MaxTitleLength  = 1000
	MaxBodyLength   = 64 << 10
	MaxURLLength    = 2048
	MaxTags         = 32
	MaxTagLength    = 64
	// MaxWordLength bounds a run of characters without white space in
	// title and body: one indexed term.
	MaxWordLength = 256
)

// longestWord is the length in characters of s's longest run without
// white space.
func longestWord(s string) int {
	longest, n := 0, 0
	for _, r := range s {
		if unicode.IsSpace(r) {
			n = 0
			continue
		}
		n++
		longest = max(longest, n)
	}
	return longest
}

// decodeError is a body that cannot become records: 400 (not JSON), 413
// (too large) or 422 (JSON that is not a valid record).
type decodeError struct {
	status int
	detail string
	errs   []FieldError
	count  int // when errs is cut short: how many errors there were
}

func (e *decodeError) Error() string { return e.detail }

func tooLarge(limit int64) *decodeError {
	return &decodeError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("the body is larger than %d bytes; split it into smaller requests", limit)}
}

// decodeOne decodes one JSON object holding one record. line is 0 for an
// application/json body. A body that is not JSON is a 400; JSON of the
// wrong shape (wrong types, unknown fields, trailing values) a 422.
func decodeOne(data io.Reader, line int) (Record, *decodeError) {
	dec := json.NewDecoder(data)
	dec.DisallowUnknownFields()
	var rec Record
	where := "the body"
	if line > 0 {
		where = "line " + strconv.Itoa(line)
	}
	if err := dec.Decode(&rec); err != nil {
		return rec, classify(err, line, where)
	}
	// Exactly one value: anything after it but white space is an error.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return rec, tooLarge(mbe.Limit)
		}
		return rec, &decodeError{status: http.StatusBadRequest, detail: where + " holds more than one JSON value; send one record object (application/json) or one per line (application/x-ndjson)", errs: []FieldError{{Line: line, Detail: "unexpected data after the record object"}}}
	}
	return rec, nil
}

func classify(err error, line int, where string) *decodeError {
	var (
		mbe  *http.MaxBytesError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		desc string
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(mbe.Limit)
	case errors.Is(err, io.EOF):
		return &decodeError{status: http.StatusBadRequest, detail: where + " is empty; send a JSON record object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &decodeError{status: http.StatusBadRequest, detail: where + " ends in the middle of a JSON value", errs: []FieldError{{Line: line, Detail: "unexpected end of JSON"}}}
	case errors.As(err, &syn):
		desc = fmt.Sprintf("is not valid JSON at byte %d: %v", syn.Offset, syn)
		return &decodeError{status: http.StatusBadRequest, detail: where + " " + desc, errs: []FieldError{{Line: line, Detail: "invalid JSON: " + syn.Error()}}}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return &decodeError{status: http.StatusUnprocessableEntity, detail: where + " must be a JSON object, not " + typ.Value, errs: []FieldError{{Line: line, Detail: "must be a JSON object, not " + typ.Value}}}
		}
		field, _, _ := strings.Cut(typ.Field, ".")
		want := typ.Type.String()
		if want == "[]string" {
			want = "array of strings"
		}
		return &decodeError{status: http.StatusUnprocessableEntity, detail: where + " has a field of the wrong type", errs: []FieldError{{Line: line, Field: field, Detail: "must be a " + want + ", not " + typ.Value}}}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if u, uerr := strconv.Unquote(name); uerr == nil {
			name = u
		}
		return &decodeError{status: http.StatusUnprocessableEntity, detail: where + " has a field this API does not know", errs: []FieldError{{Line: line, Field: name, Detail: "is not a record field (allowed: id, source, title, body, tags, url)"}}}
	}
	return &decodeError{status: http.StatusBadRequest, detail: where + " cannot be read: " + err.Error()}
}

// decodeNDJSON reads one record per line (blank lines are skipped, "\r\n"
// is accepted) and validates them all before returning: the records, or
// the first error that stops decoding, or every field error found.
func decodeNDJSON(body io.Reader, maxBytes int64, maxBatch int) ([]Record, []int, *decodeError) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), int(min(maxBytes, 1<<30))+1)
	var (
		recs  []Record
		lines []int
		errs  []FieldError
	)
	line, seen := 0, 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		// Every non-blank line counts against the batch, decodable or not:
		// a body of junk lines is bounded like one of records.
		if seen++; seen > maxBatch {
			return nil, nil, &decodeError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("the body holds more than %d lines; send at most %d records per request", maxBatch, maxBatch)}
		}
		rec, derr := decodeOne(bytes.NewReader(b), line)
		if derr != nil {
			if derr.status == http.StatusBadRequest && len(derr.errs) > 0 {
				derr.detail = fmt.Sprintf("line %d is not a JSON record object", line)
			}
			if derr.status != http.StatusUnprocessableEntity {
				// A read error (the size limit) ends the scan with the
				// partial last line as a token: report the cause.
				if err := sc.Err(); err != nil {
					break
				}
				return nil, nil, derr
			}
			errs = append(errs, derr.errs...)
			continue
		}
		errs = rec.validate(line, errs)
		recs = append(recs, rec)
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, tooLarge(maxBytes)
		}
		return nil, nil, &decodeError{status: http.StatusBadRequest, detail: "reading the body: " + err.Error()}
	}
	if len(errs) > 0 {
		return nil, nil, invalid(errs)
	}
	if len(recs) == 0 {
		return nil, nil, &decodeError{status: http.StatusUnprocessableEntity, detail: "the body holds no records; send one JSON record object per line", errs: []FieldError{{Detail: "no records"}}}
	}
	return recs, lines, nil
}

// invalid is the 422 of errs; the problem lists the first
// MaxReportedErrors of them and counts them all.
func invalid(errs []FieldError) *decodeError {
	detail := fmt.Sprintf("%d invalid field", len(errs))
	if len(errs) > 1 {
		detail += "s"
	}
	detail += "; nothing was published: "
	for i, e := range errs {
		if i == 3 {
			detail += fmt.Sprintf(", and %d more", len(errs)-3)
			break
		}
		if i > 0 {
			detail += ", "
		}
		if e.Line > 0 {
			detail += "line " + strconv.Itoa(e.Line) + " "
		}
		if e.Field != "" {
			detail += e.Field + " "
		}
		detail += e.Detail
	}
	d := &decodeError{status: http.StatusUnprocessableEntity, detail: detail, errs: errs}
	if len(errs) > MaxReportedErrors {
		d.errs, d.count = errs[:MaxReportedErrors], len(errs)
	}
	return d
}
