-- carevault schema, version 12 (PostgreSQL): the Merkle tree over the audit log (RFC 9162 hashing).
-- The chain head keeps the tree's frontier (the roots of its perfect subtrees, so a new root
-- costs O(log n)); every complete block of 256 leaves keeps its root (so a proof reads at most
-- two blocks of records); every checkpoint also carries a signed tree head (size = its seq).

ALTER TABLE audit_head ADD COLUMN tree_frontier BYTEA;

CREATE TABLE audit_tree_blocks (
    idx BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

ALTER TABLE audit_checkpoints ADD COLUMN root_hash BYTEA;
ALTER TABLE audit_checkpoints ADD COLUMN tree_signature BYTEA;
