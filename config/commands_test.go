package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
)

func TestLoadMigrate(t *testing.T) {
	c, err := config.LoadMigrate(workerEnv(map[string]string{"DATABASE_URL": " postgres://app:pw@db/telemetry "}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "postgres://app:pw@db/telemetry" {
		t.Fatalf("DatabaseURL = %q", c.DatabaseURL)
	}

	tests := []struct {
		name, dsn, want string
	}{
		{"missing", "", "DATABASE_URL: is required"},
		{"not a DSN", "postgres://app:s3cret@db:port/x", "DATABASE_URL: is not a valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.LoadMigrate(workerEnv(map[string]string{"DATABASE_URL": tt.dsn}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestLoadDLQ(t *testing.T) {
	c, err := config.LoadDLQ(workerEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSURL != config.DefaultNATSURL || c.NATSConnectWait != config.DefaultNATSConnectTimeout {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = config.LoadDLQ(workerEnv(map[string]string{"NATS_URL": "nats://n1:4222,nats://n2:4222", "NATS_CONNECT_TIMEOUT": "2s"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSURL != "nats://n1:4222,nats://n2:4222" || c.NATSConnectWait != 2*time.Second {
		t.Fatalf("values: %+v", c)
	}

	_, err = config.LoadDLQ(workerEnv(map[string]string{"NATS_URL": "http://user:s3cret@n1:4222", "NATS_CONNECT_TIMEOUT": "soon"}))
	if err == nil || !strings.Contains(err.Error(), "NATS_URL") || !strings.Contains(err.Error(), "NATS_CONNECT_TIMEOUT") {
		t.Fatalf("err = %v, want both variables named", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the NATS password: %v", err)
	}
}
