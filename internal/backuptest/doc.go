// Package backuptest holds the tests of the backup and restore procedures
// docs/backup.md gives operators: a PostgreSQL dump restored into a fresh
// cluster, and the TELEMETRY stream restored into a fresh NATS server from
// a JetStream snapshot and from a copy of the stopped server's store. It
// has no code of its own.
package backuptest
