//! Parsing /dev/kmsg records (Documentation/ABI/testing/dev-kmsg).
//!
//! One `read(2)` of /dev/kmsg returns one record:
//!
//! ```text
//! 6,339,5140900,-;NET: Registered protocol family 10\n
//!  SUBSYSTEM=net\n
//!  DEVICE=+net:lo\n
//! ```
//!
//! The prefix is `prio,seq,ts_us,flags[,…]` (prio = facility << 3 | level), the text follows the
//! `;`. Non-printable bytes of the text (newlines of a multi-line message included) are escaped as
//! `\xNN`; the lines after the first that start with a space are the record's key/value
//! dictionary (continuation lines), not part of the text.

use klp_protocol::KmsgRecord;

/// Parse one record as read from /dev/kmsg; `None` if it is not one.
pub fn parse_record(raw: &[u8]) -> Option<KmsgRecord> {
    let raw = String::from_utf8_lossy(raw);
    // The first line is the record; continuation lines (` KEY=value`) are the dictionary.
    let first = raw.split('\n').next()?;
    let (prefix, text) = first.split_once(';')?;
    let mut fields = prefix.split(',');
    let prio: u32 = fields.next()?.trim().parse().ok()?;
    let seq: u64 = fields.next()?.trim().parse().ok()?;
    let ts_us: u64 = fields.next()?.trim().parse().ok()?;
    Some(KmsgRecord { seq, level: (prio & 7) as u8, ts_us, text: unescape(text) })
}

/// Undo the kernel's `\xNN` escaping (it escapes non-printables and the backslash itself).
pub fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1] == b'x' {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_record() {
        let r = parse_record(b"6,339,5140900,-;NET: Registered protocol family 10\n").unwrap();
        assert_eq!(
            r,
            KmsgRecord { seq: 339, level: 6, ts_us: 5140900, text: "NET: Registered protocol family 10".into() }
        );
    }

    #[test]
    fn facility_is_masked_and_dictionary_dropped() {
        // prio 14 = facility 1 (user) << 3 | level 6; two dictionary continuation lines follow.
        let r = parse_record(b"14,2,100,-;klp-agent: hello\n SUBSYSTEM=net\n DEVICE=+net:lo\n").unwrap();
        assert_eq!(r.level, 6);
        assert_eq!(r.seq, 2);
        assert_eq!(r.text, "klp-agent: hello");
    }

    #[test]
    fn escapes_and_extra_prefix_fields() {
        // Newer kernels may append fields after the flags (e.g. the caller id).
        let r = parse_record(b"4,10,20,c,caller=T1;line one\\x0aline two \\x5c done\n").unwrap();
        assert_eq!(r.level, 4);
        assert_eq!(r.text, "line one\nline two \\ done");
    }

    #[test]
    fn text_with_semicolons_and_bad_escapes() {
        let r = parse_record(b"3,1,0,-;a;b \\xZZ \\x4\n").unwrap();
        assert_eq!(r.level, 3);
        assert_eq!(r.text, "a;b \\xZZ \\x4");
    }

    #[test]
    fn garbage_is_none() {
        assert!(parse_record(b"").is_none());
        assert!(parse_record(b"no prefix here\n").is_none());
        assert!(parse_record(b"x,1,2,-;t\n").is_none());
        assert!(parse_record(b"6,1;t\n").is_none());
    }
}
