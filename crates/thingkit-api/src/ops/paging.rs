//! Pagination of list operations. AWS's `marker`/`nextMarker` and `nextToken` are opaque to
//! clients (base64, as the model's `Marker` pattern requires); thingkit's are the base64 of the
//! sort key of the last item returned, so a page continues after it even when items were added
//! or deleted in between (nothing is skipped or repeated that existed throughout).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::service::Ctx;
use thingkit_provision::RegistryStore;

/// What a token starts with once decoded, so a token this server did not issue (a random
/// base64 string, another service's token) is refused rather than read as a key.
const TOKEN_MARK: &str = "tk1:";

/// `pageSize` (marker-paginated operations), or the default page size.
pub(crate) fn page_size<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> usize {
    input
        .int("pageSize")
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(ctx.plane.limits.default_page_size)
}

/// A `marker`-paginated answer: `{member: [the page of items], "nextMarker": ...}` (the
/// marker only when more remain), in ascending key order or `descending`.
pub(crate) fn marker_list<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
    member: &str,
    items: Vec<(String, serde_json::Value)>,
    descending: bool,
) -> ApiResult<serde_json::Value> {
    let (page, next) = page(
        items,
        input.str("marker"),
        page_size(ctx, input),
        descending,
    )?;
    let mut out = serde_json::Map::new();
    out.insert(member.to_string(), serde_json::Value::Array(page));
    if let Some(next) = next {
        out.insert("nextMarker".into(), next.into());
    }
    Ok(serde_json::Value::Object(out))
}

/// The page of `items` (sort key, item) that follows `marker`, in ascending key order or
/// descending, at most `size` long, and the marker of the next page if there is one. A marker
/// this server did not make is an `InvalidRequestException`.
pub(crate) fn page<T>(
    mut items: Vec<(String, T)>,
    marker: Option<&str>,
    size: usize,
    descending: bool,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let marker = match marker {
        None => None,
        Some(m) => Some(
            STANDARD
                .decode(m)
                .ok()
                .and_then(|k| String::from_utf8(k).ok())
                .and_then(|k| k.strip_prefix(TOKEN_MARK).map(str::to_string))
                .ok_or_else(|| ApiError::invalid_request(format!("{m:?} is not a valid marker")))?,
        ),
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        items.reverse();
    }
    let start = match marker.as_deref() {
        None => 0,
        Some(m) => items
            .iter()
            .position(|(k, _)| {
                if descending {
                    k.as_str() < m
                } else {
                    k.as_str() > m
                }
            })
            .unwrap_or(items.len()),
    };
    let mut rest = items.into_iter().skip(start);
    let taken: Vec<(String, T)> = rest.by_ref().take(size.max(1)).collect();
    let next = match rest.next() {
        Some(_) => taken
            .last()
            .map(|(k, _)| STANDARD.encode(format!("{TOKEN_MARK}{k}"))),
        None => None,
    };
    Ok((taken.into_iter().map(|(_, v)| v).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::{STANDARD, TOKEN_MARK, page};

    fn keys(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("k{i:02}"), i)).collect()
    }

    #[test]
    fn pages_follow_the_marker_until_the_end() {
        let (first, next) = page(keys(5), None, 2, false).unwrap();
        assert_eq!(first, vec![0, 1]);
        let (second, next) = page(keys(5), next.as_deref(), 2, false).unwrap();
        assert_eq!(second, vec![2, 3]);
        let (third, next) = page(keys(5), next.as_deref(), 2, false).unwrap();
        assert_eq!((third, next), (vec![4], None));
    }

    #[test]
    fn descending_pages_run_backwards_from_the_marker() {
        let (first, next) = page(keys(3), None, 2, true).unwrap();
        assert_eq!(first, vec![2, 1]);
        let (second, next) = page(keys(3), next.as_deref(), 2, true).unwrap();
        assert_eq!((second, next), (vec![0], None));
    }

    #[test]
    fn a_marker_past_every_key_gives_an_empty_page() {
        use base64::Engine;
        let past = STANDARD.encode(format!("{TOKEN_MARK}z"));
        assert_eq!(
            page(keys(3), Some(&past), 2, false).unwrap(),
            (vec![], None)
        );
    }

    #[test]
    fn refuses_a_marker_it_did_not_make() {
        assert!(page(keys(3), Some("not base64!"), 2, false).is_err());
        // Valid base64 of a key, but not a token this server issued.
        assert!(page(keys(3), Some("eg=="), 2, false).is_err());
        assert!(page(keys(3), Some(""), 2, false).is_err());
    }
}
