//! What a config error shows of the file: the line at fault with a caret under the column,
//! as toml does, but safe to print whatever the file holds. The line's URL secrets are
//! [redacted](crate::location::redact) (the caret still points at the same place), its
//! control characters shown as their Unicode pictures, and it is cut to a few hundred
//! bytes around the column, so a 5 MB one-line file gives a line, not 10 MB. Messages are
//! redacted and cut the same way.

use crate::location::{line_secrets, redact};
use crate::text::{CUT_MARKER, cut, printable};

/// Bytes of the line shown on each side of the column.
const SIDE: usize = 120;
/// The longest message kept whole; a longer one keeps its start and its end.
pub(super) const MESSAGE_MAX: usize = 600;

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(super) fn position(text: &str, offset: usize) -> (usize, usize) {
    let upto = &text[..floor(text, offset)];
    let line = upto.matches('\n').count() + 1;
    let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The excerpt under an error at byte `offset` of `text` on line `line`: a gutter line, the
/// line itself, and the caret, each line but the first starting with a newline.
pub(super) fn excerpt(text: &str, offset: usize, line: usize) -> String {
    let offset = floor(text, offset);
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let whole = text[start..end]
        .strip_suffix('\r')
        .unwrap_or(&text[start..end]);
    let (shown, column) = redacted(whole, (offset - start).min(whole.len()));

    // A window of the line around the column, on character boundaries.
    let from = floor(&shown, column.saturating_sub(SIDE));
    let to = floor(&shown, column.saturating_add(SIDE).min(shown.len()));
    let mut window = printable(&shown[from..to]);
    let mut caret = shown[from..column].chars().count();
    if from > 0 {
        window.insert_str(0, CUT_MARKER);
        caret += 1;
    }
    if to < shown.len() {
        window.push_str(CUT_MARKER);
    }
    let number = line.to_string();
    let pad = " ".repeat(number.len());
    format!(
        "\n{pad} |\n{number} | {window}\n{pad} | {}^",
        " ".repeat(caret)
    )
}

/// `line` redacted, and where byte `column` of it is in the redacted line (at the start of
/// the replacement when the column was inside a secret).
fn redacted(line: &str, column: usize) -> (String, usize) {
    let hidden = line_secrets(line);
    let mut moved = column;
    for (range, shown) in hidden.iter().rev() {
        if column >= range.end {
            moved = moved + shown.len() - range.len();
        } else if column >= range.start {
            moved = range.start;
        }
    }
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for (range, shown) in &hidden {
        out.push_str(&line[at..range.start]);
        out.push_str(shown);
        at = range.end;
    }
    out.push_str(&line[at..]);
    (out, moved)
}

/// A message safe to print: redacted, cut to [`MESSAGE_MAX`] (keeping its start and its
/// end, where the reason usually is), control characters as pictures.
pub(super) fn message(text: &str) -> String {
    let text = printable(&redact(text));
    if text.len() <= MESSAGE_MAX {
        return text;
    }
    let head = cut(&text, MESSAGE_MAX * 2 / 3);
    let tail = &text[ceil(&text, text.len() - MESSAGE_MAX / 4)..];
    format!("{head}{tail}")
}

/// The largest character boundary of `text` at most `at`.
fn floor(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The smallest character boundary of `text` at least `at`.
fn ceil(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_points_at_the_same_place_after_redaction() {
        let line = "repository = \"https://user:s3cr3t@git.example.com/x.git\" x";
        let at = line.rfind('x').unwrap();
        let shown = excerpt(line, at, 4);
        assert_eq!(
            shown,
            format!(
                "\n  |\n4 | repository = \"https://***@git.example.com/x.git\" x\n  | {}^",
                " ".repeat(49)
            )
        );
        // inside the secret: at the start of what replaced it
        let inside = excerpt(line, line.find("s3cr3t").unwrap(), 4);
        assert!(
            inside.ends_with(&format!("| {}^", " ".repeat(22))),
            "{inside}"
        );
        assert!(!inside.contains("s3cr3t"));
    }

    #[test]
    fn a_password_holding_a_space_a_quote_or_an_apostrophe_is_hidden_whole() {
        for line in [
            "repository = \"https://bob:Sup3r SECRET@git.example.com/x.git\" x",
            "repository = \"https://bob:Sup\\\"SECRET@git.example.com/x.git\" x",
            "repository = \"https://bob:Sup3r'SECRET@git.example.com/x.git\" x",
        ] {
            let shown = excerpt(line, line.len() - 1, 4);
            assert!(!shown.contains("SECRET"), "{line}: {shown}");
            assert!(
                shown.contains("\"https://***@git.example.com/x.git\" x"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_long_line_is_cut_around_the_column() {
        let line = format!("{}\u{1b}{}", "a".repeat(10_000), "東".repeat(10_000));
        let shown = excerpt(&line, 10_000, 1);
        // the window, and the caret's line as long as the window's first half
        assert!(shown.len() < 3 * SIDE + 160, "{}", shown.len());
        assert!(shown.contains("…aaa") && shown.contains("␛東東") && shown.ends_with("^"));
        let caret = shown
            .lines()
            .last()
            .unwrap()
            .chars()
            .filter(|&c| c == ' ')
            .count();
        let row = shown.lines().nth(2).unwrap();
        assert_eq!(row.chars().nth(caret + 1), Some('␛'), "{shown}");
    }

    #[test]
    fn a_long_message_keeps_its_start_and_end() {
        let long = format!("unknown field `{}`, expected `paths`", "k".repeat(100_000));
        let shown = message(&long);
        assert!(shown.len() <= MESSAGE_MAX + 8, "{}", shown.len());
        assert!(shown.starts_with("unknown field `kkk") && shown.ends_with("expected `paths`"));
        assert!(shown.contains('…'));
        assert_eq!(message("https://u:pw@h?t=1"), "https://***@h?***");
    }
}
