package config

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// The commands whose variables Vars lists, as their users type them.
const (
	CommandAPI     = "api"
	CommandWorker  = "worker"
	CommandMigrate = "worker migrate"
	CommandDLQ     = "worker dlq"
	CommandRekey   = "worker rekey"
	CommandStatus  = "worker status" // reads what `worker dlq` reads
)

// Var documents one environment variable of a command for its -h output.
type Var struct {
	Name     string
	Default  string // as a user would write it; "" when unset means off or empty
	Required bool
	Meaning  string // one line
	// SDK marks a variable the AWS or OpenTelemetry SDK reads by itself,
	// not the loader.
	SDK bool
}

// commands is a set of the commands a row applies to.
type commands uint8

const (
	forAPI commands = 1 << iota
	forWorker
	forMigrate
	forDLQ
	forRekey

	forBoth = forAPI | forWorker
)

var commandBits = map[string]commands{
	CommandAPI: forAPI, CommandWorker: forWorker, CommandMigrate: forMigrate, CommandDLQ: forDLQ,
	CommandRekey: forRekey, CommandStatus: forDLQ,
}

// vars is the one table of every variable the loaders read, with the
// default as the loaders apply it. The tests check both against the loaders
// (help_test.go): every name a loader reads is here, every row is read, and
// each default written out loads to the same configuration as leaving the
// variable unset. A variable whose default differs by command has a row per
// command.
var vars = []struct {
	cmds commands
	Var
}{
	{forAPI, Var{Name: "HTTP_ADDR", Default: ":8080", Meaning: "public listener of the telemetry routes"}},
	{forAPI, Var{Name: "ADMIN_ADDR", Default: ":8081", Meaning: "/metrics, /healthz, /readyz; keep it private"}},
	{forWorker, Var{Name: "ADMIN_ADDR", Default: ":8082", Meaning: "/metrics, /healthz, /readyz; keep it private"}},
	{forBoth | forDLQ, Var{Name: "NATS_URL", Default: "nats://127.0.0.1:4222", Meaning: "NATS server, or a comma-separated list of a cluster's URLs"}},
	{forBoth | forDLQ, Var{Name: "NATS_CONNECT_TIMEOUT", Default: "30s", Meaning: "how long start-up keeps trying to reach NATS (the worker: and PostgreSQL)"}},

	{forAPI, Var{Name: "API_KEYS", Required: true, Meaning: "name:secret:scope[+scope],…; scopes ingest (POST) and read (GET); secret ≥ 16 chars or sha256:<hex>, one per key"}},
	{forAPI, Var{Name: "RATE_LIMIT_RPS", Default: "10", Meaning: "token-bucket refill per client IP per second; 0 disables rate limiting"}},
	{forAPI, Var{Name: "RATE_LIMIT_BURST", Default: "20", Meaning: "token-bucket size per client IP"}},
	{forAPI, Var{Name: "RATE_LIMIT_DEVICE_RPS", Default: "0", Meaning: "token-bucket refill per device (API key + device_id) per second, after the per-IP limit; 0 disables"}},
	{forAPI, Var{Name: "RATE_LIMIT_DEVICE_BURST", Default: "20", Meaning: "token-bucket size per device"}},
	{forAPI, Var{Name: "RATE_LIMIT_MAX_CLIENTS", Default: "100000", Meaning: "client IPs tracked at most (~275 bytes each), 1 to 10000000; as many devices"}},
	{forAPI, Var{Name: "PHOTO_MAX_INFLIGHT", Default: "48", Meaning: "photo uploads handled at once (~14 MiB each at most); beyond it 503 + Retry-After"}},
	{forAPI, Var{Name: "PHOTO_MAX_INFLIGHT_PER_CLIENT", Default: "4", Meaning: "one client IP's share of PHOTO_MAX_INFLIGHT; beyond it 429 + Retry-After"}},
	{forAPI, Var{Name: "UPLOAD_MIN_RATE", Default: "32KiB", Meaning: "slowest average a request body may arrive at, per second, after the grace; slower: 408"}},
	{forAPI, Var{Name: "UPLOAD_MIN_RATE_GRACE", Default: "5s", Meaning: "start of a body UPLOAD_MIN_RATE does not judge"}},
	{forAPI, Var{Name: "IMAGE_MAX_INFLIGHT", Default: "16", Meaning: "photo images served at once (GET …/image, ~10 MiB each); beyond it 503 + Retry-After"}},
	{forAPI, Var{Name: "TRUSTED_PROXIES", Meaning: "CIDRs whose X-Forwarded-For is believed (right-most untrusted hop)"}},
	{forAPI, Var{Name: "PUBLISH_TIMEOUT", Default: "3s", Meaning: "bound on each JetStream call; past it the API answers 503"}},
	{forAPI, Var{Name: "REQUEST_TIMEOUT", Default: "10s", Meaning: "bound on claim + publish after the body is read"}},
	{forAPI, Var{Name: "HTTP_READ_TIMEOUT", Default: "60s", Meaning: "bound on reading a whole request (a 7 MiB upload)"}},
	{forAPI, Var{Name: "SHUTDOWN_DELAY", Default: "0s", Meaning: "after SIGTERM, how long the API keeps serving with /readyz at 503 so load balancers move away; shorter than SHUTDOWN_TIMEOUT, which starts after it"}},

	{forAPI, Var{Name: "DATABASE_URL", Meaning: "PostgreSQL for the read API (ideally a challenge_reader user); unset: ingest only"}},
	{forWorker | forMigrate | forRekey, Var{Name: "DATABASE_URL", Required: true, Meaning: "PostgreSQL URL or key=value DSN"}},
	{forDLQ, Var{Name: "DATABASE_URL", Meaning: "PostgreSQL; set: replays and purges are audited in audit_log, and status checks it"}},
	{forAPI, Var{Name: "READ_STATEMENT_TIMEOUT", Default: "5s", Meaning: "bound on every read query"}},
	{forAPI, Var{Name: "READ_POOL_MAX_CONNS", Default: "8", Meaning: "connections of the read pool at most"}},
	{forAPI, Var{Name: "CORS_ALLOWED_ORIGINS", Meaning: "browser origins allowed cross-origin (comma-separated, or *)"}},
	{forAPI, Var{Name: "STREAM_HEARTBEAT", Default: "15s", Meaning: "interval of the live stream's heartbeat comment"}},
	{forAPI, Var{Name: "STREAM_CLIENT_BUFFER", Default: "256", Meaning: "events waiting for one stream client before it is disconnected"}},
	{forAPI, Var{Name: "STREAM_MAX_CLIENTS", Default: "10000", Meaning: "connected stream clients at most; past it 503"}},
	{forAPI, Var{Name: "ENCRYPTION_KEYS", Meaning: "id:<base64 32 bytes>,…; opens photo images for the read API (unset: 503)"}},
	{forAPI, Var{Name: "ENCRYPTION_KEY", Meaning: "shorthand for one key (<base64 32 bytes>, id default)"}},
	{forWorker, Var{Name: "ENCRYPTION_KEYS", Meaning: "id:<base64 32 bytes>,…; first seals, all open; this or ENCRYPTION_KEY is required"}},
	{forWorker, Var{Name: "ENCRYPTION_KEY", Meaning: "shorthand for one key (<base64 32 bytes>, id default)"}},
	{forRekey, Var{Name: "ENCRYPTION_KEYS", Meaning: "id:<base64 32 bytes>,…; the first re-seals, all open; this or ENCRYPTION_KEY is required"}},
	{forRekey, Var{Name: "ENCRYPTION_KEY", Meaning: "shorthand for one key (<base64 32 bytes>, id default)"}},

	{forWorker, Var{Name: "REKOGNITION_COLLECTION_ID", Meaning: "face collection, created if missing; unset: recognition disabled"}},
	{forWorker, Var{Name: "FACE_MATCH_THRESHOLD", Default: "90", Meaning: "minimum similarity (0-100] of a match"}},
	{forWorker, Var{Name: "AWS_REGION", Meaning: "Rekognition's region; unset: the standard AWS chain's"}},
	{forWorker, Var{Name: "AWS_PROFILE", Meaning: "shared-config profile (read by the AWS SDK)", SDK: true}},
	{forWorker, Var{Name: "AWS_ACCESS_KEY_ID", Meaning: "static credentials, with AWS_SECRET_ACCESS_KEY; unset: the standard AWS chain"}},
	{forWorker, Var{Name: "AWS_SECRET_ACCESS_KEY", Meaning: "static credentials, with AWS_ACCESS_KEY_ID"}},
	{forWorker, Var{Name: "AWS_SESSION_TOKEN", Meaning: "session token of temporary static credentials"}},
	{forWorker, Var{Name: "AWS_ENDPOINT_URL_REKOGNITION", Meaning: "points the SDK at an emulator or a test server"}},
	{forWorker, Var{Name: "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", Meaning: "true ignores AWS_ENDPOINT_URL_REKOGNITION"}},
	{forWorker, Var{Name: "RECOGNITION_TIMEOUT", Default: "10s", Meaning: "per Rekognition operation, SDK retries included"}},
	{forWorker, Var{Name: "RECOGNITION_CACHE_ENTRIES", Default: "10000", Meaning: "in-memory analysis cache size"}},
	{forWorker, Var{Name: "RECOGNITION_CACHE_TTL", Default: "1h", Meaning: "in-memory analysis cache lifetime"}},
	{forWorker, Var{Name: "BATCH_SIZE", Default: "500", Meaning: "GPS/gyroscope messages per transaction"}},
	{forWorker, Var{Name: "BATCH_LINGER", Default: "50ms", Meaning: "longest a batch waits to fill"}},
	{forWorker, Var{Name: "PHOTO_CONCURRENCY", Default: "4", Meaning: "photos analysed and stored at once"}},
	{forWorker, Var{Name: "DLQ_SWEEP_INTERVAL", Default: "1m", Meaning: "how often TELEMETRY is swept for exhausted messages whose advisory was lost"}},
	{forWorker, Var{Name: "RETRY_BACKOFF", Default: "1s,5s,15s,30s,1m,2m,5m", Meaning: "NakWithDelay schedule of transient failures, by delivery"}},

	{forBoth, Var{Name: "MAX_FUTURE_SKEW", Default: "5m", Meaning: "how far in the future a reading's timestamp may be (equal in api and worker)"}},
	{forBoth, Var{Name: "NATS_REPLICAS", Default: "1", Meaning: "stream replicas: 1 on one server (it syncs every write), 3 in a NATS cluster"}},
	{forBoth, Var{Name: "STREAM_MAX_BYTES", Default: "10GiB", Meaning: "backlog limit of TELEMETRY; when full the API answers 503"}},
	{forBoth, Var{Name: "STREAM_MAX_AGE", Default: "168h", Meaning: "oldest unconsumed reading kept"}},
	{forBoth, Var{Name: "STREAM_DUPLICATE_WINDOW", Default: "2m", Meaning: "Nats-Msg-Id / Idempotency-Key dedupe window (≥ 2m)"}},
	{forBoth, Var{Name: "DLQ_MAX_AGE", Default: "720h", Meaning: "how long dead letters are kept"}},
	{forBoth, Var{Name: "DLQ_MAX_BYTES", Default: "1GiB", Meaning: "bound of TELEMETRY_DLQ (≥ 16MiB); the oldest dead letters are discarded, counted in worker_dlq_discarded_total"}},
	{forBoth, Var{Name: "CONSUMER_ACK_WAIT", Default: "30s", Meaning: "redelivery of an unacknowledged message"}},
	{forBoth, Var{Name: "CONSUMER_MAX_DELIVER", Default: "10", Meaning: "deliveries before a failing message is dead-lettered"}},
	{forBoth, Var{Name: "CONSUMER_MAX_ACK_PENDING", Default: "1000", Meaning: "unacknowledged messages in flight per consumer"}},
	{forBoth, Var{Name: "SHUTDOWN_TIMEOUT", Default: "25s", Meaning: "graceful-shutdown budget after SIGTERM (the API's after SHUTDOWN_DELAY)"}},
	{forBoth, Var{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Meaning: "OTLP/HTTP collector base URL (spans go to its /v1/traces); unset: tracing off, at no cost"}},
	{forBoth, Var{Name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Meaning: "full OTLP/HTTP URL of spans; wins over OTEL_EXPORTER_OTLP_ENDPOINT"}},
	{forBoth, Var{Name: "OTEL_SDK_DISABLED", Default: "false", Meaning: "true turns tracing off whatever the endpoints say"}},
	{forBoth, Var{Name: "OTEL_SERVICE_NAME", Meaning: "service.name of the spans; unset: challenge-api, challenge-worker (read by the OpenTelemetry SDK)", SDK: true}},
	{forBoth, Var{Name: "OTEL_RESOURCE_ATTRIBUTES", Meaning: "key=value,… added to the spans' resource, e.g. deployment.environment.name=prod (read by the SDK)", SDK: true}},
	{forBoth, Var{Name: "OTEL_EXPORTER_OTLP_HEADERS", Meaning: "key=value,… sent with every export, e.g. a collector's auth token (read by the SDK)", SDK: true}},
	{forBoth, Var{Name: "OTEL_EXPORTER_OTLP_TIMEOUT", Meaning: "milliseconds one export may take, 10000 by default (read by the SDK)", SDK: true}},
	{forBoth, Var{Name: "OTEL_TRACES_SAMPLER", Meaning: "parentbased_always_on by default; parentbased_traceidratio keeps a share (read by the SDK)", SDK: true}},
	{forBoth, Var{Name: "OTEL_TRACES_SAMPLER_ARG", Meaning: "the sampler's argument, e.g. 0.1 to keep one trace in ten (read by the SDK)", SDK: true}},
	{forBoth | forMigrate | forDLQ | forRekey, Var{Name: "LOG_LEVEL", Default: "info", Meaning: "debug, info, warn or error; at info the API's access log keeps every non-2xx answer and one sampled success a second, debug logs every request"}},
	{forBoth | forMigrate, Var{Name: "LOG_FORMAT", Default: string(LogJSON), Meaning: "json or text; logs go to stdout, one record per line"}},
	{forDLQ | forRekey, Var{Name: "LOG_FORMAT", Default: string(LogText), Meaning: "text or json; replays, purges and rekey batches are logged to stderr"}},
}

// Vars returns the variables command reads (CommandAPI, CommandWorker,
// CommandMigrate, CommandDLQ, CommandRekey or CommandStatus), in table
// order; nil for another command.
func Vars(command string) []Var {
	bit := commandBits[command]
	var out []Var
	for _, r := range vars {
		if r.cmds&bit != 0 {
			out = append(out, r.Var)
		}
	}
	return out
}

// WriteVars writes the variables of command as an aligned table: name,
// default (or "required"), meaning.
func WriteVars(w io.Writer, command string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	for _, v := range Vars(command) {
		def := v.Default
		switch {
		case v.Required:
			def = "required"
		case def == "":
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Meaning)
	}
	return tw.Flush()
}

// IsHelp reports whether arg asks for help: -h, -help, --help or help.
func IsHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}
