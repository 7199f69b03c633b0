//! Durable storage: segmented log, term/vote meta and snapshot directories.
