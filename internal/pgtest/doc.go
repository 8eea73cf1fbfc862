// Package pgtest gives tests a real PostgreSQL server: Start makes sure one
// runs on this machine and returns a connection string to a fresh, empty
// database that is dropped when the test ends.
//
// On a Debian machine it starts the local cluster (pg_ctlcluster), installs
// PostgreSQL with apt-get when it is missing and the test runs as root, and
// creates a login role "hallmark_test" (LOGIN CREATEDB, not a superuser)
// through psql run as the postgres OS user. Tests connect to it over TCP on
// 127.0.0.1 with a password (Debian's pg_hba.conf accepts scram-sha-256
// there); the global authentication configuration is never changed. The
// set-up is idempotent and serialised across test binaries with a lock
// file, so packages tested in parallel share one server.
//
// HALLMARK_TEST_POSTGRES, when set, names a server to use instead: a
// connection string for a role allowed to CREATE DATABASE.
//
// Under CI=true, failing to get a server fails the test; otherwise the test
// is skipped with a message naming its package.
//
// It is for tests only and must not be imported by production code.
package pgtest
