//! Each publisher accepts only its delivery class, and the outbox only a live transaction:
//! every misuse below is a compile error.

/// The compile errors name the class the API requires.
#[test]
fn publishers_reject_other_classes() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile_fail/*.rs");
}
