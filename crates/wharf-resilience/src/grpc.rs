//! gRPC-over-HTTP/2 details the layers share.

use std::time::Duration;

/// The status of a trailers-only answer (`grpc-status` among the response headers), which is
/// how a gRPC server answers a call that fails before any message.
pub fn header_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let code: i32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(tonic::Code::from_i32(code))
}

/// A `grpc-timeout` header value for `timeout`: at most 8 digits, in the finest unit that fits,
/// rounded up so that the upstream never gets more time than is left.
pub fn encode_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let micros = timeout.as_micros().max(1);
    if micros <= MAX {
        return format!("{micros}u");
    }
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    if millis <= MAX {
        return format!("{millis}m");
    }
    let secs = timeout.as_nanos().div_ceil(1_000_000_000).min(MAX);
    format!("{secs}S")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_fit_eight_digits_and_round_up() {
        assert_eq!(encode_grpc_timeout(Duration::ZERO), "1u");
        assert_eq!(encode_grpc_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(encode_grpc_timeout(Duration::from_secs(200)), "200000m");
        assert_eq!(
            encode_grpc_timeout(Duration::from_micros(100_000_001)),
            "100001m"
        );
        assert_eq!(
            encode_grpc_timeout(Duration::from_secs(10_000_000)),
            "10000000S"
        );
    }

    #[test]
    fn reads_trailers_only_status() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(header_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(header_status(&headers), Some(tonic::Code::Unavailable));
    }
}
