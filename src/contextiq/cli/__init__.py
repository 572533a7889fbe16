"""The `contextiq` command line: serve, worker, db, orgs, keys, sessions, memories."""
