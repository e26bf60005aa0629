//! Messages: the properties string, the stored record, batch bodies, ids and tag hashes.

pub mod batch;
pub mod message_id;
pub mod properties;
pub mod stored;
pub mod tag;
