//! README's embedding example is `examples/embed.rs`, word for word: CI
//! builds and runs the example (`.ci/run`), and this test keeps README's
//! copy from drifting away from it. `OAR_BLESS=1` rewrites README's copy
//! from the example.

use std::path::Path;

/// The line that opens README's copy of the example.
const MARKER: &str = "<!-- examples/embed.rs -->\n```rust\n";
const FENCE_END: &str = "```\n";

/// README's copy: the code block after the marker, and its byte range.
fn readme_copy(readme: &str) -> Option<(usize, usize)> {
    let start = readme.find(MARKER)? + MARKER.len();
    let len = readme[start..]
        .match_indices(FENCE_END)
        .find(|(at, _)| *at == 0 || readme.as_bytes()[start + at - 1] == b'\n')?
        .0;
    Some((start, start + len))
}

#[test]
fn readme_shows_the_embedding_example_word_for_word() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let example = std::fs::read_to_string(root.join("examples/embed.rs")).expect("example");
    let (start, end) = readme_copy(&readme).expect("README has the example's block");
    let copy = &readme[start..end];
    if copy == example {
        return;
    }
    if std::env::var_os("OAR_BLESS").is_some() {
        let blessed = format!("{}{example}{}", &readme[..start], &readme[end..]);
        std::fs::write(&readme_path, blessed).expect("rewrite README");
        return;
    }
    let line = copy
        .lines()
        .zip(example.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(copy.lines().count().min(example.lines().count()));
    panic!(
        "README's embedding example differs from examples/embed.rs from line {} of the \
         example on (README: {:?}, example: {:?}); rerun with OAR_BLESS=1 to copy the \
         example into README",
        line + 1,
        copy.lines().nth(line),
        example.lines().nth(line)
    );
}

#[test]
fn the_block_ends_at_its_own_fence() {
    let readme = "x\n<!-- examples/embed.rs -->\n```rust\nlet a = \"```\";\n```\nafter\n";
    let (start, end) = readme_copy(readme).expect("block");
    assert_eq!(&readme[start..end], "let a = \"```\";\n");
}
