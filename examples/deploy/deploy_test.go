package deploy

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"sigs.k8s.io/yaml"

	"github.com/harvesthub/hub/examples/internal/platform"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The few Kubernetes fields the checks read; sigs.k8s.io/yaml turns YAML
// into JSON, so json tags name them.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"` // a name or a number
	} `json:"httpGet"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	Env []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
	LivenessProbe  *probe `json:"livenessProbe"`
	ReadinessProbe *probe `json:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
	} `json:"securityContext"`
}

type deployment struct {
	object
	Spec struct {
		Replicas int `json:"replicas"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `json:"runAsNonRoot"`
				} `json:"securityContext"`
				Containers []container `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type service struct {
	object
	Spec struct {
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name       string `json:"name"`
			Port       int    `json:"port"`
			TargetPort any    `json:"targetPort"`
		} `json:"ports"`
	} `json:"spec"`
}

type hpa struct {
	object
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicas int `json:"minReplicas"`
		MaxReplicas int `json:"maxReplicas"`
		Metrics     []struct {
			Type string `json:"type"`
		} `json:"metrics"`
	} `json:"spec"`
}

// documents splits a multi-document YAML file.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if !strings.HasPrefix(strings.TrimSpace(sc.Text()), "#") {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}

// servedPaths asks a real service runtime (memory broker) which of paths it
// answers, so the probes are checked against the code, not a list.
func servedPaths(t *testing.T, paths ...string) map[string]int {
	t.Helper()
	cfg := platform.Defaults("deploy-test")
	cfg.Broker, cfg.Store, cfg.Listen, cfg.LogLevel = platform.BrokerMemory, platform.StoreMemory, "127.0.0.1:0", "error"
	rt, err := platform.New(context.Background(), cfg, io.Discard)
	require.NoError(t, err)
	defer func() { require.NoError(t, rt.Close()) }()
	codes := map[string]int{}
	for _, p := range paths {
		rec := httptest.NewRecorder()
		rt.Mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		codes[p] = rec.Code
	}
	return codes
}

func portMatches(ref any, c container) (int, bool) {
	for _, p := range c.Ports {
		switch r := ref.(type) {
		case string:
			if r == p.Name {
				return p.ContainerPort, true
			}
		case float64:
			if int(r) == p.ContainerPort {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func TestManifests(t *testing.T) {
	served := servedPaths(t, "/healthz", "/metrics")
	for _, svc := range []string{"ingest", "dispatch", "index"} {
		t.Run(svc, func(t *testing.T) {
			path := filepath.Join("k8s", svc+".yaml")
			var deps []deployment
			var svcs []service
			var hpas []hpa
			for _, doc := range documents(t, path) {
				var generic map[string]any
				require.NoError(t, yaml.UnmarshalStrict(doc, &generic), "%s: valid YAML without duplicate keys", path)
				var o object
				require.NoError(t, yaml.Unmarshal(doc, &o), path)
				switch o.Kind {
				case "Deployment":
					require.Equal(t, "apps/v1", o.APIVersion)
					var d deployment
					require.NoError(t, yaml.Unmarshal(doc, &d), path)
					deps = append(deps, d)
				case "Service":
					require.Equal(t, "v1", o.APIVersion)
					var s service
					require.NoError(t, yaml.Unmarshal(doc, &s))
					svcs = append(svcs, s)
				case "HorizontalPodAutoscaler":
					require.Equal(t, "autoscaling/v2", o.APIVersion)
					var h hpa
					require.NoError(t, yaml.Unmarshal(doc, &h))
					hpas = append(hpas, h)
				default:
					t.Fatalf("%s: unexpected kind %q", path, o.Kind)
				}
			}
			require.Len(t, deps, 1, "one Deployment")
			require.Len(t, svcs, 1, "one Service")
			require.Len(t, hpas, 1, "one HorizontalPodAutoscaler")
			d, s, h := deps[0], svcs[0], hpas[0]

			// The Deployment selects its own pods.
			require.NotEmpty(t, d.Spec.Selector.MatchLabels)
			for k, v := range d.Spec.Selector.MatchLabels {
				require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "selector label %s", k)
			}
			require.True(t, d.Spec.Template.Spec.SecurityContext.RunAsNonRoot, "pods run as non-root")
			require.Greater(t, d.Spec.Template.Spec.TerminationGracePeriodSeconds, 25, "the grace period outlasts HUB_SHUTDOWN_TIMEOUT")
			require.Len(t, d.Spec.Template.Spec.Containers, 1)
			c := d.Spec.Template.Spec.Containers[0]
			require.Contains(t, c.Image, "/"+svc+":", "the image is the %s image", svc)

			// The container listens where its ports say.
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			listen := env["HUB_LISTEN"]
			require.NotEmpty(t, listen, "HUB_LISTEN set")
			require.Len(t, c.Ports, 1)
			require.True(t, strings.HasSuffix(listen, ":"+strconv.Itoa(c.Ports[0].ContainerPort)), "HUB_LISTEN %s matches containerPort %d", listen, c.Ports[0].ContainerPort)

			// Probes: liveness /healthz and readiness /readyz on the container port.
			for name, p := range map[string]*probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
				require.NotNil(t, p, "probe for %s", name)
				require.NotNil(t, p.HTTPGet)
				require.Equal(t, name, p.HTTPGet.Path)
				_, ok := portMatches(p.HTTPGet.Port, c)
				require.True(t, ok, "probe port %v is a container port", p.HTTPGet.Port)
			}
			require.Equal(t, http.StatusOK, served["/healthz"], "the services serve the liveness path")
			require.Equal(t, http.StatusOK, served["/metrics"], "the services serve the scrape path")

			// Resources are requested and limited.
			for _, r := range []string{"cpu", "memory"} {
				require.NotEmpty(t, c.Resources.Requests[r], "requests.%s", r)
				require.NotEmpty(t, c.Resources.Limits[r], "limits.%s", r)
			}
			require.NotNil(t, c.SecurityContext)
			require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation)
			require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)

			// The Service selects the pods and targets the container port.
			for k, v := range s.Spec.Selector {
				require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "service selector %s", k)
			}
			require.NotEmpty(t, s.Spec.Selector)
			require.Len(t, s.Spec.Ports, 1)
			_, ok := portMatches(s.Spec.Ports[0].TargetPort, c)
			require.True(t, ok, "service targetPort %v is a container port", s.Spec.Ports[0].TargetPort)

			// The HPA scales this Deployment.
			require.Equal(t, "apps/v1", h.Spec.ScaleTargetRef.APIVersion)
			require.Equal(t, "Deployment", h.Spec.ScaleTargetRef.Kind)
			require.Equal(t, d.Metadata.Name, h.Spec.ScaleTargetRef.Name)
			require.GreaterOrEqual(t, h.Spec.MinReplicas, 1)
			require.GreaterOrEqual(t, h.Spec.MaxReplicas, h.Spec.MinReplicas)
			require.Equal(t, d.Spec.Replicas, h.Spec.MinReplicas, "the Deployment starts at the HPA's minimum")
			require.NotEmpty(t, h.Spec.Metrics)
		})
	}
}

// TestReadinessPath checks /readyz answers 200 when ready and 503 with the
// failing dependency otherwise, as the readiness probes expect.
func TestReadinessPath(t *testing.T) {
	cfg := platform.Defaults("deploy-test")
	cfg.Broker, cfg.Store, cfg.Listen, cfg.LogLevel = platform.BrokerMemory, platform.StoreMemory, "127.0.0.1:0", "error"
	rt, err := platform.New(context.Background(), cfg, io.Discard)
	require.NoError(t, err)
	defer func() { require.NoError(t, rt.Close()) }()
	get := func() int {
		rec := httptest.NewRecorder()
		rt.Mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	require.Equal(t, http.StatusOK, get())
	rt.AddReadiness("index", func(context.Context) error { return io.ErrUnexpectedEOF })
	require.Equal(t, http.StatusServiceUnavailable, get())
}

var (
	fromRe  = regexp.MustCompile(`(?im)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?`)
	buildRe = regexp.MustCompile(`go build\b[^\n]*\s(\./examples/[a-z]+)\s*$`)
	userRe  = regexp.MustCompile(`(?m)^USER\s+(\S+)`)
)

func TestDockerfiles(t *testing.T) {
	for _, svc := range []string{"ingest", "dispatch", "index", "harvest"} {
		t.Run(svc, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(svc, "Dockerfile"))
			require.NoError(t, err)
			src := string(raw)

			froms := fromRe.FindAllStringSubmatch(src, -1)
			require.GreaterOrEqual(t, len(froms), 2, "a build stage and a final stage")
			require.True(t, strings.HasPrefix(froms[0][1], "golang:"), "the build stage has the Go toolchain: %s", froms[0][1])
			require.NotEmpty(t, froms[0][2], "the build stage is named")
			final := froms[len(froms)-1][1]
			require.Regexp(t, `^(gcr\.io/distroless/|alpine:)`, final, "distroless or alpine final stage")
			require.Contains(t, src, "--from="+froms[0][2], "the final stage copies from the build stage")

			// The build stage builds this service's package.
			var pkgs []string
			for _, l := range joinContinuations(src) {
				if m := buildRe.FindStringSubmatch(l); m != nil {
					pkgs = append(pkgs, m[1])
				}
			}
			require.Equal(t, []string{"./examples/" + svc}, pkgs)
			require.Contains(t, src, "CGO_ENABLED=0", "a static binary for the distroless image")
			require.Contains(t, src, "COPY go.mod go.sum go.work", "the workspace that joins the library and the examples module")
			require.Contains(t, src, "examples/go.mod", "the examples module")

			// Non-root in the final stage.
			users := userRe.FindAllStringSubmatch(src[strings.LastIndex(src, "FROM"):], -1)
			require.NotEmpty(t, users, "the final stage sets USER")
			require.NotContains(t, []string{"root", "0", "0:0"}, users[len(users)-1][1])
			require.Contains(t, src, `ENTRYPOINT ["/usr/local/bin/`+svc+`"]`)
		})
	}
}

// TestDockerfilePackagesAreCommands checks each package the Dockerfiles
// build is a main package of the workspace, as `go build` in the image
// would see it from the repository root.
func TestDockerfilePackagesAreCommands(t *testing.T) {
	args := []string{"list", "-f", "{{.ImportPath}} {{.Name}}"}
	for _, svc := range []string{"ingest", "dispatch", "index", "harvest"} {
		args = append(args, "./examples/"+svc)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	cmd := exec.Command("go", args...)
	cmd.Dir = root // the repository root, as WORKDIR /src
	// The image builds in workspace mode, whatever GOWORK the test runs with.
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 4)
	for _, l := range lines {
		require.True(t, strings.HasSuffix(l, " main"), l)
	}
}

func joinContinuations(src string) []string {
	return strings.Split(strings.ReplaceAll(src, "\\\n", " "), "\n")
}
