//! Values cut to fit the limits of the services tozai writes to (CodePipeline's variables,
//! EventBridge's entries), always on a UTF-8 boundary and always with a visible marker, so
//! a reader can tell a cut value from a whole one.
//!
//! - [`cut`] keeps the start of one value and ends it with `…`;
//! - [`list`] joins items with `,`, keeps whole items while they fit and ends with
//!   `...(+N more)` naming how many it left out; a first item too long on its own is cut
//!   with `…`, so the result is never empty while there are items.
//!
//! [`quoted`] shows a path or ref name on a terminal the way git's `core.quotePath` does
//! (with non-ASCII letters kept): text output uses it, JSON keeps names exact.
//! [`printable`] shows free text from outside (a config's line, a server's message) with
//! its control characters as their Unicode pictures.
//!
//! Limits are in bytes: a value of at most N bytes is at most N characters however the
//! service counts them (code points or UTF-16 units).
//!
//! ```
//! use tozai::text::{cut, list};
//! assert_eq!(cut("primary/templates/root.yaml", 12), "primary/t…");
//! assert_eq!(list(&["a.yaml", "b.yaml", "c.yaml", "d.yaml"], 22), "a.yaml,...(+3 more)");
//! assert_eq!(list(&["a.yaml", "b.yaml"], 100), "a.yaml,b.yaml");
//! ```

/// The marker that ends a value cut short.
pub const CUT_MARKER: &str = "…";

/// `value` in at most `max` bytes: whole when it fits, otherwise its longest start that
/// ends on a character boundary and leaves room for [`CUT_MARKER`], then the marker.
pub fn cut(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let Some(room) = max.checked_sub(CUT_MARKER.len()) else {
        // No room even for the marker: the longest start that fits.
        return value[..floor_boundary(value, max)].to_owned();
    };
    let mut out = value[..floor_boundary(value, room)].to_owned();
    out.push_str(CUT_MARKER);
    out
}

/// The largest index at most `at` that is a character boundary of `value`.
fn floor_boundary(value: &str, at: usize) -> usize {
    let mut at = at.min(value.len());
    while !value.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// What ends a list that left `omitted` items out.
fn more(omitted: usize) -> String {
    format!("...(+{omitted} more)")
}

/// `items` joined with `,` in at most `max` bytes: as many whole items as fit, then
/// `...(+N more)` for the N left out. When not even the first item fits, it is [`cut`].
/// Empty only when `items` is.
/// `max` is meant for limits of tens of bytes or more: below that, the count of omitted
/// items may not fit and is left out.
pub fn list<S: AsRef<str>>(items: &[S], max: usize) -> String {
    let whole = items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>();
    if whole.saturating_sub(1) <= max {
        return items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
    }
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let item = item.as_ref();
        let separator = usize::from(i > 0);
        let rest = items.len() - i - 1;
        // Room kept for ",...(+rest more)" in case the next item does not fit.
        let tail = if rest == 0 { 0 } else { more(rest).len() + 1 };
        if out.len() + separator + item.len() + tail <= max {
            if i > 0 {
                out.push(',');
            }
            out.push_str(item);
            continue;
        }
        if i == 0 && max < tail + CUT_MARKER.len() + 1 {
            out = cut(item, max);
        } else if i == 0 {
            out = cut(item, max - tail);
            if rest > 0 {
                out.push(',');
                out.push_str(&more(rest));
            }
        } else {
            // The previous item kept room for exactly this.
            out.push(',');
            out.push_str(&more(rest + 1));
        }
        break;
    }
    out
}

/// `name` (a path, a ref name) as git's `core.quotePath=false` shows it: unchanged when it
/// holds no control character, `"` or `\`; otherwise in double quotes with C escapes
/// (`\t`, `\n`, `\"`, `\\`, and `\ooo` in octal for the other control characters, ESC
/// and DEL among them), so an escape sequence in a file name can neither recolour the
/// terminal nor split a line. Letters outside ASCII are kept as they are.
///
/// ```
/// use tozai::text::quoted;
/// assert_eq!(quoted("common/vpc.yaml"), "common/vpc.yaml");
/// assert_eq!(quoted("共通/vpc.yaml"), "共通/vpc.yaml");
/// assert_eq!(quoted("a\nb"), "\"a\\nb\"");
/// assert_eq!(quoted("\u{1b}[31mred"), "\"\\033[31mred\"");
/// ```
pub fn quoted(name: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '"' || c == '\\';
    if !name.chars().any(needs) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    out.push('"');
    for c in name.chars() {
        match c {
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    std::borrow::Cow::Owned(out)
}

/// `message` with each control character but newline shown as its Unicode control
/// picture (`\u{1b}` as `␛`, a tab as `␉`; other control characters as `\u{fffd}`): one
/// column wide, so a caret under a line still points at it, and an escape sequence from
/// a file or a server can neither recolour the terminal nor move its cursor. CRLF line
/// ends become plain newlines.
///
/// ```
/// use tozai::text::printable;
/// assert_eq!(printable("\u{1b}[31mdenied\u{1b}[0m"), "␛[31mdenied␛[0m");
/// assert_eq!(printable("a\r\nb"), "a\nb");
/// ```
pub fn printable(message: &str) -> String {
    message
        .replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\n' => c,
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
            '\u{7f}' => '\u{2421}',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_table() {
        // (name, shown): what `git -c core.quotePath=false ls-files` prints, but for the
        // C1 control characters (U+0080 to U+009F), which git leaves raw and some
        // terminals obey: they are quoted too.
        let rows = [
            ("plain/path.yaml", "plain/path.yaml"),
            ("東京/root.yaml", "東京/root.yaml"),
            ("with space", "with space"),
            ("tab\there", "\"tab\\there\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("\u{1b}[2J", "\"\\033[2J\""),
            ("quote\"d", "\"quote\\\"d\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("del\u{7f}", "\"del\\177\""),
            ("c1\u{9b}31m", "\"c1\\302\\23331m\""),
        ];
        for (name, shown) in rows {
            let got = quoted(name);
            assert_eq!(got, shown, "quoted({name:?})");
            assert!(!got.chars().any(|c| c.is_control()), "{got:?}");
        }
    }

    #[test]
    fn cut_table() {
        let two_thousand = "a".repeat(2000);
        let kanji = "東".repeat(700); // 2,100 bytes, 3 per character
        // (value, max, expected)
        let rows: Vec<(&str, usize, String)> = vec![
            ("", 10, String::new()),
            ("short", 10, "short".into()),
            ("exactly10!", 10, "exactly10!".into()),
            ("eleven char", 10, "eleven …".into()),
            (&two_thousand, 1000, format!("{}…", "a".repeat(997))),
            // 997 bytes of room end inside a character: back to 996 (332 characters).
            (&kanji, 1000, format!("{}…", "東".repeat(332))),
            ("東京", 5, "…".into()),
            ("東京", 2, String::new()),
        ];
        for (value, max, want) in rows {
            let got = cut(value, max);
            assert_eq!(got, want, "cut({value:?}, {max})");
            assert!(got.len() <= max, "{got:?} is over {max}");
        }
    }

    #[test]
    fn list_table() {
        let long = "p".repeat(2000);
        let multi: Vec<String> = (0..300)
            .map(|i| format!("共通/テンプレート-{i}.yaml"))
            .collect();
        // (items, max, expected)
        let rows: Vec<(Vec<&str>, usize, String)> = vec![
            (vec![], 1000, String::new()),
            (vec!["a.yaml"], 1000, "a.yaml".into()),
            (vec!["a.yaml", "b.yaml"], 13, "a.yaml,b.yaml".into()),
            (
                vec!["a.yaml", "b.yaml", "c.yaml", "d.yaml"],
                26,
                "a.yaml,b.yaml,...(+2 more)".into(),
            ),
            (
                vec!["a.yaml", "b.yaml", "c.yaml", "d.yaml"],
                25,
                "a.yaml,...(+3 more)".into(),
            ),
            // The first path alone is over the limit: cut, never dropped.
            (vec![&long], 1000, format!("{}…", "p".repeat(997))),
            (
                vec![&long, "b.yaml", "c.yaml"],
                1000,
                format!("{}…,...(+2 more)", "p".repeat(984)),
            ),
            (
                vec!["a.yaml", &long, "c.yaml"],
                1000,
                "a.yaml,...(+2 more)".into(),
            ),
        ];
        for (items, max, want) in rows {
            let got = list(&items, max);
            assert_eq!(got, want, "list({items:?}, {max})");
            assert!(got.len() <= max);
        }
        let got = list(&multi, 1000);
        assert!(got.len() <= 1000 && got.len() > 900, "{}", got.len());
        assert!(got.starts_with("共通/テンプレート-0.yaml,共通/テンプレート-1.yaml,"));
        let shown = got.split(',').count() - 1;
        assert!(
            got.ends_with(&format!(",...(+{} more)", 300 - shown)),
            "{got}"
        );
    }
}
