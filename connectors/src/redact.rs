//! Keeping raw national IDs out of text: rejection reasons and file names.
//!
//! A national ID can reach text by two side doors: a value echoed in a rejection reason
//! (an ID typed into the wrong column) and a file named after a person (CPR extracts are
//! often called `PNR_0101005038.txt`). Neither is parsed as an ID, so the validators
//! cannot catch them. Instead, any *token* that could be one is replaced: a maximal run
//! of ASCII letters, digits, `+` and `-` holding nine or more digits. Every Nordic ID
//! has at least nine digits (Finnish HETU 6+3, Swedish 10 or 12, Danish 10, Norwegian
//! 11); dates (`2024-01-05`, eight digits) and ordinary numbers stay readable. It is
//! deliberately broad: a redacted serial number costs little, a leaked ID is a breach.

use std::borrow::Cow;

/// What replaces an ID-like token in a reason.
pub const REDACTED: &str = "[redacted]";

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '-'
}

/// Byte ranges of ID-like tokens in `text`.
fn id_like_tokens(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut digits = 0usize;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if i < text.len() && token_char(c) {
            if start.is_none() {
                start = Some(i);
                digits = 0;
            }
            if c.is_ascii_digit() {
                digits += 1;
            }
        } else if let Some(s) = start.take() {
            if digits >= 9 {
                out.push((s, i));
            }
        }
    }
    out
}

/// Whether `text` holds a token that could be a national ID.
pub fn has_id_like(text: &str) -> bool {
    !id_like_tokens(text).is_empty()
}

/// `text` with every ID-like token replaced by `replace(token)`.
pub fn replace_id_like<'t>(text: &'t str, mut replace: impl FnMut(&str) -> String) -> Cow<'t, str> {
    let tokens = id_like_tokens(text);
    if tokens.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (s, e) in tokens {
        out.push_str(&text[last..s]);
        out.push_str(&replace(&text[s..e]));
        last = e;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// `text` with every ID-like token replaced by [`REDACTED`]: for messages.
pub fn scrub(text: &str) -> Cow<'_, str> {
    replace_id_like(text, |_| REDACTED.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nordic_id_shape_is_caught_and_dates_are_not() {
        for id in [
            "131052-308T",
            "131052A308T",
            "010682-362A",
            "19121212-1212",
            "121212+1212",
            "201212121212",
            "0101005038",
            "010100-5038",
            "15076500565",
        ] {
            assert_eq!(
                scrub(&format!("`{id}` is not in the code table")),
                "`[redacted]` is not in the code table",
                "{id}"
            );
            assert_eq!(
                scrub(&format!("PNR_{id}.txt")),
                "PNR_[redacted].txt",
                "{id}"
            );
        }
        for kept in [
            "expected 12 fields, found 11",
            "extract_2024-01-05.csv",
            "date 20240105 is in the future",
            "Patient.000.ndjson",
            "persons.csv line 123456",
        ] {
            assert_eq!(scrub(kept), kept);
        }
    }

    #[test]
    fn replacement_sees_each_token_once() {
        let mut seen = Vec::new();
        let out = replace_id_like("a 0101005038 b 131052-308T c", |t| {
            seen.push(t.to_string());
            format!("<{}>", t.len())
        });
        assert_eq!(out, "a <10> b <11> c");
        assert_eq!(seen, ["0101005038", "131052-308T"]);
    }
}
