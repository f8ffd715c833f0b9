// Package deploy holds the container deployment (docker-compose.yml at the
// repository root, the Dockerfile, deploy/nats.conf) and, in its tests, the
// checks that keep those files consistent with the code: what runs there is
// what the tests ran.
package deploy
