//! The interceptor every service uses: no token, a bad token, a good one.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Code, Request};
use wharf_tokens::layer::{Authenticate, UNAUTHENTICATED, identity, require_role};
use wharf_tokens::{KeySet, TokenConfig, Tokens};

fn request(authorization: Option<&str>) -> Request<()> {
    let mut request = Request::new(());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    request
}

/// Missing and invalid tokens get UNAUTHENTICATED with one generic message; a valid one puts
/// the caller's identity in the request; roles gate with PERMISSION_DENIED.
#[test]
fn interceptor_authenticates_and_exposes_identity() {
    let tokens = Arc::new(Tokens::new(KeySet::generate("k1"), TokenConfig::default()));
    let mut layer = Authenticate::new(Arc::clone(&tokens));

    for bad in [
        None,
        Some("Bearer nope"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
    ] {
        let status = layer.call(request(bad)).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{bad:?}");
        assert_eq!(status.message(), UNAUTHENTICATED, "{bad:?}");
    }

    let (token, _) = tokens
        .issue("user-9", "session-9", &["trader".to_owned()])
        .unwrap();
    let passed = layer
        .call(request(Some(&format!("Bearer {token}"))))
        .unwrap();
    let caller = identity(&passed).unwrap();
    assert_eq!(caller.user_id, "user-9");
    assert_eq!(caller.session_id, "session-9");
    assert!(require_role(&passed, "trader").is_ok());
    assert_eq!(
        require_role(&passed, "admin").unwrap_err().code(),
        Code::PermissionDenied
    );
}
