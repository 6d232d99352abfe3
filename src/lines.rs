//! Bounded line reading for the NDJSON ports (the gateway's API port, the simulator's
//! control port): a line longer than the limit is consumed and reported, never buffered
//! whole, and the connection stays usable from the next newline on.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without the newline), lossily decoded as UTF-8.
    Text(String),
    /// A line longer than the limit (consumed up to and including its newline).
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Read one line of at most `max` octets, not counting its `\n` or `\r\n` ending.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        // room for the content and a CRLF ending; the content is checked at the end
        if too_long || line.len() + n > max + 2 {
            too_long = true;
            line.clear();
        } else {
            line.extend_from_slice(chunk);
        }
        r.consume(n);
        if done {
            if too_long {
                return Ok(Line::TooLong);
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.len() > max {
                return Ok(Line::TooLong);
            }
            return Ok(Line::Text(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_limits_and_eof() {
        let data = b"abc\r\nxxxxxxxxxxxx\nok\npartial".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        assert_eq!(
            read_line(&mut r, 8).await.unwrap(),
            Line::Text("abc".into())
        );
        assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::TooLong);
        assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::Text("ok".into()));
        assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn the_line_ending_does_not_count() {
        // exactly `max` octets of content, with LF and with CRLF; one more is too long
        let data = b"12345678\n12345678\r\n123456789\r\n123456789\nok\r\n".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(3, &data[..]);
        let t = |s: &str| Line::Text(s.into());
        assert_eq!(read_line(&mut r, 8).await.unwrap(), t("12345678"));
        assert_eq!(read_line(&mut r, 8).await.unwrap(), t("12345678"));
        assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::TooLong);
        assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::TooLong);
        assert_eq!(read_line(&mut r, 8).await.unwrap(), t("ok"));
    }
}
