//! Helpers shared by the golden tests.

#![allow(dead_code)]

/// A classic hex dump: offset, 16 bytes in hex, printable ASCII.
pub fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String =
            chunk.iter().map(|&b| if (0x20..0x7f).contains(&b) { char::from(b) } else { '.' }).collect();
        out.push_str(&format!("{:08x}  {:<47}  |{}|\n", row * 16, hex.join(" "), ascii));
    }
    out.push_str(&format!("({} bytes)\n", bytes.len()));
    out
}

/// Bytes from hex text; whitespace is ignored.
pub fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}
