//! Reactors: one pinned thread per selected core, each owning one `PollGroup`.

/// What the control thread knows about a reactor (for `framework_get_reactors`, `nvmf_get_stats`).
#[derive(Clone, Debug, Default)]
pub struct ReactorInfo {
    pub core: usize,
    pub connections: usize,
}
