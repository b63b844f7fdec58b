// Package store keeps Spillway's state in badger or PostgreSQL (docs/fleet.md): images, sandboxes, sessions, exceptions, records and the audit chain.
package store
