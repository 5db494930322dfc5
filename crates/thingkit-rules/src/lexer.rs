//! The tokens of AWS IoT SQL: words, numbers, quoted strings, `@variables` and punctuation.
//!
//! String literals take either quote. AWS documents no escape sequences; thingkit reads the
//! JSON ones (`\\`, `\'`, `\"`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX` with surrogate
//! pairs), since AWS describes its literals as "JSON syntax", and refuses any other backslash
//! sequence rather than guessing. There are no comments (AWS has none).

use crate::error::Error;

/// The longest `@variable` name (AWS: 64 characters).
pub(crate) const MAX_VARIABLE_NAME: usize = 64;

/// One token and its byte range in the text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The kinds of token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// A word: an identifier or a keyword (keywords are recognised by the parser).
    Word(String),
    /// A number as written (no sign).
    Number(String),
    /// A string literal, unescaped, and whether it used single quotes.
    Str { value: String, single: bool },
    /// `@name`.
    Variable(String),
    /// Punctuation and operators.
    Punct(Punct),
    /// A character that starts no token (`#`, `;`, ...): reported by the parser as
    /// "expected ..., found `#`", so the message says what was expected there.
    Unknown,
    /// The end of the text.
    End,
}

/// Punctuation and operator symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Punct {
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Dot,
    Colon,
    Star,
    Plus,
    Minus,
    Slash,
    Percent,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// The 1-based line and character column of byte `offset` in `text`.
pub(crate) fn position(text: &str, offset: usize) -> (u32, u32) {
    let mut line: u32 = 1;
    let mut column: u32 = 1;
    for (index, ch) in text.char_indices() {
        if index >= offset {
            break;
        }
        if ch == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}

/// A parse error at byte `offset` of `text`.
pub(crate) fn error_at(text: &str, offset: usize, message: impl Into<String>) -> Error {
    let (line, column) = position(text, offset);
    Error::Parse {
        line,
        column,
        message: message.into(),
    }
}

/// Splits `text[start..end]` into tokens (offsets are into the whole `text`), ending with
/// [`TokenKind::End`].
pub(crate) fn tokenize(text: &str, start: usize, end: usize) -> Result<Vec<Token>, Error> {
    let source = text.get(start..end).unwrap_or("");
    let mut tokens = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some(&(index, ch)) = chars.peek() {
        let at = start + index;
        if ch.is_whitespace() {
            chars.next();
            continue;
        }
        if ch.is_ascii_alphabetic() || ch == '_' {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            let end = at + word.len();
            tokens.push(Token {
                kind: TokenKind::Word(word),
                start: at,
                end,
            });
            continue;
        }
        if ch.is_ascii_digit() {
            let number = lex_number(source, index);
            let len = number.len();
            for _ in 0..len {
                chars.next();
            }
            tokens.push(Token {
                kind: TokenKind::Number(number),
                start: at,
                end: at + len,
            });
            continue;
        }
        if ch == '\'' || ch == '"' {
            chars.next();
            let mut value = String::new();
            let mut closed = None;
            while let Some((i, c)) = chars.next() {
                if c == ch {
                    closed = Some(i);
                    break;
                }
                if c == '\\' {
                    let Some((_, escaped)) = chars.next() else {
                        break;
                    };
                    let plain = match escaped {
                        '\\' | '\'' | '"' | '/' => escaped,
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'u' => read_unicode_escape(text, start + i, &mut chars)?,
                        other => {
                            return Err(error_at(
                                text,
                                start + i,
                                format!("unknown escape `\\{other}` in a string literal"),
                            ));
                        }
                    };
                    value.push(plain);
                    continue;
                }
                value.push(c);
            }
            let Some(close) = closed else {
                return Err(error_at(
                    text,
                    at,
                    "string literal is not closed: expected a closing quote before the end",
                ));
            };
            tokens.push(Token {
                kind: TokenKind::Str {
                    value,
                    single: ch == '\'',
                },
                start: at,
                end: start + close + 1,
            });
            continue;
        }
        if ch == '@' {
            chars.next();
            let mut name = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                return Err(error_at(
                    text,
                    at,
                    "expected a variable name (letters, digits, `_`) after `@`",
                ));
            }
            if name.len() > MAX_VARIABLE_NAME {
                return Err(error_at(
                    text,
                    at,
                    format!("variable name is longer than {MAX_VARIABLE_NAME} characters"),
                ));
            }
            let end = at + 1 + name.len();
            tokens.push(Token {
                kind: TokenKind::Variable(name),
                start: at,
                end,
            });
            continue;
        }
        chars.next();
        let next = chars.peek().map(|&(_, c)| c);
        let (punct, len) = match (ch, next) {
            ('(', _) => (Punct::LParen, 1),
            (')', _) => (Punct::RParen, 1),
            ('[', _) => (Punct::LBracket, 1),
            (']', _) => (Punct::RBracket, 1),
            ('{', _) => (Punct::LBrace, 1),
            ('}', _) => (Punct::RBrace, 1),
            (',', _) => (Punct::Comma, 1),
            ('.', _) => (Punct::Dot, 1),
            (':', _) => (Punct::Colon, 1),
            ('*', _) => (Punct::Star, 1),
            ('+', _) => (Punct::Plus, 1),
            ('-', _) => (Punct::Minus, 1),
            ('/', _) => (Punct::Slash, 1),
            ('%', _) => (Punct::Percent, 1),
            ('=', _) => (Punct::Eq, 1),
            ('!', Some('=')) => (Punct::NotEq, 2),
            ('<', Some('>')) => (Punct::NotEq, 2),
            ('<', Some('=')) => (Punct::LtEq, 2),
            ('<', _) => (Punct::Lt, 1),
            ('>', Some('=')) => (Punct::GtEq, 2),
            ('>', _) => (Punct::Gt, 1),
            _ => {
                tokens.push(Token {
                    kind: TokenKind::Unknown,
                    start: at,
                    end: at + ch.len_utf8(),
                });
                continue;
            }
        };
        if len == 2 {
            chars.next();
        }
        tokens.push(Token {
            kind: TokenKind::Punct(punct),
            start: at,
            end: at + len,
        });
    }
    tokens.push(Token {
        kind: TokenKind::End,
        start: end,
        end,
    });
    Ok(tokens)
}

/// The number starting at byte `index` of `source`: `digits [. digits] [(e|E) [+|-] digits]`.
/// A `.` or exponent not followed by a digit is not part of the number.
fn lex_number(source: &str, index: usize) -> String {
    let bytes = source.as_bytes();
    let digit_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut end = index;
    while digit_at(end) {
        end += 1;
    }
    if bytes.get(end) == Some(&b'.') && digit_at(end + 1) {
        end += 1;
        while digit_at(end) {
            end += 1;
        }
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        if digit_at(end + 1 + sign) {
            end += 1 + sign;
            while digit_at(end) {
                end += 1;
            }
        }
    }
    source.get(index..end).unwrap_or("").to_owned()
}

/// Reads the four hex digits of a `\u` escape (and a following low surrogate if needed).
fn read_unicode_escape(
    text: &str,
    at: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<char, Error> {
    let bad = || error_at(text, at, "`\\u` must be followed by four hex digits");
    let read4 = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        let mut code: u32 = 0;
        for _ in 0..4 {
            let digit = chars
                .next()
                .and_then(|(_, c)| c.to_digit(16))
                .ok_or_else(bad)?;
            code = code * 16 + digit;
        }
        Ok::<u32, Error>(code)
    };
    let high = read4(chars)?;
    if (0xD800..0xDC00).contains(&high) {
        let lone = || error_at(text, at, "`\\u` high surrogate without a low surrogate");
        if chars.next().map(|(_, c)| c) != Some('\\') || chars.next().map(|(_, c)| c) != Some('u') {
            return Err(lone());
        }
        let low = read4(chars)?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(lone());
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        return char::from_u32(code).ok_or_else(lone);
    }
    char::from_u32(high).ok_or_else(|| error_at(text, at, "`\\u` escape is a lone surrogate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text, 0, text.len())
            .map(|tokens| tokens.into_iter().map(|t| t.kind).collect())
            .unwrap_or_default()
    }

    #[test]
    fn numbers_keep_their_text_including_exponents() {
        assert_eq!(
            kinds("5E-12 1.5 7"),
            vec![
                TokenKind::Number("5E-12".into()),
                TokenKind::Number("1.5".into()),
                TokenKind::Number("7".into()),
                TokenKind::End
            ]
        );
    }

    #[test]
    fn number_followed_by_dot_name_stops_before_the_dot() {
        assert_eq!(
            kinds("5.x"),
            vec![
                TokenKind::Number("5".into()),
                TokenKind::Punct(Punct::Dot),
                TokenKind::Word("x".into()),
                TokenKind::End
            ]
        );
    }

    #[test]
    fn strings_unescape_json_escapes_in_both_quote_styles() {
        assert_eq!(
            kinds(r#"'it\'s' "a\"b\u00e9\n""#),
            vec![
                TokenKind::Str {
                    value: "it's".into(),
                    single: true
                },
                TokenKind::Str {
                    value: "a\"b\u{e9}\n".into(),
                    single: false
                },
                TokenKind::End
            ]
        );
    }

    #[test]
    fn surrogate_pairs_decode_to_one_character() {
        assert_eq!(
            kinds(r"'\ud83d\ude00'"),
            vec![
                TokenKind::Str {
                    value: "\u{1f600}".into(),
                    single: true
                },
                TokenKind::End
            ]
        );
    }

    #[test]
    fn rejects_unknown_escape_and_unclosed_string() {
        assert!(tokenize(r"'\q'", 0, 4).is_err());
        assert!(tokenize("'abc", 0, 4).is_err());
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(position("é\nab€c", 8), (2, 4));
    }
}
