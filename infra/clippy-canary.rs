//! One clippy warning (`needless_return`), which `make lint` compiles through the phases' clippy
//! wrapper and expects to fail: it fails only while CLIPPY_ARGS still denies warnings.
pub fn one() -> u8 {
    return 1;
}
