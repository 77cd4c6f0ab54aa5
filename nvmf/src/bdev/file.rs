//! Placeholder: being written.
pub struct FileBdev;
