//! Query strings of the list operations: percent-decoded parameters plus the paging pair
//! (`next-token`, `max-results`) that every listing shares.

use super::error::ApiError;

pub struct ListQuery {
    params: Vec<(String, String)>,
    /// Continue after this position (the `next-token` of the previous page).
    pub after: Option<i64>,
    /// Page size, 1-200.
    pub max: u32,
}

impl ListQuery {
    pub fn parse(query: &str, default_max: u32) -> Result<Self, ApiError> {
        let mut out = Self {
            params: Vec::new(),
            after: None,
            max: default_max,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8()
                .map_err(|_| ApiError::BadRequest(format!("{key} is not UTF-8")))?
                .into_owned();
            match key {
                "next-token" => {
                    out.after = Some(
                        value
                            .parse()
                            .map_err(|_| ApiError::BadRequest("invalid next-token".into()))?,
                    )
                }
                "max-results" => {
                    out.max = value
                        .parse::<u32>()
                        .ok()
                        .filter(|m| (1..=200).contains(m))
                        .ok_or_else(|| ApiError::BadRequest("max-results must be 1-200".into()))?
                }
                _ => out.params.push((key.to_owned(), value)),
            }
        }
        Ok(out)
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_pages() {
        let q = ListQuery::parse("name=A%20b+c&max-results=5&next-token=12&x=1&x=2", 100).unwrap();
        assert_eq!(q.get("name"), Some("A b c"));
        assert_eq!(q.get("x"), Some("2"));
        assert_eq!((q.after, q.max), (Some(12), 5));
        assert_eq!(ListQuery::parse("", 50).unwrap().max, 50);
        for bad in [
            "max-results=0",
            "max-results=201",
            "next-token=abc",
            "name=%FF",
        ] {
            assert!(ListQuery::parse(bad, 10).is_err(), "{bad}");
        }
    }
}
