//! Where things live under the store root, RocketMQ's layout:
//!
//! | path | content |
//! |------|---------|
//! | `commitlog/{20-digit start offset}` | CommitLog segments |
//! | `consumequeue/{topic}/{queueId}/{20-digit start byte offset}` | ConsumeQueue files |
//! | `checkpoint` | durable positions (4 KiB) |
//! | `abort` | present while the store runs; left behind by a crash |

use crate::io::FilePath;

/// Digits in a segment or ConsumeQueue file name.
pub const NAME_DIGITS: usize = 20;

/// `n` as a 20-digit, zero-padded file name (`UtilAll.offset2FileName`).
#[must_use]
pub fn offset_name(n: u64) -> String {
    format!("{n:020}")
}

/// The offset a 20-digit file name stands for; `None` for any other name.
#[must_use]
pub fn parse_offset_name(name: &str) -> Option<u64> {
    (name.len() == NAME_DIGITS && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

fn known(path: &str) -> FilePath {
    // The literals below are valid paths; `root()` is the fallback that cannot happen.
    FilePath::new(path).unwrap_or_else(FilePath::root)
}

/// `commitlog/`.
#[must_use]
pub fn commitlog_dir() -> FilePath {
    known("commitlog")
}

/// The CommitLog segment starting at `base`.
#[must_use]
pub fn segment(base: u64) -> FilePath {
    known(&format!("commitlog/{}", offset_name(base)))
}

/// `consumequeue/`.
#[must_use]
pub fn consume_queue_root() -> FilePath {
    known("consumequeue")
}

/// `consumequeue/{topic}/{queueId}/`; `None` if the topic is not a plain path component.
#[must_use]
pub fn consume_queue_dir(topic: &str, queue_id: i32) -> Option<FilePath> {
    consume_queue_root().join(topic)?.join(&queue_id.to_string())
}

/// `checkpoint`.
#[must_use]
pub fn checkpoint() -> FilePath {
    known("checkpoint")
}

/// `abort`.
#[must_use]
pub fn abort() -> FilePath {
    known("abort")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digits() {
        assert_eq!(offset_name(0), "00000000000000000000");
        assert_eq!(offset_name(1_073_741_824), "00000000001073741824");
        assert_eq!(parse_offset_name("00000000001073741824"), Some(1_073_741_824));
        assert_eq!(parse_offset_name("1073741824"), None);
        assert_eq!(parse_offset_name("0000000000107374182x"), None);
        assert_eq!(segment(4096).as_str(), "commitlog/00000000000000004096");
        assert_eq!(consume_queue_dir("T", 3).unwrap().as_str(), "consumequeue/T/3");
        assert_eq!(consume_queue_dir("..", 3), None);
    }
}
