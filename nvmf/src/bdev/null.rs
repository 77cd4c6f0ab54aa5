//! Placeholder: being written.
pub struct NullBdev;
