//go:build ignore

// Command vulndb builds a govulncheck vulnerability database directory
// (the v1 layout govulncheck reads with -db file:///...) from the OSV
// entries of the golang.org/x/vulndb module, which the Go module proxy
// serves, so CI checks against a pinned database without reaching
// vuln.go.dev:
//
//	go run scripts/vulndb/main.go -osv <vulndb module>/data/osv -out <dir> -modified <RFC 3339 time>
//
// With -check it reads instead govulncheck's -format json output on stdin
// and fails (exit 1) when a module the project requires has a reachable
// vulnerability with a fix (update that module). Reachable
// vulnerabilities of the standard library are listed as warnings: their
// fix is a newer Go toolchain, which the machine provides, not go.mod.
//
//	govulncheck -db file://<dir> -format json ./... | go run scripts/vulndb/main.go -check
//
// The layout: index/db.json ({"modified"}), index/modules.json (each
// module with the IDs of its vulnerabilities), index/vulns.json (each ID
// with its aliases) and ID/<id>.json (the OSV entries, unchanged).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	// Fixed is left empty: govulncheck then decides from the entry's
	// ranges alone, which is exact, never an index shortcut.
	Fixed string `json:"fixed,omitempty"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

func main() {
	osvDir := flag.String("osv", "", "directory of OSV JSON entries (data/osv of golang.org/x/vulndb)")
	out := flag.String("out", "", "output directory")
	modified := flag.String("modified", "", "database modification time, RFC 3339 (the vulndb version's time)")
	check := flag.Bool("check", false, "read govulncheck -format json on stdin and fail on reachable, fixable module vulnerabilities")
	flag.Parse()
	if *check {
		if err := checkFindings(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "vulndb:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*osvDir, *out, *modified); err != nil {
		fmt.Fprintln(os.Stderr, "vulndb:", err)
		os.Exit(1)
	}
}

func run(osvDir, out, modified string) error {
	if osvDir == "" || out == "" {
		return errors.New("-osv and -out are required")
	}
	dbTime, err := time.Parse(time.RFC3339, modified)
	if err != nil {
		return fmt.Errorf("-modified: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(osvDir, "GO-*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no GO-*.json entries in %s", osvDir)
	}
	for _, d := range []string{"index", "ID"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			return err
		}
	}
	byModule := map[string][]moduleVuln{}
	var vulns []vuln
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if e.ID == "" || !strings.HasPrefix(filepath.Base(f), e.ID) {
			return fmt.Errorf("%s: id %q does not match the file name", f, e.ID)
		}
		if e.Modified.IsZero() {
			e.Modified = dbTime
		}
		vulns = append(vulns, vuln{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		seen := map[string]bool{}
		for _, a := range e.Affected {
			if p := a.Package.Name; p != "" && !seen[p] {
				seen[p] = true
				byModule[p] = append(byModule[p], moduleVuln{ID: e.ID, Modified: e.Modified})
			}
		}
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), raw, 0o644); err != nil {
			return err
		}
	}
	var modules []module
	for p, vs := range byModule {
		modules = append(modules, module{Path: p, Vulns: vs})
	}
	slices.SortFunc(modules, func(a, b module) int { return strings.Compare(a.Path, b.Path) })
	for name, v := range map[string]any{
		"db.json":      map[string]time.Time{"modified": dbTime},
		"modules.json": modules,
		"vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "index", name), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("vulndb: %d entries, %d modules in %s\n", len(vulns), len(modules), out)
	return nil
}

// finding is one govulncheck JSON finding; a reachable one (called code)
// has a function in its first frame.
type finding struct {
	OSV          string `json:"osv"`
	FixedVersion string `json:"fixed_version"`
	Trace        []struct {
		Module   string `json:"module"`
		Version  string `json:"version"`
		Package  string `json:"package"`
		Function string `json:"function"`
	} `json:"trace"`
}

func checkFindings(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	seen := map[string]bool{}
	var failures, warnings []string
	for {
		var msg struct {
			Finding *finding `json:"finding"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading govulncheck output: %w", err)
		}
		f := msg.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" || f.FixedVersion == "" {
			continue // not reachable, or no fix to take
		}
		top := f.Trace[0]
		line := fmt.Sprintf("%s in %s@%s (%s), fixed in %s", f.OSV, top.Module, top.Version, top.Package, f.FixedVersion)
		if seen[line] {
			continue
		}
		seen[line] = true
		if top.Module == "stdlib" || top.Module == "toolchain" {
			warnings = append(warnings, line)
		} else {
			failures = append(failures, line)
		}
	}
	for _, w := range warnings {
		fmt.Fprintln(out, "vulndb: warning: reachable, fixed in a newer Go toolchain:", w)
	}
	for _, f := range failures {
		fmt.Fprintln(out, "vulndb: FAIL: reachable, fixed in a newer module version:", f)
	}
	if len(failures) > 0 {
		return fmt.Errorf("%d reachable vulnerabilities in required modules have fixes: update them", len(failures))
	}
	fmt.Fprintf(out, "vulndb: no reachable vulnerability with a fix in required modules (%d in the standard library, fixed by a newer Go)\n", len(warnings))
	return nil
}
