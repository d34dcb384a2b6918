//! Neutron's timestamps: `2024-01-01T00:00:00Z`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as Neutron writes `created_at` and `updated_at`.
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Seconds since the epoch as an ISO 8601 UTC time.
pub fn format_utc(secs: u64) -> String {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_utc(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(super::format_utc(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
