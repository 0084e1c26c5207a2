//! What the workers tell each other before the first step, whichever way the cluster is named.

/// What a worker tells the others before the first step: how many replicas it drives, and
/// whether it can take NCCL (every replica a GPU of its own, the library present), else why not.
pub(super) struct Offer {
    pub(super) local: usize,
    pub(super) nccl: Result<(), String>,
}

/// What every worker learns: each worker's replica count (in rank order), and the NCCL id when
/// every worker can take NCCL, else the first reason why not.
pub(super) struct Plan {
    pub(super) counts: Vec<usize>,
    pub(super) nccl: Result<[u8; 128], String>,
}

/// Seconds from an environment variable, else `default`.
pub(super) fn seconds(var: &str, default: u64) -> std::time::Duration {
    std::time::Duration::from_secs(std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default))
}
