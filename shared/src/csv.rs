//! Writing CSV that a spreadsheet opens safely: RFC 4180 quoting, and text that would start a formula
//! (`=`, `+`, `-`, `@`, a tab or a carriage return first) neutralised with a leading `'`, so that a
//! note a patroller typed as `=HYPERLINK(...)` reaches the duty lead's spreadsheet as text. A plain
//! number (`-5`, `+3.2`) is left alone: it is a figure, not a formula, and must still add up.

/// One field, neutralised when it could start a formula, quoted when it needs to be.
pub fn field(s: &str) -> String {
    let starts_formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let neutral = if starts_formula && s.trim().parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if neutral.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

/// One record: its fields as [`field`] writes them, comma-separated, ended with CRLF.
pub fn record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_become_text_and_numbers_stay_numbers() {
        assert_eq!(
            field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(field("+cmd"), "'+cmd");
        assert_eq!(field("-2+3"), "'-2+3");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("\tx"), "'\tx");
        assert_eq!(field("\rx"), "\"'\rx\"");
        assert_eq!(field("-5"), "-5");
        assert_eq!(field("+3.25"), "+3.25");
        assert_eq!(field("sandbags, 20"), "\"sandbags, 20\"");
        assert_eq!(field("沙袋"), "沙袋");
        assert_eq!(field(""), "");
    }

    #[test]
    fn a_record_ends_with_crlf() {
        assert_eq!(record(&["a", "=1", "-1"]), "a,'=1,-1\r\n");
    }
}
