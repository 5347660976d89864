-- multicluster resource store schema: the single source of table definitions.
--
-- Written in MySQL/MariaDB dialect; multicluster/store/schema.py strips the MySQL-only clauses for SQLite.
-- The daemon applies this file at every start, so every statement must be idempotent (IF NOT EXISTS).
-- Before it creates a table here it records it in multicluster_schema with store/ownership.py's LAYOUT, and it
-- never uses or drops a table of these names that is not recorded there (see store/ownership.py). A change here
-- that makes existing rows unusable bumps LAYOUT: the tables are then dropped and refilled by the next sync.
-- Kept within what MySQL-compatible distributed databases (TiDB) accept: no triggers, no stored procedures,
-- no FULLTEXT, no foreign keys.
--
-- InnoDB limits an index key to 3072 bytes. DNS-ish identity columns are ASCII (1 byte per character);
-- names are utf8mb4 (4 bytes per character), so the widest key, resources_by_created, needs
-- 253 + 63 + 253 + 40 + 63 + 63 + 4*253 = 1747 bytes (plus length prefixes).
-- All orderings are binary (code point order), the same order Python's sorted() gives.

CREATE TABLE IF NOT EXISTS resources (
  -- Assigned by the store in insertion order (SQLite: the rowid). An initial sync inserts a type's objects in
  -- list order, so the table, and the label and field rows that reference it, grow at their ends instead of
  -- taking every insert on a random page (which a hashed id did: 1.6x the write cost, mostly WAL page writes).
  -- Identity is resources_identity below; layout 1 (the hashed id) is rebuilt at start, see store/ownership.py.
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  cluster VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  api_group VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  version VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  resource VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  namespace VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  name VARCHAR(253) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  kind VARCHAR(253) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  uid VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  resource_version BIGINT UNSIGNED NOT NULL,
  owner VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  -- RFC 3339 strings ("2026-11-25T21:36:28Z"): fixed width, so they sort chronologically as text.
  created_at VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  updated_at VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- The object's JSON exactly as the informer serialised it; binary so it leaves byte-for-byte.
  object LONGBLOB NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Identity, and the index of order=cluster (cluster, namespace, name) and of load_index.
CREATE UNIQUE INDEX IF NOT EXISTS resources_identity
  ON resources (api_group, version, resource, cluster, namespace, name);
-- order=namespace (namespace, name, cluster)
CREATE INDEX IF NOT EXISTS resources_by_namespace
  ON resources (api_group, version, resource, namespace, name, cluster);
-- order=name (name, cluster, namespace)
CREATE INDEX IF NOT EXISTS resources_by_name
  ON resources (api_group, version, resource, name, cluster, namespace);
-- order=created / -created (created_at, cluster, namespace, name)
CREATE INDEX IF NOT EXISTS resources_by_created
  ON resources (api_group, version, resource, created_at, cluster, namespace, name);
-- No index leads with cluster: delete_cluster goes type by type through resources_identity, and an extra index
-- cost 15 % of the insert rate of an initial sync (measured on SQLite, 60k ConfigMaps).

-- Label selector index: one row per label of a stored object.
CREATE TABLE IF NOT EXISTS resource_labels (
  id BIGINT NOT NULL,
  `key` VARCHAR(317) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `value` VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (id, `key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX IF NOT EXISTS resource_labels_by_value ON resource_labels (`key`, `value`, id);

-- Field selector index (status.phase, spec.nodeName, ...): same shape as labels.
CREATE TABLE IF NOT EXISTS resource_fields (
  id BIGINT NOT NULL,
  `key` VARCHAR(317) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `value` VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (id, `key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX IF NOT EXISTS resource_fields_by_value ON resource_fields (`key`, `value`, id);

-- Row ids handed out in blocks (MySQL): a writer numbers a batch of new rows from its block instead of reading
-- AUTO_INCREMENT ids back. SQLite numbers rows inside its write lock and leaves this table empty.
CREATE TABLE IF NOT EXISTS id_blocks (
  name VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  next_id BIGINT NOT NULL
) ENGINE=InnoDB;

-- Per cluster x GVR sync progress, shared by every daemon replica.
CREATE TABLE IF NOT EXISTS sync_state (
  cluster VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  api_group VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  version VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  resource VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  resource_version BIGINT UNSIGNED NOT NULL,
  synced_at DOUBLE NOT NULL,
  error TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  objects BIGINT NOT NULL,
  PRIMARY KEY (cluster, api_group, version, resource)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The change log: one entry per committed mutation of `resources`, appended in the same transaction (see
-- store/changelog.py). seq numbers each cluster's entries in commit order; watchers resume from a position.
-- Bounded: the writer prunes each cluster's entries older than its last store.changeRetention.
CREATE TABLE IF NOT EXISTS changes (
  cluster VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  seq BIGINT NOT NULL,
  event_type VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  api_group VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  version VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  resource VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  namespace VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  name VARCHAR(253) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  resource_version BIGINT UNSIGNED NOT NULL,
  object LONGBLOB NOT NULL,
  -- JSON {"l": labels, "f": fields, "pl": previous labels, "pf": previous fields} (selector values).
  selectors LONGBLOB NOT NULL,
  PRIMARY KEY (cluster, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Each cluster's change log position: last_seq is the newest entry, entries up to pruned_to are pruned. The row
-- outlives the cluster's rows (unjoin, rejoin) so a position is never handed out twice; appending locks it,
-- which orders the cluster's entries by commit even when several replicas write.
CREATE TABLE IF NOT EXISTS change_positions (
  cluster VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  last_seq BIGINT NOT NULL,
  pruned_to BIGINT NOT NULL
) ENGINE=InnoDB;
