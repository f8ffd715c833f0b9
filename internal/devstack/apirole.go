package devstack

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/config"
)

// APIRole is the login role the dev stack gives the API: a member of
// challenge_reader (migration 0002), so the read routes run with SELECT on
// the readings and INSERT on audit_log only, as in the compose deployment.
// The worker keeps the owner's DSN (it migrates and writes).
const APIRole = "challenge_api"

// readerRole is the role migration 0002 grants the read API's privileges to.
const readerRole = "challenge_reader"

// apiDSN is ownerDSN with the user and password replaced by the API role's:
// same server, same database, same options.
func apiDSN(ownerDSN, password string) (string, error) {
	if strings.HasPrefix(ownerDSN, "postgres://") || strings.HasPrefix(ownerDSN, "postgresql://") {
		u, err := url.Parse(ownerDSN)
		if err != nil {
			return "", fmt.Errorf("devstack: DATABASE_URL: %w", err)
		}
		u.User = url.UserPassword(APIRole, password)
		return u.String(), nil
	}
	// A keyword/value DSN: a repeated keyword's last value wins (libpq, pgx).
	return ownerDSN + " user=" + APIRole + " password='" + password + "'", nil
}

// ensureAPIRole creates the API's login role on the server of ownerDSN, or
// sets its password when it exists, and makes it a member of
// challenge_reader. It runs once the worker has migrated: challenge_reader
// and its grants come from migration 0002. It fails when the owner may not
// manage roles (an existing server named by DATABASE_URL, without
// CREATEROLE), or when the migration could not create challenge_reader.
func ensureAPIRole(ctx context.Context, ownerDSN, password string) error {
	conn, err := pgx.Connect(ctx, ownerDSN)
	if err != nil {
		return fmt.Errorf("devstack: API role: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// DDL takes no parameters: format() quotes the name and the password
	// on the server.
	var ddl []string
	err = conn.QueryRow(ctx, `
		SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
			THEN ARRAY[format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text),
			           format('GRANT %I TO %I', $3::text, $1::text)]
			ELSE ARRAY[format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I', $1::text, $2::text, $3::text)]
		END`, APIRole, password, readerRole).Scan(&ddl)
	if err != nil {
		return fmt.Errorf("devstack: API role: %w", err)
	}
	for _, stmt := range ddl {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("devstack: API role %s: %w", APIRole, err)
		}
	}
	return nil
}

// apiDatabase sets up APIRole, once the worker has migrated, and returns
// the API's configuration and the database user it reads as. When the role
// cannot be set up (DATABASE_URL names a server where the owner may not
// create roles) the API reads as the owner, with a warning: the dev stack
// favours a working read API over least privilege there.
func (s *stack) apiDatabase(ctx context.Context, cfg config.API) (config.API, string, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := ensureAPIRole(rctx, s.dsn, s.apiDBPassword)
	if err == nil {
		return cfg, APIRole + ", a member of " + readerRole, nil
	}
	s.log.Warn("the API reads as the database owner: its own role could not be set up "+
		"(an administrator can create it as deploy/postgres-init/10-api-role.sh does)", "role", APIRole, "err", err)
	cfg, err = config.LoadAPI(s.apiEnv(s.dsn))
	if err != nil {
		return cfg, "", fmt.Errorf("devstack: %w", err)
	}
	return cfg, "the owner: " + APIRole + " could not be set up, see the log", nil
}
