package devstack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// waitHTTP polls url until it answers 200, ctx ends, or timeout (0: none)
// passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rateLimitLine says which per-client-IP rate limit the API enforces, and
// how to lift it for a load test.
func rateLimitLine(cfg config.API) string {
	if cfg.RateLimitRPS == 0 {
		return "off (RATE_LIMIT_RPS=0)"
	}
	return fmt.Sprintf("%g req/s per client IP, bursts of %d (RATE_LIMIT_RPS, RATE_LIMIT_BURST; "+
		"RATE_LIMIT_RPS=0 make run turns it off for load tests)", cfg.RateLimitRPS, cfg.RateLimitBurst)
}

type banner struct {
	apiURL, apiAdmin, workerAdmin string
	rateLimit                     string
	natsURL, natsStore            string
	dsn                           string // the owner's, the worker's
	apiDBUser                     string // who the API reads as
	devKey                        string // "" when API_KEYS came from the environment
	rekognition                   string
	now                           time.Time
}

func printBanner(w io.Writer, b banner) {
	key := b.devKey
	keyLine := key + "   (name " + DevKeyName + ", scopes ingest+read; kept in .devstack/dev-api-key)"
	if key == "" {
		key = "<one of your API_KEYS secrets>"
		keyLine = "from API_KEYS in the environment"
	}
	ts := b.now.UTC().Truncate(time.Second).Format(time.RFC3339)
	fmt.Fprintf(w, `
challenge-v3 dev stack is up (Ctrl-C stops everything)

  API            %s
  rate limit     %s
  API admin      %s/metrics  /healthz  /readyz
  worker admin   %s/metrics  /healthz  /readyz
  NATS           %s  (JetStream store %s)
  PostgreSQL     %s
                 (the worker writes as its owner; the API reads as %s)
  Rekognition    %s
  dev API key    %s

Send a GPS reading:

  curl -i -X POST %s/telemetry/gps \
    -H 'X-API-Key: %s' \
    -H 'Content-Type: application/json' \
    -d '{"device_id":"00:0a:95:9d:68:16","timestamp":"%s","latitude":-23.55052,"longitude":-46.633308}'

Read it back (a second or so later), newest first:

  curl -s '%s/telemetry/gps?device_id=00:0a:95:9d:68:16&limit=5' -H 'X-API-Key: %s'

Send a photo (from the repository root); the photo table says whether its face is new or known:

  curl -i %s/telemetry/photo -H 'X-API-Key: %s' \
    -F device_id=cam-1 -F timestamp=%s -F photo=@testdata/faces/grace_hopper.jpg

Watch readings arrive live (leave it running, send readings from another terminal):

  curl -N '%s/telemetry/stream' -H 'X-API-Key: %s'

API reference: %s/docs

In PostgreSQL, with the audit trail:

  %s '%s' \
    -c 'SELECT device_id, latitude, longitude, recorded_at FROM gps ORDER BY id DESC LIMIT 5' \
    -c 'SELECT device_id, recognition_status, face_id, similarity FROM photo ORDER BY id DESC LIMIT 5' \
    -c 'SELECT occurred_at, actor, action, resource_id FROM audit_log ORDER BY id DESC LIMIT 5'

`, b.apiURL, b.rateLimit, b.apiAdmin, b.workerAdmin, b.natsURL, b.natsStore, redact(b.dsn), b.apiDBUser, b.rekognition, keyLine,
		b.apiURL, key, ts,
		b.apiURL, key,
		b.apiURL, key, ts,
		b.apiURL, key,
		b.apiURL,
		psqlPath(), b.dsn)
}

// psqlPath is "psql" when it is on PATH, else the one beside the server
// binaries (Debian keeps it in /usr/lib/postgresql/N/bin).
func psqlPath() string {
	if _, err := exec.LookPath("psql"); err == nil {
		return "psql"
	}
	if p, err := localpg.FindTool("psql"); err == nil {
		return p
	}
	return "psql"
}

// redact hides a password in a DSN shown on the status lines (the psql line
// needs it whole).
func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return dsn[:scheme+3] + user + ":***" + dsn[at:]
	}
	return dsn
}
