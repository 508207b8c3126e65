//! Compile-time tests of `#[dchan::endpoint]`: misuse gives a spanned error that says how to fix it.
#[test]
fn endpoint_macro_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
