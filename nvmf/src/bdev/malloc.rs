//! Placeholder: being written.
pub struct MallocBdev;
