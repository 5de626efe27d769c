"""The store's schema, as the migrations that build it (the engine runs those a file has not had yet)."""

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE datasets (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, root TEXT NOT NULL, kind TEXT NOT NULL,
        size_bytes INTEGER NOT NULL, file_count INTEGER NOT NULL, sha256 TEXT NOT NULL,
        manifest TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE INDEX datasets_name ON datasets(name, created_at);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, provider TEXT NOT NULL, status TEXT NOT NULL,
        status_reason TEXT, spec TEXT NOT NULL, dataset_id TEXT NOT NULL, pod_id TEXT, gpu_type TEXT,
        price_per_hour REAL, created_at REAL NOT NULL, started_at REAL, ended_at REAL, last_heartbeat REAL,
        exit_code INTEGER, progress TEXT, last_step INTEGER, last_loss REAL, last_loss_nan INTEGER,
        keep_alive_until REAL, ingest_token_hash TEXT NOT NULL, ingest_revoked_at REAL);
    CREATE INDEX runs_status ON runs(status);
    CREATE TABLE run_events (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
    CREATE INDEX run_events_run ON run_events(run_id, id);
    CREATE TABLE pods (
        provider TEXT NOT NULL, pod_id TEXT NOT NULL, run_id TEXT NOT NULL, gpu_type TEXT,
        price_per_hour REAL, status TEXT NOT NULL, created_at REAL NOT NULL, ended_at REAL,
        PRIMARY KEY (provider, pod_id));
    CREATE TABLE download_tokens (
        hash TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, run_id TEXT NOT NULL, created_at REAL NOT NULL,
        expires_at REAL NOT NULL, first_used_at REAL, uses INTEGER NOT NULL DEFAULT 0, revoked_at REAL);
    CREATE INDEX download_tokens_expires ON download_tokens(expires_at);
    CREATE INDEX download_tokens_run ON download_tokens(run_id);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, value REAL, ts REAL NOT NULL,
        UNIQUE (run_id, name, step));
    CREATE TABLE logs (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, stream TEXT NOT NULL, text TEXT NOT NULL,
        UNIQUE (run_id, seq));
    CREATE TABLE feed (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL, lo INTEGER, hi INTEGER,
        ts REAL NOT NULL);
    """,
    # 2: when a run last printed a metric or a log line (the stall guardrail)
    """
    ALTER TABLE runs ADD COLUMN last_activity REAL;
    """,
    # 3: GPU use as the provider last reported it (RunPod's pod runtime)
    """
    ALTER TABLE runs ADD COLUMN gpu_util REAL;
    ALTER TABLE runs ADD COLUMN gpu_mem REAL;
    """,
    # 4: the pod's HTTP port when the control plane pulls from it
    """
    ALTER TABLE runs ADD COLUMN pod_port INTEGER;
    """,
    # 5: how the pod read the run's metrics, and the progress rows it is drawing now (a JSON list)
    """
    ALTER TABLE runs ADD COLUMN metrics_source TEXT;
    ALTER TABLE runs ADD COLUMN live TEXT;
    """,
    # 6: outputs brought home from pods: per file the version home and one moving; per run its syncs
    """
    CREATE TABLE outputs (
        run_id TEXT NOT NULL, path TEXT NOT NULL, size INTEGER, sha256 TEXT, mtime REAL, home_at REAL,
        moving_size INTEGER, moving_mtime REAL, updated_at REAL NOT NULL, PRIMARY KEY (run_id, path));
    CREATE TABLE output_syncs (
        run_id TEXT PRIMARY KEY, last_sync_at REAL, final_at REAL, requested_at REAL);
    """,
    # 7: a pod that said it could not end itself (it bills until the control plane ends it); NULL once it is gone
    """
    ALTER TABLE runs ADD COLUMN pod_end_failed TEXT;
    """,
    # 8: a run that outlives its pod (--retries): its ended attempts (a JSON list), and which attempt each
    # metric point came from (a later attempt's value replaces an earlier one's at the same step)
    """
    ALTER TABLE runs ADD COLUMN attempts TEXT;
    ALTER TABLE metrics ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    """,
    # 9 (issue 25): datasets: what the user registered, a removal mark (runs keep their dataset's row), a pinned
    # revision
    """
    ALTER TABLE datasets ADD COLUMN source TEXT;
    ALTER TABLE datasets ADD COLUMN removed_at REAL;
    ALTER TABLE datasets ADD COLUMN revision TEXT;
    """,
    # 10 (issue 25): which datasets pods found or put on which volume (content-addressed cache)
    """
    CREATE TABLE volume_datasets (
        provider TEXT NOT NULL, volume TEXT NOT NULL, cache_key TEXT NOT NULL, dataset_id TEXT NOT NULL,
        at REAL NOT NULL, PRIMARY KEY (provider, volume, cache_key));
    """,
    # 11 (issue 25): when the pod began getting its dataset and when training began (the time it waited for data)
    """
    ALTER TABLE runs ADD COLUMN data_wait_from REAL;
    ALTER TABLE runs ADD COLUMN data_wait_until REAL;
    """,
    # 12 (issue 27): a run of more than one pod: per node its pod, rank, status, GPU use and price (a JSON list)
    """
    ALTER TABLE runs ADD COLUMN nodes TEXT;
    """,
]
