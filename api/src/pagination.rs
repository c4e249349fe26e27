//! Kong's list envelope: `{"data": […], "next": "<path>?offset=…" | null, "offset": "…" | null}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_SIZE: usize = 100;
pub const MAX_SIZE: usize = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Items per page, 1 to 1000; default 100.
    pub size: Option<String>,
    /// The `offset` of the previous page.
    pub offset: Option<String>,
    /// `a,b`: entities with all these tags; `a/b`: with any of them.
    pub tags: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next: Option<String>,
    pub offset: Option<String>,
}

impl PageQuery {
    /// Cuts one page out of `items` (already filtered and ordered); `path` is for `next`.
    pub fn paginate<T>(&self, items: Vec<T>, path: &str) -> ApiResult<Page<T>> {
        let size = match &self.size {
            None => DEFAULT_SIZE,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::field(
                        "size",
                        format!("size must be an integer between 1 and {MAX_SIZE}"),
                    ))
                }
            },
        };
        let start = match &self.offset {
            None => 0,
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| ApiError::field("offset", "invalid offset"))?,
        };
        let total = items.len();
        let data: Vec<T> = items.into_iter().skip(start).take(size).collect();
        let end = start + data.len();
        let (next, offset) = if end < total {
            let mut next = format!("{path}?offset={end}");
            if self.size.is_some() {
                next.push_str(&format!("&size={size}"));
            }
            if let Some(tags) = &self.tags {
                let tags: String = url::form_urlencoded::byte_serialize(tags.as_bytes()).collect();
                next.push_str(&format!("&tags={tags}"));
            }
            (Some(next), Some(end.to_string()))
        } else {
            (None, None)
        };
        Ok(Page { data, next, offset })
    }
}
